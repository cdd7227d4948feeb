"""Model-driven anneals (MD schedule + relaxation) with an analytic calculator."""

from __future__ import annotations

import numpy as np
import pytest

from pesmith.errors import SimulationFailed
from pesmith.plugins.references.morse import MorseCalculator
from pesmith.simulate.md import MeltQuenchSettings
from pesmith.search.anneal import QuenchSettings, anneal
from pesmith.simulate.relax import RelaxSettings, relax
from pesmith.testing import amorphous_lisi

SHORT = MeltQuenchSettings(melt_K=1500.0, melt_ps=0.02, quench_ps=0.04, final_K=300.0, timestep_fs=2.0, interval=10)


def settings(**changes) -> QuenchSettings:
    return QuenchSettings(melt_quench=SHORT, relax=RelaxSettings(relax="positions", fmax=0.05, steps=400)).model_copy(update=changes)


def test_anneal_relaxes_after_the_md_and_repeats_with_the_same_seed():
    atoms = amorphous_lisi(24, volume_per_atom=17.0, seed=2)
    first = anneal(atoms, MorseCalculator(), settings(), np.random.default_rng(5))
    again = anneal(atoms, MorseCalculator(), settings(), np.random.default_rng(5))
    other = anneal(atoms, MorseCalculator(), settings(), np.random.default_rng(6))
    assert first.energy == again.energy and first.energy != other.energy
    assert np.linalg.norm(first.forces, axis=1).max() < 0.05
    assert not np.allclose(first.atoms.positions, relax(atoms, MorseCalculator(), settings().relax).atoms.positions, atol=0.1)  # it moved


def test_an_md_that_brings_atoms_too_close_fails_with_the_reason():
    atoms = amorphous_lisi(24, volume_per_atom=17.0, seed=2)
    with pytest.raises(SimulationFailed, match="closer than 2.9 Å"):
        anneal(atoms, MorseCalculator(), settings(min_distance=2.9), np.random.default_rng(5))
