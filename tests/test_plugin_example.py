"""The outside-plugin path: tests/plugin_example found through entry-point metadata, no pip install.

The example package is "installed" by writing its dist-info (METADATA + entry_points.txt) into a
temporary folder on ``sys.path`` (fixture ``example_plugin`` in conftest.py), exactly what
``importlib.metadata`` reads after ``pip install ./tests/plugin_example``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pesmith import cli
from pesmith.errors import ConfigError
from pesmith.model_file import load_potential
from pesmith.registry import Registry, default_registry
from pesmith.testing import check_descriptor

EXAMPLE_DESCRIPTOR = {"kind": "example-radial", "cutoff": 4.0, "n_radial": 4}
PESMITH = Path(sys.executable).with_name("pesmith")  # the console script of this environment
PLUGIN_EXAMPLE = Path(__file__).resolve().parent / "plugin_example"


def test_example_plugin_is_listed_with_its_provider(example_plugin):
    registry = Registry(entry_points=True)
    infos = {(p.kind, p.name): p for p in registry.plugins()}
    info = infos[("descriptor", "example-radial")]
    assert info.provider == "pesmith-example"
    assert info.cls.__module__ == "pesmith_example.plugin"
    assert info.description.startswith("Radial-only Gaussian descriptor")
    assert infos[("descriptor", "acsf")].provider == "pesmith"  # built-ins still there
    assert registry.failures == []


def test_example_plugin_absent_without_entry_points(example_plugin):
    assert "example-radial" not in Registry(entry_points=False).names("descriptor")


def test_example_descriptor_passes_the_contract_checks(example_plugin):
    cls = Registry(entry_points=True).get("descriptor", "example-radial")
    check_descriptor(cls(species=["Li", "Si"], cutoff=4.0, n_radial=4))


def test_contract_check_names_the_key_get_config_drops(example_plugin):
    cls = Registry(entry_points=True).get("descriptor", "example-radial")

    class DropsNRadial(cls):
        def get_config(self):
            return {k: v for k, v in super().get_config().items() if k != "n_radial"}

    with pytest.raises(AssertionError, match="^get_config does not round-trip: key n_radial missing"):
        check_descriptor(DropsNRadial(species=["Li", "Si"], cutoff=4.0, n_radial=4))


def test_train_and_reload_with_example_descriptor(example_plugin, write_config):
    registry = Registry(entry_points=True)
    config = write_config(descriptor=EXAMPLE_DESCRIPTOR)
    report = cli.train_command(config, registry)
    model_file = Path(report["model_file"])
    assert model_file.is_file()
    assert report["config"]["descriptor"] == {"kind": "example-radial", "species": ["Si"], "cutoff": 4.0, "n_radial": 4}
    potential, header = load_potential(model_file, registry)
    assert header["descriptor"]["kind"] == "example-radial"
    assert type(potential.descriptor) is registry.get("descriptor", "example-radial")
    assert potential.descriptor.n_features == 4


def test_unknown_key_in_example_descriptor_lists_its_arguments(example_plugin, write_config):
    config = write_config(descriptor={**EXAMPLE_DESCRIPTOR, "n_angular": 2})
    with pytest.raises(ConfigError) as error:
        cli.train_command(config, Registry(entry_points=True))
    message = str(error.value)
    assert "descriptor.n_angular" in message and "example-radial" in message
    assert "valid keys: kind, species, cutoff, n_radial" in message


@pytest.fixture
def fresh_default_registry(monkeypatch):
    """``default_registry()`` rebuilt for this test (it is cached per process)."""
    monkeypatch.delenv("PESMITH_DISABLE_ENTRY_POINTS", raising=False)
    default_registry.cache_clear()
    yield
    default_registry.cache_clear()


def test_cli_main_trains_and_evaluates_with_outside_plugin(
    example_plugin, fresh_default_registry, write_config, small_si_xyz, capsys
):
    config = write_config(descriptor=EXAMPLE_DESCRIPTOR, output="out/example.pt")
    assert cli.main(["train", str(config)]) == 0
    model_file = config.parent / "out" / "example.pt"
    assert model_file.is_file()
    assert cli.main(["evaluate", str(model_file), str(small_si_xyz)]) == 0
    assert "energy_rmse_meV_per_atom" in capsys.readouterr().out


def test_model_needing_a_missing_plugin_says_which_kind(example_plugin, write_config, small_si_xyz, monkeypatch, capsys):
    config = write_config(descriptor=EXAMPLE_DESCRIPTOR)
    model_file = Path(cli.train_command(config, Registry(entry_points=True))["model_file"])
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))  # plugin "uninstalled"
    assert cli.main(["evaluate", str(model_file), str(small_si_xyz)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown descriptor kind 'example-radial'" in err and "acsf" in err


def test_console_script_lists_outside_plugin(example_plugin):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(example_plugin), str(PLUGIN_EXAMPLE)]))
    env.pop("PESMITH_DISABLE_ENTRY_POINTS", None)
    env.pop("PESMITH_PLUGINS", None)
    result = subprocess.run([str(PESMITH), "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 3) for line in result.stdout.splitlines()]
    assert rows[0] == ["kind", "name", "package", "description"]
    assert ["descriptor", "example-radial", "pesmith-example"] in [row[:3] for row in rows]
    assert result.stderr == ""
