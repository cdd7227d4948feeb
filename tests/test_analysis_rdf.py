"""pesmith.analysis.rdf against exact results (fcc shells) and against ASE's get_rdf."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.geometry.rdf import get_rdf

from pesmith.analysis.rdf import coordination_numbers, rdf
from pesmith.errors import ConfigError, DataError

A_CU = 3.6  # Å, fcc lattice constant used throughout


def _trajectory(base: Atoms, n_frames: int, sigma: float, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
        frames.append(atoms)
    return frames


def _lithium_copper(seed: int = 0) -> Atoms:
    """A rattled 4x4x4 cubic fcc cell (256 atoms, 14.4 Å) with a quarter of the atoms Li."""
    atoms = bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(4)
    atoms.numbers[::4] = 3
    atoms.rattle(0.15, seed=seed)
    return atoms


@pytest.mark.parametrize("neighbors", ["ase", "vesin"])
def test_fcc_first_peak_and_coordination_12(neighbors):
    atoms = bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(3)
    result = rdf([atoms], r_max=4.0, n_bins=400, neighbors=neighbors)
    g = result.partial[("Cu", "Cu")]
    peak = result.r[np.argmax(g)]
    assert abs(peak - A_CU / np.sqrt(2)) <= 0.5 * (result.edges[1] - result.edges[0])
    cn, r_min = coordination_numbers(result)[("Cu", "Cu")]
    assert cn == pytest.approx(12.0, abs=1e-12)
    assert A_CU / np.sqrt(2) < r_min < A_CU  # between the first and the second shell


def test_fcc_rattled_coordination_12_by_first_minimum():
    frames = _trajectory(bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(3), n_frames=5, sigma=0.05, seed=3)
    result = rdf(frames, r_max=4.5, n_bins=90)
    cn, r_min = coordination_numbers(result)[("Cu", "Cu")]
    assert cn == pytest.approx(12.0, abs=1e-12)
    assert 2.8 < r_min < 3.4


@pytest.mark.parametrize("neighbors", ["ase", "vesin"])
def test_partials_and_total_equal_ase(neighbors):
    frames = [_lithium_copper(seed) for seed in range(3)]
    r_max, n_bins = 7.0, 140  # the cell is 14.4 Å, ASE's limit is 7.2 Å
    result = rdf(frames, r_max=r_max, n_bins=n_bins, neighbors=neighbors)
    g_ase, r_ase = get_rdf(frames, r_max, n_bins)
    np.testing.assert_allclose(result.r, r_ase, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.total, g_ase, rtol=0, atol=1e-6)
    for a, b in [("Li", "Li"), ("Li", "Cu"), ("Cu", "Li"), ("Cu", "Cu")]:
        g_ase = get_rdf(frames, r_max, n_bins, elements=(a, b), no_dists=True)
        np.testing.assert_allclose(result.partial[(a, b)], g_ase, rtol=0, atol=1e-6)
    assert result.n_frames == 3


@pytest.mark.parametrize("neighbors", ["ase", "vesin"])
def test_cell_smaller_than_2_r_max_equals_its_supercell(neighbors):
    """A 3-atom triclinic cell (about 4 Å) against its 3x3x3 supercell: g and CN agree."""
    small = Atoms("LiCu2", scaled_positions=[[0, 0, 0], [0.4, 0.3, 0.2], [0.7, 0.6, 0.9]],
                  cell=[[4.0, 0, 0], [0.8, 3.9, 0], [0.5, 0.4, 4.2]], pbc=True)
    r_max = 5.93  # 1.5x the cell: each neighbour is met in many images; no distance on a bin edge
    one = rdf([small], r_max=r_max, n_bins=61, neighbors=neighbors)
    many = rdf([small.repeat(3)], r_max=r_max, n_bins=61, neighbors=neighbors)
    np.testing.assert_allclose(one.total, many.total, rtol=0, atol=1e-9)
    for pair in one.partial:
        np.testing.assert_allclose(one.partial[pair], many.partial[pair], rtol=0, atol=1e-9)
        np.testing.assert_allclose(one.cumulative[pair], many.cumulative[pair], rtol=0, atol=1e-9)
    assert one.total.sum() > 0


def test_explicit_cutoff_counts_the_first_shell():
    result = rdf([bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(3)], r_max=4.0, n_bins=40)
    cn, r = coordination_numbers(result, r_cut=3.0)[("Cu", "Cu")]
    assert cn == 12.0 and r == pytest.approx(3.0)


def test_trajectory_without_cell_is_a_clear_error():
    frames = [Atoms("Li2", positions=[[0, 0, 0], [2.5, 0, 0]])]
    with pytest.raises(DataError, match="frame 0 has no cell"):
        rdf(frames, r_max=4.0)


def test_bad_settings_and_empty_trajectory():
    atoms = bulk("Cu", "fcc", a=A_CU, cubic=True)
    with pytest.raises(ConfigError, match="r_max"):
        rdf([atoms], r_max=0.0)
    with pytest.raises(ConfigError, match="neighbors"):
        rdf([atoms], r_max=3.0, neighbors="lammps")
    with pytest.raises(DataError, match="no frames"):
        rdf([], r_max=3.0)


def test_generator_is_read_once():
    frames = (_lithium_copper(seed) for seed in range(2))
    assert rdf(frames, r_max=5.0, n_bins=10).n_frames == 2


@pytest.mark.parametrize("neighbors", ["ase", "vesin"])
def test_reused_pair_list_equals_a_new_list_every_frame(neighbors, monkeypatch):
    """A random walk wrapped into the cell (atoms cross the boundary), with the cell rescaled
    halfway as in NPT: the Verlet-style reuse gives the RDF of a list rebuilt every frame, and
    it does reuse (fewer builds than frames)."""
    import pesmith.analysis.rdf as module

    rng = np.random.default_rng(7)
    base = _lithium_copper(seed=1)
    frames, positions = [], base.positions.copy()
    for index in range(40):
        positions = positions + rng.normal(0.0, 0.06, positions.shape)
        atoms = base.copy()
        if index >= 20:
            atoms.set_cell(base.cell * 1.02, scale_atoms=False)
        atoms.positions = positions * (1.02 if index >= 20 else 1.0)
        atoms.wrap()
        frames.append(atoms)
    assert any(np.abs(frames[k].positions - frames[k - 1].positions).max() > 5.0 for k in range(1, 40))  # someone crossed
    builds = []
    real = module._pair_function

    def counting(kind, cutoff):
        build = real(kind, cutoff)
        return lambda atoms: (builds.append(1), build(atoms))[1]

    monkeypatch.setattr(module, "_pair_function", counting)
    reused = rdf(frames, r_max=6.0, n_bins=120, neighbors=neighbors, skin=2.0)
    n_reused = len(builds)
    fresh = rdf(frames, r_max=6.0, n_bins=120, neighbors=neighbors, skin=0.0)
    assert len(builds) - n_reused == 40
    assert 2 <= n_reused < 20  # one build per cell at least, far fewer than frames
    np.testing.assert_allclose(reused.total, fresh.total, rtol=0, atol=1e-12)
    for pair in fresh.partial:
        np.testing.assert_allclose(reused.partial[pair], fresh.partial[pair], rtol=0, atol=1e-12)
        np.testing.assert_allclose(reused.cumulative[pair], fresh.cumulative[pair], rtol=0, atol=1e-12)


def test_negative_skin_is_refused():
    with pytest.raises(ConfigError, match="skin"):
        rdf([_lithium_copper()], r_max=3.0, skin=-0.5)


def test_two_workers_give_the_serial_rdf():
    """Blocks of 7 frames in 2 spawned processes: the same g, cumulative counts and frame count as
    one process; a frame without a cell in a worker's block is named by its trajectory index."""
    rng = np.random.default_rng(5)
    base = _lithium_copper(seed=2)
    frames = []
    for _ in range(30):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        atoms.wrap()
        frames.append(atoms)
    serial = rdf(frames, r_max=6.0, n_bins=60)
    parallel = rdf(iter(frames), r_max=6.0, n_bins=60, workers=2, chunk_frames=7)
    assert parallel.n_frames == serial.n_frames == 30
    np.testing.assert_allclose(parallel.total, serial.total, rtol=0, atol=1e-12)
    for pair in serial.partial:
        np.testing.assert_allclose(parallel.partial[pair], serial.partial[pair], rtol=0, atol=1e-12)
        np.testing.assert_allclose(parallel.cumulative[pair], serial.cumulative[pair], rtol=0, atol=1e-12)
    broken = [atoms.copy() for atoms in frames]
    broken[23].cell = None
    with pytest.raises(DataError, match="frame 23 has no cell"):
        rdf(broken, r_max=6.0, n_bins=60, workers=2, chunk_frames=7)
    with pytest.raises(ConfigError, match="workers"):
        rdf(frames, r_max=6.0, workers=0)
