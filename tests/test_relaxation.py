"""Relaxations of the search: the force and stress criteria of a cell relaxation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import units

from pesmith.errors import SimulationFailed
from pesmith.plugins.references.morse import MorseCalculator
from pesmith.simulate.relax import RelaxSettings, relax
from pesmith import ase_files

CRYSTALS = Path(__file__).resolve().parents[1] / "data" / "lisi_crystals"


@pytest.fixture(scope="module")
def strained():
    """Diamond Si with two Si turned into Li, expanded by 3 % and rattled: far from the Morse minimum."""
    atoms = ase_files.read(CRYSTALS / "Si_diamond.xyz", index=-1)
    atoms.numbers[:2] = 3
    atoms.set_cell(atoms.cell * 1.03, scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def _max_stress_GPa(atoms) -> float:
    atoms = atoms.copy()
    atoms.calc = MorseCalculator()
    return float(np.abs(atoms.get_stress(voigt=True)).max() / units.GPa)


def test_stress_criterion_leaves_less_stress_than_the_cell_filter_alone(strained):
    loose = relax(strained, MorseCalculator(), RelaxSettings(relax="cell", fmax=0.1, steps=500))
    tight = relax(strained, MorseCalculator(), RelaxSettings(relax="cell", fmax=0.1, smax=0.02, steps=500))
    assert tight.max_stress_GPa == pytest.approx(_max_stress_GPa(tight.atoms), rel=1e-6)
    assert tight.max_stress_GPa < 0.02
    assert tight.max_force < 0.1
    assert loose.max_stress_GPa > 0.02  # the filter's own criterion stops with stress left (why smax exists)
    assert tight.energy < loose.energy


def test_a_relaxation_that_stops_short_fails_with_its_residuals(strained):
    with pytest.raises(SimulationFailed, match=r"smax 0.001 GPa not reached in 5 steps \(cell\): max force .* max stress"):
        relax(strained, MorseCalculator(), RelaxSettings(relax="cell", fmax=0.01, smax=0.001, steps=5))
