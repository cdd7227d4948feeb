"""pesmith.analysis.kmc: lattice diffusion D = a^2 k per direction, detailed balance, exclusion."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units

from pesmith.analysis.kmc import SiteNetwork, chain, kmc, network_within, rates, replicas, simple_cubic, tracer_diffusion
from pesmith.errors import ConfigError, DataError

A, BARRIER, T = 2.5, 0.3, 600.0  # Å, eV, K
K = 1e13 * np.exp(-BARRIER / (units.kB * T))  # 1/s, about 3e10


def _independent_walkers(base: SiteNetwork, n_walkers: int, duration_k: float, seed: int):
    """One carrier in each of ``n_walkers`` disconnected copies; positions every 0.1 / k.

    D is fitted at lags 0.1/k to 0.5/k, where the MSD of a hop process is already linear and
    least noisy: over 5 seeds the spread of D was 1.15 % at 20,000 hops per direction, so about
    0.5 % at the 100,000 hops per direction used here (2 % is 4 sigma)."""
    network = replicas(base, n_walkers)
    occupied = np.arange(n_walkers) * len(base.positions)
    return kmc(network, occupied, T, duration_s=duration_k / K, record_every_s=0.1 / K, rng=np.random.default_rng(seed))


def test_rates_follow_arrhenius_with_nu_1e13():
    assert rates(chain(4, A, BARRIER), T) == pytest.approx(np.full(8, K))
    assert rates(chain(4, A, BARRIER), T, nu=2e12)[0] == pytest.approx(0.2 * K)


def test_chain_gives_D_a2k_within_2_percent():
    result = _independent_walkers(chain(10, A, BARRIER), n_walkers=100, duration_k=750.0, seed=1)
    assert result.n_hops > 140_000 and not result.blocked
    D, D_err = tracer_diffusion(result, fit_s=(0.1 / K, 0.5 / K))
    assert D[0] == pytest.approx(A**2 * K, rel=0.02)
    assert D_err[0] < 0.015 * A**2 * K
    assert D[1] == D[2] == 0.0


def test_simple_cubic_gives_D_a2k_per_direction_within_2_percent():
    result = _independent_walkers(simple_cubic(3, A, BARRIER), n_walkers=100, duration_k=500.0, seed=2)
    assert result.n_hops > 290_000
    D, D_err = tracer_diffusion(result, fit_s=(0.1 / K, 0.5 / K))
    np.testing.assert_allclose(D, A**2 * K, rtol=0.02)
    assert np.all(D_err < 0.015 * A**2 * K)


def test_asymmetric_barriers_give_boltzmann_occupations():
    """Two sites, hop 0 -> 1 over 0.20 eV and back over 0.25 eV: the carrier spends
    exp(0.05 eV / k_B T) times longer on site 1 than on site 0."""
    network = SiteNetwork.from_pairs([[0, 0, 0], [2, 0, 0]], [[0, 1]], barrier_eV=0.20, reverse_barrier_eV=0.25)
    k01 = 1e13 * np.exp(-0.20 / (units.kB * T))
    result = kmc(replicas(network, 50), np.arange(50) * 2, T, duration_s=2000 / k01, record_every_s=0.5 / k01, rng=np.random.default_rng(3))
    on_site_1 = np.mean(result.positions[..., 0] > 1.0)  # not periodic: x is 0 (site 0) or 2 Å (site 1)
    ratio = on_site_1 / (1 - on_site_1)
    assert ratio == pytest.approx(np.exp(0.05 / (units.kB * T)), rel=0.03)


def test_exclusion_blocks_hops_into_occupied_sites():
    full = kmc(chain(3, A, BARRIER), [0, 1, 2], T, duration_s=10 / K, record_every_s=1 / K, rng=np.random.default_rng(0))
    assert full.blocked and full.n_hops == 0
    np.testing.assert_array_equal(full.positions[-1], full.positions[0])
    two = kmc(chain(6, A, BARRIER), [0, 3], T, duration_s=200 / K, record_every_s=0.5 / K, rng=np.random.default_rng(0))
    sites = np.round(two.positions[..., 0] / A).astype(int) % 6  # (n_records, 2)
    assert np.all(sites[:, 0] != sites[:, 1]) and two.n_hops > 200


def test_network_from_sites_in_a_cell_smaller_than_the_cutoff():
    """One site per 2.5 Å cubic cell and r_cut 3 Å: the 6 hops to its own images."""
    network = network_within(Atoms("X", cell=[A] * 3, pbc=True), 3.0, barrier_eV=lambda i, j, d: 0.1 * d)
    assert network.source.size == 6 and np.allclose(network.barrier_eV, 0.25)
    np.testing.assert_allclose(np.sort(np.abs(network.vector).sum(axis=1)), A)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="distinct sites"):
        kmc(chain(4, A, BARRIER), [1, 1], T, duration_s=1.0, record_every_s=0.1, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="duration_s"):
        kmc(chain(4, A, BARRIER), [0], T, duration_s=1.0, record_every_s=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="temperature_K"):
        rates(chain(4, A, BARRIER), -5.0)
    with pytest.raises(DataError, match="barriers"):
        SiteNetwork.from_pairs([[0, 0, 0], [1, 0, 0]], [[0, 1]], barrier_eV=-0.1)
    with pytest.raises(DataError, match="no hops"):
        network_within(Atoms("X2", positions=[[0, 0, 0], [9, 0, 0]], cell=[20] * 3), 2.0, 0.3)
