"""The plugin registry: built-in and outside plugins, registered through the same hooks.

A plugin is known by its kind, its name, its one-line description and where its class lives
(``"module:Class"``); the module is imported when the class is first used (:meth:`Registry.get`,
:attr:`PluginInfo.cls`), so listing the plugins imports none of them (and no torch). Loading the
hooks is lazy (on first use) and idempotent. Outside plugins come from the ``pesmith`` entry-point
group; set ``PESMITH_DISABLE_ENTRY_POINTS=1`` to switch them off (tests) or
``PESMITH_PLUGINS=name1,name2`` to load only those entry points.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Callable, Iterable, Literal

import pluggy

from . import hookspecs
from .errors import PluginError

Kind = Literal["descriptor", "model", "reference"]
KINDS: tuple[Kind, ...] = ("descriptor", "model", "reference")
ENTRY_POINT_GROUP = "pesmith"
BUILTIN_PLUGINS: tuple[str, ...] = (  # each registers its classes by "module:Class", importing none
    "pesmith.plugins.descriptors",
    "pesmith.plugins.models",
    "pesmith.plugins.references",
)
_HOOK_OF_KIND = {
    "descriptor": "pesmith_register_descriptors",
    "model": "pesmith_register_models",
    "reference": "pesmith_register_references",
}
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: its kind, the name configs use, where its class lives
    (``"module:Class"``), its one-line description and who provides it."""

    kind: Kind
    name: str
    target: str
    description: str
    provider: str
    registered_class: type | None = field(default=None, compare=False, repr=False)  # registered as a class, not a target

    @property
    def cls(self) -> type:
        """The class, its module imported now if it was not yet.

        Raises
        ------
        PluginError
            If the module cannot be imported or ``target`` does not name a class in it.
        """
        if self.registered_class is not None:
            return self.registered_class
        module_name, _, attributes = self.target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for attribute in attributes.split("."):
                obj = getattr(obj, attribute)
        except Exception as exc:
            raise PluginError(
                f"the {self.kind} {self.name!r} (from {self.provider}) cannot be loaded from {self.target}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(obj, type):
            raise PluginError(f"the {self.kind} {self.name!r} (from {self.provider}): {self.target} is {obj!r}, not a class")
        return obj

    @property
    def imported(self) -> bool:
        """Whether the class is at hand without importing anything (its module is loaded)."""
        return self.registered_class is not None or self.target.partition(":")[0] in sys.modules


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
        """Return the class registered as ``name`` for ``kind``, importing its module.

        Raises
        ------
        PluginError
            If no plugin of that kind has that name (the message lists the available ones), or
            its module cannot be imported.
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
        """Every registered plugin, sorted by kind and name; no plugin module is imported."""
        return sorted(self._load().values(), key=lambda p: (KINDS.index(p.kind), p.name))

    def name_of(self, cls: type) -> str | None:
        """The name ``cls`` is registered under, or ``None``. Only plugins whose module is already
        imported are compared (the class of an existing object always is), so none is imported."""
        for info in self._load().values():
            if info.imported and info.cls is cls:
                return info.name
        return None

    @property
    def failures(self) -> list[PluginFailure]:
        """Hook modules that failed to import or register, with the reason (a plugin's own
        module is imported only when its class is used, and reports there)."""
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
    ) -> Callable[..., None]:
        def register(name: str, plugin: type | str, description: str | None = None) -> None:
            """``register(name, "module:Class", "one line")``, or ``register(name, Class)`` (the
            description is then the first line of its docstring)."""
            if not isinstance(name, str) or not name:
                raise PluginError(f"{provider} registered a {kind} with an invalid name {name!r}")
            if isinstance(plugin, type):
                info = PluginInfo(kind, name, f"{plugin.__module__}:{plugin.__qualname__}",
                                  _first_line(plugin.__doc__) if description is None else description, provider, plugin)
            elif isinstance(plugin, str) and _TARGET.fullmatch(plugin):
                if not isinstance(description, str):
                    raise PluginError(f"{provider} registered {kind} {name!r} as {plugin!r} without its one-line description")
                info = PluginInfo(kind, name, plugin, description, provider)
            else:
                raise PluginError(
                    f"{provider} registered {kind} {name!r} as {plugin!r}, which is not a class (nor a 'module:Class' string)"
                )
            if (kind, name) in plugins:
                other = plugins[(kind, name)]
                raise PluginError(
                    f"two plugins claim the {kind} name {name!r}: {_dotted(other.target)} (from {other.provider})"
                    f" and {_dotted(info.target)} (from {provider}); uninstall one of them or rename its registration"
                )
            plugins[(kind, name)] = info

        return register


def _first_line(doc: str | None) -> str:
    """The first line of a docstring ("" without one)."""
    doc = (doc or "").strip()
    return doc.splitlines()[0] if doc else ""


def _dotted(target: str) -> str:
    """``"pkg.mod:Class"`` as ``"pkg.mod.Class"``."""
    return target.replace(":", ".")


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry used when none is passed: built-ins plus installed entry points."""
    return Registry()
