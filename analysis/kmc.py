"""Rejection-free kinetic Monte Carlo (BKL, residence-time algorithm) of hops on a site network.

Carriers (e.g. Li) sit on sites, at most one per site, and hop along the directed edges of a
site network with rates k = nu exp(-E_a / (k_B T)) (nu = 1e13 1/s by default); a hop into an
occupied site is blocked. Each step draws the hop with probability k_h / K among the K = sum of
the allowed rates, and advances the clock by -ln(u) / K (Bortz, Kalos and Lebowitz, J. Comput.
Phys. 17, 10 (1975), doi:10.1016/0021-9991(75)90060-1). A lattice is the special case of a
periodic network with one barrier; an amorphous structure gives any sites (e.g. clustered Li
positions from MD) with a barrier per hop (from NEB or a table), including asymmetric ones.

Units: Å, eV, K; rates in 1/s and times in s; D in Å^2/s (1 Å^2/s = 1e-16 cm^2/s). Memory: the
network (about 60 bytes per hop) and the recorded unwrapped positions, 24 bytes x n_carriers x
n_records (n_records = duration_s / record_every_s + 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.neighborlist import neighbor_list

from pesmith.errors import ConfigError, DataError

from .diffusion import diffusion_coefficients

NU_DEFAULT = 1e13  # 1/s, attempt frequency
A2_PER_S_TO_CM2_PER_S = 1e-16  # D: 1 Å^2/s = 1e-16 cm^2/s


@dataclass(frozen=True)
class SiteNetwork:
    """Directed hops between sites.

    Attributes
    ----------
    positions : (n_sites, 3) site positions, Å.
    source, target : (n_hops,) site indices of each hop.
    vector : (n_hops, 3) displacement of each hop, Å (the periodic image included).
    barrier_eV : (n_hops,) activation energy of each hop, eV.
    """

    positions: np.ndarray
    source: np.ndarray
    target: np.ndarray
    vector: np.ndarray
    barrier_eV: np.ndarray

    @classmethod
    def from_pairs(
        cls,
        positions: np.ndarray,
        pairs: np.ndarray,
        barrier_eV: np.ndarray | float,
        reverse_barrier_eV: np.ndarray | float | None = None,
        cell: np.ndarray | None = None,
        shifts: np.ndarray | None = None,
    ) -> "SiteNetwork":
        """A network from undirected pairs (n_pairs, 2), each hop allowed both ways.

        ``barrier_eV`` is that of i -> j, ``reverse_barrier_eV`` that of j -> i (default: the
        same); ``shifts`` (n_pairs, 3) are the integer cell images of j (needs ``cell``, 3x3 Å).
        """
        positions = np.asarray(positions, float)
        pairs = np.asarray(pairs, int).reshape(-1, 2)
        vector = positions[pairs[:, 1]] - positions[pairs[:, 0]]  # (n_pairs, 3)
        if shifts is not None:
            if cell is None:
                raise ConfigError("shifts need the cell (3x3, Å) they count images of")
            vector = vector + np.asarray(shifts, float) @ np.asarray(cell, float)
        forward = np.broadcast_to(np.asarray(barrier_eV, float), len(pairs))
        backward = forward if reverse_barrier_eV is None else np.broadcast_to(np.asarray(reverse_barrier_eV, float), len(pairs))
        return _checked(cls(positions, np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]]),
                            np.concatenate([vector, -vector]), np.concatenate([forward, backward])))


@dataclass(frozen=True)
class KMCResult:
    """``time_s`` (n_records,) on a regular grid; ``positions`` (n_records, n_carriers, 3),
    unwrapped, Å; ``n_hops`` performed; ``blocked`` True if the run stopped because no hop was
    possible."""

    time_s: np.ndarray
    positions: np.ndarray
    n_hops: int
    blocked: bool


def network_within(sites: Atoms, r_cut: float, barrier_eV: float | Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> SiteNetwork:
    """Hops between all sites closer than ``r_cut`` (Å), every periodic image (small cells too).

    Parameters
    ----------
    sites : the sites as an ``ase.Atoms`` (positions, cell, pbc; the species is ignored).
    r_cut : largest hop length, Å.
    barrier_eV : one barrier for every hop, or a function (source, target, length in Å) -> barriers.
    """
    i, j, shift, d = neighbor_list("ijSd", sites, r_cut)
    vector = sites.positions[j] + shift @ sites.cell[:] - sites.positions[i]  # (n_hops, 3)
    barriers = barrier_eV(i, j, d) if callable(barrier_eV) else np.full(i.size, float(barrier_eV))
    return _checked(SiteNetwork(sites.positions.copy(), i, j, vector, np.asarray(barriers, float)))


def network_from_table(sites: Atoms, r_cut: float, table: Mapping[tuple[int, int], float], default_eV: float | None = None) -> SiteNetwork:
    """Hops between sites closer than ``r_cut`` (Å) with a barrier from ``table``, as NEB gives them.

    ``table[(source, target)]`` is the barrier (eV) of that directed hop (give both directions
    of a pair, they may differ); a hop not in the table gets ``default_eV``, or is left out when
    that is None. A table entry for a pair farther apart than ``r_cut`` is an error.
    """
    i, j, shift, d = neighbor_list("ijSd", sites, r_cut)
    known = {(int(a), int(b)) for a, b in zip(i, j)}
    far = sorted(set(table) - known)
    if far:
        raise DataError(f"barrier table hops {far[:5]} join sites farther apart than r_cut = {r_cut} Å (or not sites at all): raise r_cut or fix the table")
    barriers = np.array([table.get((int(a), int(b)), np.nan if default_eV is None else default_eV) for a, b in zip(i, j)], float)
    keep = np.isfinite(barriers)
    vector = sites.positions[j] + shift @ sites.cell[:] - sites.positions[i]
    return _checked(SiteNetwork(sites.positions.copy(), i[keep], j[keep], vector[keep], barriers[keep]))


def chain(n_sites: int, a: float, barrier_eV: float) -> SiteNetwork:
    """A periodic 1-D chain along x of ``n_sites`` sites ``a`` Å apart (2 hops per site)."""
    sites = Atoms(f"X{n_sites}", positions=[[k * a, 0, 0] for k in range(n_sites)], cell=[n_sites * a, 10 * a, 10 * a], pbc=[True, False, False])
    return network_within(sites, 1.01 * a, barrier_eV)


def simple_cubic(n: int, a: float, barrier_eV: float) -> SiteNetwork:
    """A periodic n x n x n simple cubic lattice of spacing ``a`` Å (6 hops per site)."""
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * a
    return network_within(Atoms(f"X{n ** 3}", positions=grid, cell=[n * a] * 3, pbc=True), 1.01 * a, barrier_eV)


def replicas(network: SiteNetwork, n_copies: int) -> SiteNetwork:
    """``n_copies`` disconnected copies of a network: independent runs in one simulation."""
    n_sites = len(network.positions)
    offsets = np.repeat(np.arange(n_copies) * n_sites, network.source.size)
    tile = lambda x: np.tile(x, (n_copies,) + (1,) * (x.ndim - 1))  # noqa: E731
    return SiteNetwork(tile(network.positions), tile(network.source) + offsets, tile(network.target) + offsets, tile(network.vector), tile(network.barrier_eV))


def rates(network: SiteNetwork, temperature_K: float, nu: float = NU_DEFAULT) -> np.ndarray:
    """(n_hops,) hop rates nu exp(-E_a / (k_B T)), 1/s."""
    if not temperature_K > 0 or not nu > 0:
        raise ConfigError(f"temperature_K and nu must be positive, got {temperature_K} K and {nu} 1/s")
    return nu * np.exp(-network.barrier_eV / (units.kB * temperature_K))


def kmc(
    network: SiteNetwork,
    occupied: np.ndarray,
    temperature_K: float,
    duration_s: float,
    record_every_s: float,
    rng: np.random.Generator,
    nu: float = NU_DEFAULT,
) -> KMCResult:
    """Run BKL kinetic Monte Carlo for ``duration_s`` seconds.

    Parameters
    ----------
    network : sites and directed hops.
    occupied : (n_carriers,) distinct starting sites of the carriers.
    temperature_K : K.
    duration_s : simulated time, s.
    record_every_s : interval of the recorded positions, s.
    rng : the only source of random numbers.
    nu : attempt frequency, 1/s.

    Returns
    -------
    KMCResult (stops early, ``blocked`` True, if no hop is allowed).

    Raises
    ------
    ConfigError : bad occupied sites, durations or temperature.
    """
    k = rates(network, temperature_K, nu)
    state = _State(network, k, _check_occupied(occupied, len(network.positions)))
    n_records = _n_records(duration_s, record_every_s)
    record_times = np.arange(n_records) * record_every_s
    recorded = np.empty((n_records, state.carriers, 3))  # (n_records, n_carriers, 3) Å
    t, next_record, n_hops = 0.0, 0, 0
    draws = iter(())
    while next_record < n_records:
        cumulative = np.cumsum(state.carrier_rate)  # (n_carriers,) 1/s
        total = float(cumulative[-1])
        if total <= 0:
            recorded[next_record:] = state.position
            return KMCResult(record_times, recorded, n_hops, True)
        u = next(draws, None)
        if u is None:
            draws = iter(rng.random((4096, 3)).tolist())
            u = next(draws)
        t_next = t - math.log(1.0 - u[0]) / total
        while next_record < n_records and record_times[next_record] < t_next:
            recorded[next_record] = state.position
            next_record += 1
        state.hop(cumulative, u[1] * total, u[2])
        t, n_hops = t_next, n_hops + 1
    return KMCResult(record_times, recorded, n_hops, False)


def diffusion_at(
    network: SiteNetwork, occupied: np.ndarray, temperature_K: float, hops_per_carrier: float, rng: np.random.Generator, nu: float = NU_DEFAULT
) -> tuple[float, float, KMCResult]:
    """Tracer D (Å^2/s, mean of the 3 directions) and its standard error from one kMC run of about
    ``hops_per_carrier`` attempted hops per carrier (the duration is that many over the mean total
    rate out of the occupied sites; blocked hops make the real count lower), recorded 1,000 times."""
    if not hops_per_carrier >= 50:
        raise ConfigError(f"hops_per_carrier must be at least 50 for a diffusion coefficient, got {hops_per_carrier}")
    k = rates(network, temperature_K, nu)
    out = np.bincount(network.source, weights=k, minlength=len(network.positions))  # (n_sites,) 1/s
    occupied = _check_occupied(occupied, len(network.positions))
    duration = hops_per_carrier / float(np.mean(out[occupied]))
    result = kmc(network, occupied, temperature_K, duration, duration / 1000, rng, nu)
    D, D_err = tracer_diffusion(result)
    return float(D.mean()), float(np.sqrt(np.sum(D_err**2)) / 3), result


def tracer_diffusion(result: KMCResult, n_blocks: int = 5, fit_s: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tracer D per Cartesian direction from the recorded positions, Å^2/s, with block errors.

    Uses :func:`pesmith.analysis.diffusion.diffusion_coefficients` on each component (D =
    slope / 2 of that component's MSD over ``fit_s``, default [0.1, 0.5] x one block).

    Returns
    -------
    D : (3,) Å^2/s; D_err : (3,) Å^2/s, standard error over ``n_blocks`` blocks.
    """
    step = float(result.time_s[1] - result.time_s[0])
    D, D_err = np.zeros(3), np.zeros(3)
    numbers = np.ones(result.positions.shape[1], int)
    for axis in range(3):
        component = np.zeros_like(result.positions)
        component[..., axis] = result.positions[..., axis]
        # time unit: the recording interval in s, so D comes out in Å^2/s
        fit = diffusion_coefficients(component, step, numbers=numbers, n_blocks=n_blocks, dim=1, fit_fs=fit_s)["H"]
        D[axis], D_err[axis] = fit.D, fit.D_err
    return D, D_err


class _State:
    """Occupations, each carrier's allowed total rate, and the hop update of BKL.

    The per-hop work is on Python lists (a site has a handful of hops, where numpy's call
    overhead dominates); only the choice of the carrier uses a numpy cumulative sum.
    """

    def __init__(self, network: SiteNetwork, k: np.ndarray, occupied: np.ndarray):
        n_sites = len(network.positions)
        self.out: list[list[tuple[int, float, int]]] = [[] for _ in range(n_sites)]  # site -> [(target, rate, hop)]
        for h, (s, t, r) in enumerate(zip(network.source.tolist(), network.target.tolist(), k.tolist())):
            self.out[s].append((t, r, h))
        into = _incoming(network.source, network.target, n_sites)  # site -> sites with a hop into it
        # after a hop source -> target, the allowed rates change only for carriers on these sites
        self.affected = {(s, t): tuple({t, *into[s], *into[t]}) for s, t in zip(network.source.tolist(), network.target.tolist())}
        self.vector = network.vector
        self.carriers = occupied.size
        self.carrier_at = [-1] * n_sites
        for c, s in enumerate(occupied.tolist()):
            self.carrier_at[s] = c
        self.site = occupied.tolist()
        self.position = network.positions[occupied].copy()  # (n_carriers, 3) unwrapped Å
        self.carrier_rate = np.array([self._total(s) for s in self.site])  # (n_carriers,) 1/s

    def _total(self, site: int) -> float:
        """Sum of the allowed (target empty) rates out of ``site``, 1/s."""
        at = self.carrier_at
        return sum(r for t, r, _ in self.out[site] if at[t] < 0)

    def hop(self, cumulative: np.ndarray, pick_carrier: float, pick_hop: float) -> None:
        """Move the carrier picked by ``pick_carrier`` in [0, total rate) (``cumulative``: the
        running sum of the carriers' rates) along the hop picked by ``pick_hop`` in [0, 1)."""
        carrier = min(int(np.searchsorted(cumulative, pick_carrier, side="right")), self.carriers - 1)
        source = self.site[carrier]
        at = self.carrier_at
        allowed = [(t, r, h) for t, r, h in self.out[source] if at[t] < 0]
        left = pick_hop * sum(r for _, r, _ in allowed)
        for target, r, h in allowed:
            left -= r
            if left < 0:
                break
        at[source], at[target] = -1, carrier
        self.site[carrier] = target
        self.position[carrier] += self.vector[h]
        for site in self.affected[source, target]:
            other = at[site]
            if other >= 0:
                self.carrier_rate[other] = self._total(site)


def _incoming(source: np.ndarray, target: np.ndarray, n_sites: int) -> list[list[int]]:
    into: list[set[int]] = [set() for _ in range(n_sites)]
    for s, t in zip(source.tolist(), target.tolist()):
        into[t].add(s)
    return [sorted(x) for x in into]


def _checked(network: SiteNetwork) -> SiteNetwork:
    n_sites = len(network.positions)
    if network.source.size == 0:
        raise DataError("the site network has no hops: check the pairs or r_cut")
    if network.source.min() < 0 or max(network.source.max(), network.target.max()) >= n_sites:
        raise DataError(f"hop site indices must lie in 0..{n_sites - 1}")
    if not np.all(np.isfinite(network.barrier_eV)) or np.any(network.barrier_eV < 0):
        raise DataError(f"barriers must be finite and >= 0 eV, got min {network.barrier_eV.min():g} eV")
    return network


def _check_occupied(occupied: np.ndarray, n_sites: int) -> np.ndarray:
    occupied = np.asarray(occupied, int).ravel()
    if occupied.size == 0 or np.unique(occupied).size != occupied.size or occupied.min() < 0 or occupied.max() >= n_sites:
        raise ConfigError(f"occupied must list 1 or more distinct sites in 0..{n_sites - 1}, got {occupied.tolist()[:10]}")
    return occupied


def _n_records(duration_s: float, record_every_s: float) -> int:
    if not (duration_s > 0 and record_every_s > 0 and duration_s >= 4 * record_every_s):
        raise ConfigError(f"need duration_s >= 4 x record_every_s > 0, got {duration_s} s and {record_every_s} s")
    return int(duration_s / record_every_s) + 1
