"""pesmith's GA against a peer (ase-ga) on the 1365-arrangement Morse problem: a small version of
``scripts/bench_search.py`` through the same code (``scripts/search_peer.py``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pesmith.search.delithiation import DelithiationProblem
from pesmith.testing import amorphous_lisi

from conftest import load_script


peer = load_script("search_peer")
needs_ase_ga = pytest.mark.skipif(
    importlib.util.find_spec("ase_ga") is None, reason="ase-ga not installed (it is in the dev extra: pip install -e '.[dev]')"
)


@pytest.fixture(scope="module")
def problem() -> DelithiationProblem:
    return DelithiationProblem(amorphous_lisi(19, volume_per_atom=17.0, seed=1), 4)


@pytest.fixture(scope="module")
def cache(problem):
    return peer.EnergyCache(problem)


@pytest.fixture(scope="module")
def enumeration(cache):
    return peer.enumerate_all(cache)


def test_enumeration_counts_every_arrangement_once(problem, cache, enumeration):
    assert enumeration.n_arrangements == problem.n_arrangements == len(cache.energies) == 1365
    assert enumeration.minimum == min(cache.energies.values())
    assert enumeration.n_at_minimum >= 1 and enumeration.spread > 0


def test_pesmith_finds_the_minimum_with_a_quarter_of_enumeration(problem, cache, enumeration):
    quarter = problem.n_arrangements / 4
    runs = [peer.run_pesmith(problem, cache, enumeration.minimum, seed, budget=int(quarter)) for seed in range(5)]
    for run in runs:
        assert run.evaluations == run.distinct  # pesmith never asks for a genome twice
        assert run.found == (run.best_energy <= enumeration.minimum + peer.FOUND_TOLERANCE)
        if run.found:
            assert run.evaluations_to_minimum_sequential <= run.evaluations_to_minimum <= run.evaluations
    # at its own stopping rule, i.e. without knowing the minimum
    assert sum(r.own_stop_found and r.own_stop_evaluations < quarter for r in runs) >= 4


@needs_ase_ga
def test_ase_ga_layout_keeps_atoms_on_the_li_sites(problem):
    from ase_ga.cutandsplicepairing import CutAndSplicePairing
    from ase_ga.standardmutations import PermutationMutation
    from ase_ga.utilities import closest_distances_generator, get_all_atom_types

    layout = peer.AseGaLayout(problem)
    rng = np.random.default_rng(0)
    first, second = problem.random_genome(rng), problem.random_genome(rng)
    a, b = layout.candidate(first), layout.candidate(second)
    assert layout.genome(a) == first and layout.genome(b) == second
    assert a.get_chemical_formula() == "Li11Si4X4"
    np.testing.assert_allclose(a[: len(layout.slab)].positions, layout.slab.positions)

    legacy = np.random.RandomState(0)
    mutant = PermutationMutation(layout.n_top, rng=legacy).mutate(a)
    moved = layout.genome(mutant)
    assert sum(moved) == problem.n_remove and moved != first

    blmin = closest_distances_generator(get_all_atom_types(layout.slab, layout.top_numbers), peer.ASE_GA_BLMIN_RATIO)
    pairing = CutAndSplicePairing(layout.slab, layout.n_top, blmin, rng=legacy)
    for _ in range(5):
        child = pairing.cross(a, b)
        assert child is not None and sum(layout.genome(child)) == problem.n_remove

    off_site = a.copy()
    off_site.positions[-1] += 0.5
    with pytest.raises(RuntimeError, match="off the Li sites"):
        layout.genome(off_site)


@needs_ase_ga
def test_ase_ga_run_counts_its_evaluations(problem, cache, enumeration):
    run = peer.run_ase_ga(problem, cache, enumeration.minimum, seed=0, budget=40)
    assert run.evaluations <= 40 and run.distinct <= run.evaluations
    assert run.found or run.evaluations == 40
    assert run.found == (run.best_energy <= enumeration.minimum + peer.FOUND_TOLERANCE)


@pytest.mark.slow
@needs_ase_ga
def test_pesmith_against_ase_ga_on_five_seeds(problem, cache, enumeration):
    """Both GAs, 5 seeds, a budget of a quarter of the arrangements (3 min on 2 shared cores, load 6)."""
    budget = problem.n_arrangements // 4
    ours = [peer.run_pesmith(problem, cache, enumeration.minimum, seed, budget) for seed in range(5)]
    theirs = [peer.run_ase_ga(problem, cache, enumeration.minimum, seed, budget) for seed in range(5)]
    assert sum(r.found and r.evaluations_to_minimum < budget for r in ours) >= 4
    assert all(r.evaluations <= budget for r in theirs)
    assert all(r.found == (r.best_energy <= enumeration.minimum + peer.FOUND_TOLERANCE) for r in theirs)
