"""The plugin contract: one pluggy hook per kind of plugin.

As in simonw/llm, pesmith passes a ``register(name, cls)`` callback into each hook, so the
host keeps control of names, duplicates and validation. The ``name`` is the ``kind:`` that
configuration files use.

A plugin module implements any of these hooks with :data:`hookimpl`::

    from pesmith import hookimpl

    @hookimpl
    def pesmith_register_descriptors(register):
        register("my-descriptor", MyDescriptor)

and an outside package announces the module in its ``pyproject.toml``::

    [project.entry-points.pesmith]
    myplugin = "mypkg.plugin"
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "pesmith"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def pesmith_register_descriptors(register: Callable[[str, type], None]) -> None:
    """Register descriptor classes.

    :param register: call ``register(name, cls)`` for each class; ``cls`` subclasses
        :class:`pesmith.descriptor.Descriptor`.
    """


@hookspec
def pesmith_register_models(register: Callable[[str, type], None]) -> None:
    """Register model classes.

    :param register: call ``register(name, cls)`` for each class; ``cls`` subclasses
        :class:`pesmith.model.Model`.
    """


@hookspec
def pesmith_register_references(register: Callable[[str, type], None]) -> None:
    """Register reference (labeling) classes.

    :param register: call ``register(name, cls)`` for each class; ``cls`` subclasses
        :class:`pesmith.reference.Reference`.
    """
