"""The plugin registry: built-in and outside plugins, registered through the same hooks.

Loading is lazy (on first use) and idempotent. Outside plugins come from the ``pesmith``
entry-point group; set ``PESMITH_DISABLE_ENTRY_POINTS=1`` to switch them off (tests) or
``PESMITH_PLUGINS=name1,name2`` to load only those entry points.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Callable, Iterable, Literal

import pluggy

from . import hookspecs
from .errors import PluginError

Kind = Literal["descriptor", "model", "reference"]
KINDS: tuple[Kind, ...] = ("descriptor", "model", "reference")
ENTRY_POINT_GROUP = "pesmith"
BUILTIN_PLUGINS: tuple[str, ...] = (
    "pesmith.plugins.descriptors.acsf",
    "pesmith.plugins.descriptors.chebyshev",
    "pesmith.plugins.descriptors.soap",
    "pesmith.plugins.models.committee",
    "pesmith.plugins.models.gap",
    "pesmith.plugins.models.linear",
    "pesmith.plugins.models.nn",
    "pesmith.plugins.references.ase_calculator",
    "pesmith.plugins.references.chgnet",
    "pesmith.plugins.references.gpaw",
    "pesmith.plugins.references.morse",
    "pesmith.plugins.references.sevennet",
    "pesmith.plugins.references.xtb",
)
_HOOK_OF_KIND = {
    "descriptor": "pesmith_register_descriptors",
    "model": "pesmith_register_models",
    "reference": "pesmith_register_references",
}


@dataclass(frozen=True)
class PluginInfo:
    """One registered class: its kind, the name configs use, and who provides it."""

    kind: Kind
    name: str
    cls: type
    provider: str

    @property
    def description(self) -> str:
        """The first line of the class docstring."""
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin module that could not be imported or registered."""

    name: str
    reason: str


class Registry:
    """Finds descriptor, model and reference classes by the name configs use.

    Parameters
    ----------
    entry_points
        Load outside plugins from the ``pesmith`` entry-point group. ``None`` reads the
        environment (``PESMITH_DISABLE_ENTRY_POINTS``).
    modules
        Extra plugin modules (objects or import names) registered like built-ins, e.g. in tests.
    """

    def __init__(self, entry_points: bool | None = None, modules: Iterable[ModuleType | str] = ()):
        if entry_points is None:
            entry_points = os.environ.get("PESMITH_DISABLE_ENTRY_POINTS", "") in ("", "0")
        self.entry_points = entry_points
        self.modules = tuple(modules)
        self._plugins: dict[tuple[Kind, str], PluginInfo] | None = None
        self._failures: list[PluginFailure] = []

    def get(self, kind: Kind, name: str) -> type:
        """Return the class registered as ``name`` for ``kind``.

        Raises
        ------
        PluginError
            If no plugin of that kind has that name; the message lists the available ones.
        """
        plugins = self._load()
        if (kind, name) not in plugins:
            available = ", ".join(self.names(kind)) or "none"
            hint = ""
            if self._failures:
                hint = " Plugins that failed to load: " + "; ".join(
                    f"{f.name} ({f.reason})" for f in self._failures
                )
            raise PluginError(f"unknown {kind} kind {name!r}; available: {available}.{hint}")
        return plugins[(kind, name)].cls

    def names(self, kind: Kind) -> list[str]:
        """The registered names of one kind, sorted."""
        return sorted(name for (k, name) in self._load() if k == kind)

    def plugins(self) -> list[PluginInfo]:
        """Every registered class, sorted by kind and name."""
        return sorted(self._load().values(), key=lambda p: (KINDS.index(p.kind), p.name))

    @property
    def failures(self) -> list[PluginFailure]:
        """Plugin modules that failed to import or register, with the reason."""
        self._load()
        return list(self._failures)

    def _load(self) -> dict[tuple[Kind, str], PluginInfo]:
        if self._plugins is not None:
            return self._plugins
        manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        manager.add_hookspecs(hookspecs)
        providers: dict[str, str] = {}
        for module in BUILTIN_PLUGINS:
            self._add_module(manager, providers, module, provider="pesmith")
        for module in self.modules:
            self._add_module(manager, providers, module, provider=module if isinstance(module, str) else module.__name__)
        if self.entry_points:
            self._add_entry_points(manager, providers)
        plugins: dict[tuple[Kind, str], PluginInfo] = {}
        for kind in KINDS:
            caller = getattr(manager.hook, _HOOK_OF_KIND[kind])
            for impl in caller.get_hookimpls():  # registration order: built-ins first
                register = self._register_callback(plugins, kind, providers[impl.plugin_name])
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:  # an outside plugin's bug must not hide the others
                    self._failures.append(PluginFailure(impl.plugin_name, f"{type(exc).__name__}: {exc}"))
        self._plugins = plugins
        return plugins

    def _add_module(
        self, manager: pluggy.PluginManager, providers: dict[str, str], module: ModuleType | str, provider: str
    ) -> None:
        name = module if isinstance(module, str) else module.__name__
        try:
            obj = importlib.import_module(module) if isinstance(module, str) else module
        except Exception as exc:
            self._failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
            return
        manager.register(obj, name=name)
        providers[name] = provider

    def _add_entry_points(self, manager: pluggy.PluginManager, providers: dict[str, str]) -> None:
        allow = {n.strip() for n in os.environ.get("PESMITH_PLUGINS", "").split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allow and ep.name not in allow:
                continue
            provider = ep.dist.name if ep.dist is not None else ep.value
            try:
                module = ep.load()
            except Exception as exc:
                self._failures.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))
                continue
            self._add_module(manager, providers, module, provider=provider)

    @staticmethod
    def _register_callback(
        plugins: dict[tuple[Kind, str], PluginInfo], kind: Kind, provider: str
    ) -> Callable[[str, type], None]:
        def register(name: str, cls: type) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{provider} registered a {kind} with an invalid name {name!r}")
            if not isinstance(cls, type):
                raise PluginError(f"{provider} registered {kind} {name!r} as {cls!r}, which is not a class")
            if (kind, name) in plugins:
                other = plugins[(kind, name)]
                raise PluginError(
                    f"two plugins claim the {kind} name {name!r}: {other.cls.__module__}.{other.cls.__qualname__}"
                    f" (from {other.provider}) and {cls.__module__}.{cls.__qualname__} (from {provider});"
                    " uninstall one of them or rename its registration"
                )
            plugins[(kind, name)] = PluginInfo(kind, name, cls, provider)

        return register


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry used when none is passed: built-ins plus installed entry points."""
    return Registry()
