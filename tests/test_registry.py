"""The plugin registry: lazy and idempotent loading, duplicate names, failing plugins, switches."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pesmith.errors import PluginError
from pesmith.registry import BUILTIN_PLUGINS, PluginFailure, Registry

COUNTING_PLUGIN = textwrap.dedent(
    """
    from pesmith import hookimpl
    from pesmith.plugins.descriptors.acsf import ACSF

    CALLS = []

    class Counted(ACSF):
        '''ACSF under another name, counting registrations.'''

    @hookimpl
    def pesmith_register_descriptors(register):
        CALLS.append(1)
        register("counted", Counted)
    """
)


def descriptor_hook(body: str, imports: str = "") -> str:
    """Source of a plugin module whose descriptor hook runs ``body`` (one line)."""
    return f"from pesmith import hookimpl\n{imports}\n@hookimpl\ndef pesmith_register_descriptors(register):\n    {body}\n"


def claiming_plugin(name: str, class_name: str) -> str:
    """Source of a plugin module that registers an ACSF subclass as descriptor ``name``."""
    return textwrap.dedent(
        f"""
        from pesmith import hookimpl
        from pesmith.plugins.descriptors.acsf import ACSF

        class {class_name}(ACSF):
            '''Another descriptor.'''

        @hookimpl
        def pesmith_register_descriptors(register):
            register({name!r}, {class_name})
        """
    )


def test_builtins_are_registered_by_pesmith(registry):
    assert "acsf" in registry.names("descriptor")
    assert "nn" in registry.names("model")
    infos = {(p.kind, p.name): p for p in registry.plugins()}
    assert infos[("descriptor", "acsf")].provider == "pesmith"
    assert infos[("model", "nn")].provider == "pesmith"
    assert infos[("descriptor", "acsf")].description  # first docstring line, shown by `pesmith plugins`
    assert registry.failures == []


def test_plugins_are_sorted_by_kind_then_name(registry):
    keys = [(p.kind, p.name) for p in registry.plugins()]
    order = ("descriptor", "model", "reference")
    assert keys == sorted(keys, key=lambda k: (order.index(k[0]), k[1]))


def test_listing_imports_no_plugin_class_and_get_imports_one():
    """In a fresh interpreter: building a Registry imports nothing, listing imports only the
    modules holding the hooks (no plugin class, no torch), ``get`` imports that class's module."""
    code = textwrap.dedent(
        """
        import sys
        from pesmith.registry import BUILTIN_PLUGINS, Registry
        registry = Registry(entry_points=False)
        assert not [m for m in BUILTIN_PLUGINS if m in sys.modules]
        modules = {info.target.partition(":")[0] for info in registry.plugins()}
        assert len(modules) == 18 and all(m in sys.modules for m in BUILTIN_PLUGINS)
        assert not [m for m in modules if m in sys.modules] and "torch" not in sys.modules, sorted(sys.modules)
        registry.get("descriptor", "acsf")
        assert [m for m in modules if m in sys.modules] == ["pesmith.plugins.descriptors.acsf"]
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_builtin_registrations_match_their_classes(registry):
    """Each built-in's "module:Class" is where its class lives, and its description is the first
    line of the class docstring (what `pesmith plugins` showed when it imported them)."""
    for info in registry.plugins():
        cls = info.cls
        assert info.target == f"{cls.__module__}:{cls.__qualname__}"
        assert info.description == cls.__doc__.strip().splitlines()[0], info.name


def test_extra_module_is_imported_on_first_use_only(plugin_module):
    name = plugin_module("lazy_probe_plugin", COUNTING_PLUGIN)
    registry = Registry(entry_points=False, modules=[name])
    assert name not in sys.modules
    assert "counted" in registry.names("descriptor")
    assert name in sys.modules


def test_entry_point_is_imported_on_first_use_only(example_plugin):
    registry = Registry(entry_points=True)
    assert "pesmith_example" not in sys.modules
    assert "example-radial" in registry.names("descriptor")
    assert "pesmith_example" in sys.modules  # the hook's module
    assert "pesmith_example.plugin" not in sys.modules  # the class's, not yet
    assert registry.get("descriptor", "example-radial").__module__ == "pesmith_example.plugin"


def test_class_registered_by_target_is_listed_and_imported_when_used(plugin_module):
    name = plugin_module("lazy_target_plugin", descriptor_hook("register('lazy', 'lazy_target_class:Lazy', 'A descriptor imported on use.')"))
    plugin_module("lazy_target_class", COUNTING_PLUGIN.replace("class Counted(ACSF)", "class Lazy(ACSF)"))
    registry = Registry(entry_points=False, modules=[name])
    (info,) = [p for p in registry.plugins() if p.name == "lazy"]
    assert (info.kind, info.target, info.description, info.provider) == ("descriptor", "lazy_target_class:Lazy", "A descriptor imported on use.", name)
    assert "lazy_target_class" not in sys.modules
    assert registry.get("descriptor", "lazy").__name__ == "Lazy"
    assert "lazy_target_class" in sys.modules


@pytest.mark.parametrize(
    "target,message",
    [
        ("missing_plugin_module:Thing", "ModuleNotFoundError: No module named 'missing_plugin_module'"),
        ("pesmith.plugins.descriptors.acsf:NoSuchClass", "AttributeError: module 'pesmith.plugins.descriptors.acsf' has no attribute 'NoSuchClass'"),
        ("pesmith.plugins.descriptors.acsf:torch", "is <module 'torch'"),
    ],
)
def test_target_that_cannot_be_loaded_is_listed_and_fails_when_used(plugin_module, target, message):
    name = plugin_module(f"bad_target_{abs(hash(target))}", descriptor_hook(f"register('missing', {target!r}, 'Listed, not importable.')"))
    registry = Registry(entry_points=False, modules=[name])
    assert "missing" in registry.names("descriptor") and registry.failures == []
    with pytest.raises(PluginError) as error:
        registry.get("descriptor", "missing")
    assert f"the descriptor 'missing' (from {name})" in str(error.value) and message in str(error.value)


def test_name_of_a_registered_class(registry):
    from pesmith.plugins.models.nn import BehlerParrinello

    assert registry.name_of(BehlerParrinello) == "nn"
    assert registry.name_of(int) is None


def test_loading_is_idempotent(plugin_module):
    name = plugin_module("counting_plugin", COUNTING_PLUGIN)
    registry = Registry(entry_points=False, modules=[name])
    first = registry.plugins()
    cls = registry.get("descriptor", "counted")
    for _ in range(3):
        assert registry.plugins() == first
        assert registry.names("descriptor") == [p.name for p in first if p.kind == "descriptor"]
        assert registry.get("descriptor", "counted") is cls
        assert registry.failures == []
    assert len(sys.modules[name].CALLS) == 1  # the hook ran once
    Registry(entry_points=False, modules=[name]).names("descriptor")
    assert len(sys.modules[name].CALLS) == 2  # a second registry loads on its own


def test_two_modules_claiming_one_name_is_an_error_naming_both(plugin_module):
    name = plugin_module("claims_acsf", claiming_plugin("acsf", "Impostor"))
    registry = Registry(entry_points=False, modules=[name])
    with pytest.raises(PluginError) as error:
        registry.names("descriptor")
    message = str(error.value)
    assert "'acsf'" in message
    assert "pesmith.plugins.descriptors.acsf.ACSF" in message
    assert "claims_acsf.Impostor" in message
    with pytest.raises(PluginError):  # not half-loaded: every use reports it again
        registry.get("descriptor", "acsf")


def test_two_distributions_claiming_one_name_name_both_packages(fake_distribution, plugin_module, monkeypatch):
    monkeypatch.delenv("PESMITH_PLUGINS", raising=False)
    plugin_module("first_radial", claiming_plugin("radial", "FirstRadial"))
    plugin_module("second_radial", claiming_plugin("radial", "SecondRadial"))
    fake_distribution("pesmith-first", {"first": "first_radial"})
    fake_distribution("pesmith-second", {"second": "second_radial"})
    with pytest.raises(PluginError) as error:
        Registry(entry_points=True).plugins()
    message = str(error.value)
    assert "two plugins claim the descriptor name 'radial'" in message
    for part in ("first_radial.FirstRadial", "pesmith-first", "second_radial.SecondRadial", "pesmith-second"):
        assert part in message


def test_module_failing_to_import_is_reported_and_builtins_still_load(plugin_module):
    broken = plugin_module("broken_plugin", "raise RuntimeError('cannot find libfoo.so')\n")
    registry = Registry(entry_points=False, modules=[broken, "no_such_plugin_module"])
    assert "acsf" in registry.names("descriptor")
    assert "nn" in registry.names("model")
    failures = {f.name: f.reason for f in registry.failures}
    assert failures["broken_plugin"] == "RuntimeError: cannot find libfoo.so"
    assert failures["no_such_plugin_module"].startswith("ModuleNotFoundError: ")
    assert "no_such_plugin_module" in failures["no_such_plugin_module"]
    assert all(isinstance(f, PluginFailure) for f in registry.failures)


def test_entry_point_failing_to_import_is_reported(fake_distribution, monkeypatch):
    monkeypatch.delenv("PESMITH_PLUGINS", raising=False)
    fake_distribution("pesmith-broken", {"broken": "pesmith_broken_missing.plugin"})
    registry = Registry(entry_points=True)
    assert "acsf" in registry.names("descriptor")
    (failure,) = [f for f in registry.failures if f.name == "broken"]
    assert failure.reason.startswith("ModuleNotFoundError: ") and "pesmith_broken_missing" in failure.reason


def test_plugin_hook_that_raises_is_reported(plugin_module):
    name = plugin_module(
        "raising_hook",
        "from pesmith import hookimpl\n\n@hookimpl\ndef pesmith_register_models(register):\n"
        "    raise ValueError('bad model table')\n",
    )
    registry = Registry(entry_points=False, modules=[name])
    assert registry.names("model") == ["committee", "gap", "linear", "nn"]
    assert PluginFailure(name, "ValueError: bad model table") in registry.failures


def test_unknown_kind_names_the_failed_plugins(plugin_module):
    broken = plugin_module("broken_descriptor_pkg", "import numpy\nraise ImportError('needs numpy>=9')\n")
    with pytest.raises(PluginError) as error:
        Registry(entry_points=False, modules=[broken]).get("descriptor", "mbtr")
    message = str(error.value)
    assert "unknown descriptor kind 'mbtr'; available: acsf, angle_3b, bispectrum, chebyshev, distance_2b, selected, soap, soap_quip." in message
    assert "broken_descriptor_pkg (ImportError: needs numpy>=9)" in message


@pytest.mark.parametrize("kind,name,available", [("descriptor", "soapy", "acsf, angle_3b, bispectrum, chebyshev, distance_2b, selected, soap"), ("model", "krr", "committee, gap, linear, nn")])
def test_unknown_kind_lists_the_available_ones(registry, kind, name, available):
    with pytest.raises(PluginError) as error:
        registry.get(kind, name)
    assert f"unknown {kind} kind {name!r}; available: {available}" in str(error.value)


def test_unknown_reference_kind_lists_the_builtins(registry):
    with pytest.raises(PluginError, match="unknown reference kind 'vasp'; available: ase, .*morse.*xtb"):
        registry.get("reference", "vasp")


@pytest.mark.parametrize("value,loaded", [("1", False), ("0", True), ("", True), (None, True)])
def test_disable_entry_points_environment_variable(example_plugin, monkeypatch, value, loaded):
    if value is None:
        monkeypatch.delenv("PESMITH_DISABLE_ENTRY_POINTS", raising=False)
    else:
        monkeypatch.setenv("PESMITH_DISABLE_ENTRY_POINTS", value)
    registry = Registry()
    assert ("example-radial" in registry.names("descriptor")) is loaded
    assert "acsf" in registry.names("descriptor")


def test_explicit_argument_overrides_the_environment(example_plugin, monkeypatch):
    monkeypatch.setenv("PESMITH_DISABLE_ENTRY_POINTS", "1")
    assert "example-radial" in Registry(entry_points=True).names("descriptor")
    monkeypatch.delenv("PESMITH_DISABLE_ENTRY_POINTS")
    assert "example-radial" not in Registry(entry_points=False).names("descriptor")


def test_pesmith_plugins_selects_entry_points(example_plugin, fake_distribution, monkeypatch):
    fake_distribution("pesmith-broken", {"broken": "pesmith_broken_missing.plugin"})
    monkeypatch.setenv("PESMITH_PLUGINS", "example")
    registry = Registry(entry_points=True)
    assert "example-radial" in registry.names("descriptor")
    assert registry.failures == []  # "broken" was not even tried
    monkeypatch.setenv("PESMITH_PLUGINS", "broken, other")
    registry = Registry(entry_points=True)
    assert "example-radial" not in registry.names("descriptor")
    assert [f.name for f in registry.failures] == ["broken"]


@pytest.mark.parametrize(
    "body,match",
    [
        ("register('', ACSF)", "invalid name ''"),
        ("register(3, ACSF)", "invalid name 3"),
        ("register('thing', ACSF(['Si']))", "which is not a class"),
        ("register('thing', 'acsf.ACSF', 'dotted, no colon')", "which is not a class"),
        ("register('thing', 'pesmith.plugins.descriptors.acsf:ACSF')", "without its one-line description"),
    ],
)
def test_register_rejects_bad_arguments(plugin_module, body, match):
    name = plugin_module(f"bad_register_{abs(hash(body))}", descriptor_hook(body, "from pesmith.plugins.descriptors.acsf import ACSF\n"))
    with pytest.raises(PluginError, match=match):
        Registry(entry_points=False, modules=[name]).plugins()
