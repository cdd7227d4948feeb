"""The plugin contract: one pluggy hook per kind of plugin.

As in simonw/llm, pesmith passes a ``register`` callback into each hook, so the host keeps
control of names, duplicates and validation. The ``name`` is the ``kind:`` that configuration
files use. A hook registers each class by where it lives, with its one-line description, so the
registry lists it (``pesmith plugins``) without importing it, and imports it when it is used::

    from pesmith import hookimpl

    @hookimpl
    def pesmith_register_descriptors(register):
        register("my-descriptor", "mypkg.descriptor:MyDescriptor", "Radial Gaussians, cutoff in Å.")

``register(name, MyDescriptor)`` with the class itself also works (its docstring's first line is
the description), but the module holding the hook then imports the class, and torch, whenever
the plugins are listed. An outside package announces the module holding its hooks in its
``pyproject.toml``::

    [project.entry-points.pesmith]
    myplugin = "mypkg"
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "pesmith"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def pesmith_register_descriptors(register: Callable[..., None]) -> None:
    """Register descriptor classes.

    :param register: call ``register(name, "module:Class", description)`` (or
        ``register(name, cls)``) for each class; the class subclasses :class:`pesmith.descriptor.Descriptor`.
    """


@hookspec
def pesmith_register_models(register: Callable[..., None]) -> None:
    """Register model classes.

    :param register: call ``register(name, "module:Class", description)`` (or
        ``register(name, cls)``) for each class; the class subclasses :class:`pesmith.model.Model`.
    """


@hookspec
def pesmith_register_references(register: Callable[..., None]) -> None:
    """Register reference (labeling) classes.

    :param register: call ``register(name, "module:Class", description)`` (or
        ``register(name, cls)``) for each class; the class subclasses :class:`pesmith.reference.Reference`.
    """
