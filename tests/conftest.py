"""Shared fixtures: paths to the bundled data and a registry without outside entry points."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from pesmith import cli
from pesmith.data import Dataset
from pesmith.registry import Registry

# Tests run small workloads; one thread avoids OpenMP spin-waiting when cores are shared.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MPIEXEC = Path(sys.executable).with_name("mpiexec")


def mpiexec() -> Path:
    """The ``mpiexec`` beside this Python. Skips when it or mpi4py is missing, except under
    ``PESMITH_REQUIRE_MPI=1`` (set by ``.ci/run``, which installs them), where that is a failure."""
    missing = [] if MPIEXEC.exists() else [f"no mpiexec beside {sys.executable}"]
    if importlib.util.find_spec("mpi4py") is None:
        missing.append("mpi4py is not installed")
    if missing:
        message = "; ".join(missing) + " (pip install mpi4py mpich)"
        if os.environ.get("PESMITH_REQUIRE_MPI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return MPIEXEC


@pytest.fixture
def registry() -> Registry:
    return Registry(entry_points=False)


@pytest.fixture(scope="session")
def si_train_path() -> Path:
    return DATA / "mlearn" / "Si_train.xyz"


@pytest.fixture(scope="session")
def li_train_path() -> Path:
    return DATA / "mlearn" / "Li_train.xyz"


@pytest.fixture(scope="session")
def si_model_path(tmp_path_factory, si_train_path) -> Path:
    """A small Si model trained once per test session through `pesmith train`'s code path."""
    from pesmith.cli import train_command

    folder = tmp_path_factory.mktemp("si_model")
    config = folder / "si.yaml"
    config.write_text(
        f"data: {{train: {si_train_path}, validation_fraction: 0.1, seed: 0}}\n"
        "descriptor: {kind: acsf, cutoff: 5.0, angular_cutoff: 4.0, n_radial: 8, n_angular: 2, zetas: [1, 4]}\n"
        "model: {kind: nn, hidden: [15, 15]}\n"
        "training: {epochs: 60, force_weight: 0.1, batch_size: 16, learning_rate: 3.0e-3, seed: 0, progress: false}\n"
        "output: si.pt\n"
    )
    train_command(config, Registry(entry_points=False))
    return folder / "si.pt"


# ---------------------------------------------------------------------------------------------
def load_script(name: str):
    """Import ``scripts/<name>.py`` as module ``name`` (registered in ``sys.modules``, through which
    pydantic resolves a script's config annotations); scripts are not part of the package."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Small data, tiny configs and fake installed distributions (registry, plugin, CLI tests).
# ---------------------------------------------------------------------------------------------

import importlib  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

PLUGIN_EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
# A descriptor small enough that a 2-epoch fit on 3 structures takes well under a second.
TINY_DESCRIPTOR = {"kind": "acsf", "cutoff": 4.0, "n_radial": 3, "n_angular": 1, "zetas": [1.0]}
TINY_MODEL = {"kind": "nn", "hidden": [4]}
TINY_TRAINING = {"epochs": 2, "batch_size": 4, "progress": False, "seed": 0}


@pytest.fixture(scope="session")
def small_si_xyz(tmp_path_factory, si_train_path) -> Path:
    """Four small Si structures (12-18 atoms, energies/forces/stress) sliced from Si_train.xyz."""
    import ase.io

    structures = [a for a in ase.io.read(si_train_path, index=":") if len(a) <= 20][:4]
    assert len(structures) == 4
    path = tmp_path_factory.mktemp("data") / "si_small.xyz"
    ase.io.write(path, structures, format="extxyz")
    return path


@pytest.fixture(scope="session")
def small_li_xyz(tmp_path_factory, li_train_path) -> Path:
    """One labeled Li structure from Li_train.xyz."""
    import ase.io

    path = tmp_path_factory.mktemp("data") / "li_small.xyz"
    ase.io.write(path, [ase.io.read(li_train_path, index=0)], format="extxyz")
    return path


def tiny_config(data_path: Path, output: str | Path = "out/model.pt", **sections) -> dict:
    """A training config dict with the tiny descriptor/model/training; ``sections`` override."""
    config = {
        "data": {"train": str(data_path), "validation_fraction": 0.25, "seed": 0},
        "descriptor": dict(TINY_DESCRIPTOR),
        "model": dict(TINY_MODEL),
        "training": dict(TINY_TRAINING),
        "output": str(output),
    }
    config.update(sections)
    return config


@pytest.fixture
def write_config(tmp_path, small_si_xyz):
    """``write_config(name="config.yaml", data_path=..., **sections) -> Path`` of a tiny YAML config."""

    def write(name: str = "config.yaml", data_path: Path | None = None, **sections) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(data_path or small_si_xyz, **sections), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_si_model(tmp_path_factory, small_si_xyz) -> Path:
    """A Si model file trained for 2 epochs with the tiny config (built-in plugins only)."""
    from pesmith.cli import train_command

    folder = tmp_path_factory.mktemp("tiny_model")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(small_si_xyz, output="si_tiny.pt")))
    report = train_command(config, Registry(entry_points=False))
    return Path(report["model_file"])


@pytest.fixture
def site_dir(tmp_path, monkeypatch) -> Path:
    """An empty folder on ``sys.path``; modules imported from it are forgotten afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(site) in str(getattr(module, "__file__", "") or ""):
            del sys.modules[name]


@pytest.fixture
def plugin_module(site_dir):
    """``plugin_module(name, source) -> name``: write an importable module into ``site_dir``."""

    def write(name: str, source: str) -> str:
        (site_dir / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        return name

    return write


@pytest.fixture
def fake_distribution(site_dir):
    """``fake_distribution(name, {ep_name: "module"}) -> dist-info path``: an "installed" package.

    Writes ``<name>-<version>.dist-info/{METADATA,entry_points.txt}`` into a folder on
    ``sys.path``, which is all ``importlib.metadata`` needs to list its ``pesmith`` entry points.
    """

    def write(name: str, entry_points: dict[str, str], version: str = "0.1") -> Path:
        info = site_dir / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[pesmith]\n{lines}")
        importlib.invalidate_caches()
        return info

    return write


def _forget_example_modules() -> None:
    for name in [n for n in sys.modules if n == "pesmith_example" or n.startswith("pesmith_example.")]:
        del sys.modules[name]


@pytest.fixture
def example_plugin(fake_distribution, monkeypatch) -> Path:
    """tests/plugin_example "installed" without pip: its dist-info and its source on sys.path.

    Returns the folder to add to PYTHONPATH (with ``PLUGIN_EXAMPLE``) for a subprocess.
    """
    monkeypatch.delenv("PESMITH_DISABLE_ENTRY_POINTS", raising=False)
    monkeypatch.delenv("PESMITH_PLUGINS", raising=False)
    info = fake_distribution("pesmith-example", {"example": "pesmith_example"})
    monkeypatch.syspath_prepend(str(PLUGIN_EXAMPLE))
    _forget_example_modules()
    yield info.parent
    _forget_example_modules()


@pytest.fixture
def morse_label_db():
    """``morse_label_db(path, n, seed=0, **morse_parameters) -> Path``: an ase.db of ``n`` rattled
    2-atom LiSi cells labeled by the ``morse`` reference as ``pesmith label`` writes it."""
    from ase.build import bulk

    from pesmith.labeling import label_one
    from pesmith.plugins.references.morse import Morse
    from pesmith.reference_db import ReferenceDB

    def make(path: Path, n: int, seed: int = 0, **parameters) -> Path:
        reference = Morse(**parameters)
        store = ReferenceDB(path, "morse", reference.get_config(), reference.code_version())
        for index in range(n):
            atoms = bulk("LiSi", "zincblende", a=5.9)
            atoms.rattle(0.05, seed=seed + index)
            store.write(atoms, label_one(reference, None, atoms), source="test", source_index=index)
        return path

    return make


def write_xyz(dataset: Dataset, path: Path) -> Path:
    """``dataset`` as an extended-XYZ file with its energies, forces and (where present) stresses."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for atoms, energy, forces, stress in zip(dataset.structures, dataset.energies, dataset.forces, dataset.stresses):
        atoms = atoms.copy()
        labels = {"energy": energy, "forces": forces} | ({"stress": stress} if stress is not None else {})
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def train_config(tmp_path: Path, data: Path, model: str, training: str) -> Path:
    """A `pesmith train` config in ``tmp_path`` on ``data`` with a small Chebyshev descriptor;
    ``model`` and ``training`` are the YAML mappings of those sections."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data: {{train: {data}, validation_fraction: 0.2, seed: 0}}\n"
        "descriptor: {kind: chebyshev, radial_cutoff: 6.0, angular_cutoff: 3.5, radial_order: 8, angular_order: 2}\n"
        f"model: {model}\n"
        f"training: {training}\n"
        "output: out/model.pt\n"
    )
    return config


@pytest.fixture
def builtin_cli(monkeypatch):
    """The CLI with the built-in plugins only (no outside entry points)."""
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
