"""pesmith.analysis.sites: Li sites from MD-like trajectories, and kMC on the network they give."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from pesmith.analysis.kmc import kmc, network_within, rates, replicas, tracer_diffusion
from pesmith.analysis.sites import find_sites
from pesmith.errors import ConfigError, DataError

A = 3.0  # Å, spacing of the synthetic sites


def _hopping_trajectory(n: int, n_li: int, n_frames: int, sigma: float, hop_every: int, seed: int, skew: float = 0.0):
    """Li on a simple cubic lattice of sites (n^3 sites, spacing A) inside a host of Si at fixed
    places, vibrating by ``sigma`` Å and hopping to a free neighbouring site every ``hop_every``
    frames on average; wrapped into a cell skewed by ``skew`` (fraction of a along b)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cell = np.diag([n * A] * 3)
    cell[1, 0] = skew * n * A
    sites = (grid + 0.25) / n @ cell  # off the origin, inside the cell
    host = (grid[: n**3 // 2] + 0.75) / n @ cell
    occupied = rng.choice(len(grid), n_li, replace=False)
    frames, visits = [], np.zeros(len(grid), int)
    for _ in range(n_frames):
        for k in range(n_li):
            if rng.random() < 1.0 / hop_every:
                neighbour = grid[occupied[k]].copy()
                axis = rng.integers(3)
                neighbour[axis] = (neighbour[axis] + rng.choice([-1, 1])) % n
                target = int(np.ravel_multi_index(neighbour, (n, n, n)))
                if target not in occupied:
                    occupied[k] = target
        visits[occupied] += 1
        li = sites[occupied] + rng.normal(0.0, sigma, (n_li, 3))
        atoms = Atoms(["Li"] * n_li + ["Si"] * len(host), positions=np.vstack([li, host]), cell=cell, pbc=True)
        atoms.wrap()
        frames.append(atoms)
    return frames, sites, visits


def _matched(found: np.ndarray, true: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Distance (Å, minimum image) from each true site to the nearest found one."""
    fractional = np.linalg.solve(cell.T, (found[None, :, :] - true[:, None, :]).reshape(-1, 3).T).T
    fractional -= np.round(fractional)
    return np.linalg.norm(fractional @ cell, axis=1).reshape(len(true), len(found)).min(axis=1)


@pytest.mark.parametrize("skew", [0.0, 0.2])
def test_sites_of_a_vibrating_hopping_lattice_are_its_sites(skew):
    frames, true, visits = _hopping_trajectory(n=4, n_li=24, n_frames=600, sigma=0.15, hop_every=40, seed=1, skew=skew)
    sites = find_sites(frames, "Li", min_occupancy=0.02)
    often = visits >= 0.02 * 600  # the sites occupied often enough
    assert 60 <= often.sum() <= 64
    assert len(sites.positions) == often.sum()  # no spurious site, none missing
    error = _matched(sites.positions, true[often], frames[0].cell[:])
    assert np.all(error < 4 * 0.15 * np.sqrt(3 / visits[often]))  # a mean of n positions, sigma 0.15 Å per axis
    assert sites.assigned > 0.99  # 0.8 Å is 5 sigma
    assert sites.occupancy.sum() == pytest.approx(24 * sites.assigned, rel=1e-12)
    pairs = sites.hop_pairs(min_count=1)
    lengths = np.array([sites.atoms().get_distance(a, b, mic=True) for a, b in pairs])
    np.testing.assert_allclose(lengths, A, atol=0.1)  # only nearest-neighbour hops were made
    assert sites.transitions.sum() > 200


def test_a_place_passed_through_is_not_a_site():
    frames, true, visits = _hopping_trajectory(n=3, n_li=6, n_frames=300, sigma=0.1, hop_every=10**9, seed=2)
    for atoms in frames[100:102]:  # one Li between two sites in 2 of 300 frames: not a site
        atoms.positions[0] = atoms.positions[0] + [A / 2, 0, 0]
    sites = find_sites(frames, "Li", min_occupancy=0.05)
    assert len(sites.positions) == 6
    assert _matched(sites.positions, true[visits > 0], frames[0].cell[:]).max() < 0.05
    assert sites.transitions.sum() == 0  # it came back to its own site


def test_kmc_on_the_found_network_gives_a_squared_k():
    """Sites found from MD -> hops within 1.1 a -> BKL kMC of one carrier in each of 100 copies:
    D per direction = a^2 k on the simple cubic network (as tests/test_analysis_kmc.py)."""
    frames, _, _ = _hopping_trajectory(n=4, n_li=24, n_frames=1500, sigma=0.15, hop_every=20, seed=3)
    sites = find_sites(frames, "Li", min_occupancy=0.02)
    assert len(sites.positions) == 64
    network = network_within(sites.atoms(), 1.1 * A, barrier_eV=0.3)
    assert np.all(np.bincount(network.source) == 6)
    temperature = 600.0
    k = rates(network, temperature)[0]
    copies = replicas(network, 100)
    result = kmc(copies, np.arange(100) * 64, temperature, duration_s=250.0 / k, record_every_s=0.1 / k, rng=np.random.default_rng(0))
    D, _ = tracer_diffusion(result, fit_s=(0.1 / k, 0.5 / k))
    np.testing.assert_allclose(D, A**2 * k, rtol=0.03)  # the found sites sit within about 0.05 Å of the lattice


def test_bad_input():
    frames, _, _ = _hopping_trajectory(n=3, n_li=4, n_frames=5, sigma=0.1, hop_every=10, seed=0)
    with pytest.raises(DataError, match="no Na atom"):
        find_sites(frames, "Na")
    with pytest.raises(ConfigError, match="spacing"):
        find_sites(frames, "Li", spacing=0)
    with pytest.raises(DataError, match="no frames"):
        find_sites([], "Li")
    uneven = frames[:2] + [frames[2][1:]]
    with pytest.raises(DataError, match="frame 2 has 3 Li"):
        find_sites(uneven, "Li")
    bare = frames[0].copy()
    bare.cell = None
    bare.pbc = False
    with pytest.raises(DataError, match="no cell"):
        find_sites([bare], "Li")
