"""pesmith relax: structures relaxed with a reference plugin's calculator or a model file."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT

from pesmith import cli

EMT_OPTIONS = ["--reference", "ase", "--option", "calculator=ase.calculators.emt.EMT", "--option", "periodic=true"]


@pytest.fixture
def strained_cu(tmp_path):
    frames = []
    for seed, scale in ((0, 1.03), (1, 0.98)):
        atoms = bulk("Cu", "fcc", a=3.6 * scale, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=seed)
        frames.append(atoms)
    path = tmp_path / "cu.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path


def test_cell_relaxation_with_an_ase_calculator_meets_both_criteria(strained_cu, tmp_path, capsys):
    output = tmp_path / "new" / "folder" / "relaxed.xyz"  # folders still to make
    assert cli.main(["relax", str(strained_cu), *EMT_OPTIONS, "--cell", "--fmax", "0.01", "--smax", "0.05", "--output", str(output)]) == 0
    relaxed = ase.io.read(output, index=":")
    assert len(relaxed) == 2
    for atoms in relaxed:
        check = atoms.copy()
        check.calc = EMT()
        assert np.linalg.norm(check.get_forces(), axis=1).max() < 0.01
        assert np.abs(check.get_stress()).max() / units.GPa < 0.05
        assert atoms.get_potential_energy() == pytest.approx(check.get_potential_energy(), abs=1e-9)
    assert relaxed[0].cell.volume == pytest.approx(relaxed[1].cell.volume, rel=1e-3)  # both reach EMT's lattice constant
    assert "wrote 2 relaxed structures" in capsys.readouterr().out


def test_a_relaxation_that_does_not_converge_is_reported_and_the_others_written(strained_cu, tmp_path, capsys):
    output = tmp_path / "relaxed.xyz"
    assert cli.main(["relax", str(strained_cu), *EMT_OPTIONS, "--cell", "--steps", "2", "--output", str(output)]) == 1
    out = capsys.readouterr().out
    assert out.count("failed: structure") == 2 and "not reached in 2 steps" in out
    assert not output.exists()


def test_relax_with_a_model_file(tiny_si_model, small_si_xyz, tmp_path):
    output = tmp_path / "si.xyz"
    assert cli.main(["relax", str(small_si_xyz), "--model", str(tiny_si_model), "--fmax", "0.1", "--steps", "2000", "--output", str(output)]) == 0
    assert all(np.linalg.norm(a.get_forces(), axis=1).max() < 0.1 for a in ase.io.read(output, index=":"))


def test_an_option_without_a_value_is_one_line(strained_cu, capsys):
    assert cli.main(["relax", str(strained_cu), "--reference", "ase", "--option", "calculator"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --option 'calculator': write KEY=VALUE"]
