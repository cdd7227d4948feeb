"""Partial radial distribution functions g_ab(r) and coordination numbers of a trajectory.

g_ab(r) follows ASE (``ase.geometry.rdf``, >= 3.27) and LAMMPS ``compute rdf``: for each frame

    g_ab(r) = n_ab(r) / (N_a * (N_b / V) * 4/3 pi ((r + dr)^3 - r^3)),

where n_ab(r) counts ordered pairs (i of species a, j of species b, i != j, every periodic image)
whose distance lies in the bin (r, r + dr]; the frames' g are averaged. So g_ab = g_ba, and the
total g(r) = sum_ab c_a c_b g_ab(r). Distances come from a neighbour list over all periodic images
(``ase.neighborlist.neighbor_list``, or vesin), so cells thinner than 2 r_max are handled: an atom
then meets several images of one neighbour, as it would in the infinite crystal.

Consecutive frames of an MD trajectory share most of their pairs, so the list is built with a
margin (``skin``, Å) and reused, as LAMMPS and every MD code do with Verlet lists: each frame's
positions are unwrapped against the previous frame (minimum image of the step, so an atom that
crossed the cell boundary keeps its pairs), the listed pairs' distances are recomputed, and the
list is rebuilt once an atom has moved more than skin / 2 since the last build (no pair within
r_max can then be missing) or the cell or the atom count changed. ``skin=0`` builds the list at
every frame. The result is the same either way, to rounding.

The coordination number CN_ab = mean number of b atoms within r_min of an a atom, r_min the first
minimum of g_ab after its first peak (or a radius given by the caller).

Units: Å for distances, Å^3 for volumes; g is dimensionless. Memory: frames are read one at a
time (pass a generator such as ``ase.io.iread`` for long trajectories); the extra memory is the
pair list, about 60 bytes x N x (4/3 pi (r_max + skin)^3 rho) — 10 MB for 1,000 atoms at
r_max = 6 Å, skin 2 Å and 0.06 atoms/Å^3 — plus (n_species^2 + 1) x n_bins floats of accumulators.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from pesmith.errors import ConfigError, DataError

Pair = tuple[str, str]


@dataclass(frozen=True)
class RDF:
    """Frame-averaged radial distribution functions.

    Attributes
    ----------
    r : (n_bins,) bin centres, Å.
    edges : (n_bins + 1,) bin edges, Å; bin k holds distances in (edges[k], edges[k + 1]].
    total : (n_bins,) g(r) over all pairs.
    partial : g_ab(r) for every ordered pair of species symbols (a, b), each (n_bins,).
    cumulative : mean number of b atoms within edges[k + 1] of an a atom, each (n_bins,).
    n_frames : frames averaged.
    """

    r: np.ndarray
    edges: np.ndarray
    total: np.ndarray
    partial: dict[Pair, np.ndarray]
    cumulative: dict[Pair, np.ndarray]
    n_frames: int


def rdf(
    trajectory: Iterable[Atoms],
    r_max: float,
    n_bins: int = 200,
    neighbors: Literal["ase", "vesin"] = "ase",
    skin: float = 2.0,
    workers: int = 1,
    chunk_frames: int = 500,
) -> RDF:
    """Partial and total RDFs averaged over the frames of a trajectory.

    Parameters
    ----------
    trajectory : frames (``ase.Atoms`` with a cell of non-zero volume); any iterable, read once.
    r_max : largest distance, Å; may exceed half the cell.
    n_bins : number of bins of width r_max / n_bins.
    neighbors : neighbour list: ``"ase"`` (``ase.neighborlist.neighbor_list``, numpy only) or
        ``"vesin"`` (about 20x faster; vesin imports torch when it is installed).
    skin : margin of the reused pair list, Å (see the module docstring; 2 Å as LAMMPS' default
        for metal units); 0 rebuilds every frame.
    workers : processes; 1 streams the frames through one pair list; above 1, blocks of
        ``chunk_frames`` frames go to a process pool (spawned, one thread each; at most 2 blocks
        per worker in flight, so memory stays at about 2 x workers x chunk_frames frames) and
        their sums are added in frame order.
    chunk_frames : frames per block with ``workers`` > 1 (each block builds its own pair list).

    Returns
    -------
    RDF

    Raises
    ------
    DataError : a frame without a cell, a species that was not in the first frame, no frames.
    ConfigError : r_max <= 0, n_bins < 1, skin < 0, workers or chunk_frames < 1, or an unknown
        ``neighbors``.
    """
    _check_settings(r_max, n_bins, neighbors, skin)
    if workers < 1 or chunk_frames < 1:
        raise ConfigError(f"workers and chunk_frames must be at least 1, got {workers} and {chunk_frames}")
    frames = iter(trajectory)
    first = next(frames, None)
    if first is None:
        raise DataError("the trajectory has no frames: RDF needs at least one frame with a cell")
    species = sorted(set(first.numbers.tolist()))
    settings = (r_max, n_bins, neighbors, skin, species)
    trajectory = itertools.chain([first], frames)
    if workers == 1:  # one stream, one pair list: a frame at a time in memory
        sums, n_frames = _frame_sums(trajectory, 0, *settings)
    else:
        sums, n_frames = _added(_in_pool(_blocks(trajectory, chunk_frames), settings, workers))
    edges = np.linspace(0.0, r_max, n_bins + 1)
    symbols = [chemical_symbols[z] for z in species]
    partial = {(a, b): sums["g"][p, q] / n_frames for p, a in enumerate(symbols) for q, b in enumerate(symbols)}
    cumulative = {(a, b): np.cumsum(sums["n"][p, q]) / n_frames for p, a in enumerate(symbols) for q, b in enumerate(symbols)}
    return RDF(0.5 * (edges[:-1] + edges[1:]), edges, sums["total"] / n_frames, partial, cumulative, n_frames)


def _frame_sums(frames: Iterable[Atoms], start: int, r_max: float, n_bins: int, neighbors: str, skin: float, species: list[int]) -> tuple[dict[str, np.ndarray], int]:
    """Summed g_ab, neighbour counts and total g of consecutive ``frames`` (the first is frame
    ``start`` of the trajectory, for messages; read once), and how many frames."""
    edges = np.linspace(0.0, r_max, n_bins + 1)
    pair_list = _VerletPairs(_pair_function(neighbors, r_max + skin), skin)
    n = len(species)
    sums = {"g": np.zeros((n, n, n_bins)), "n": np.zeros((n, n, n_bins)), "total": np.zeros(n_bins)}
    offset = -1
    for offset, atoms in enumerate(frames):
        index = start + offset
        volume = _volume(atoms, index)
        kinds = _species_index(atoms.numbers, species, index)
        code, d, half = pair_list.pairs(atoms, kinds, n)
        counts = _pair_histogram(code, d, n, r_max / n_bins, n_bins)  # (s, s, n_bins)
        if half:  # each unordered pair once: add the reversed pairs
            counts = counts + counts.transpose(1, 0, 2)
        _accumulate(sums, counts, np.bincount(kinds, minlength=n), volume, edges)
    return sums, offset + 1


def _blocks(frames: Iterable[Atoms], size: int) -> Iterator[tuple[int, list[Atoms]]]:
    """``(index of the block's first frame, frames)`` in blocks of ``size``."""
    iterator, start = iter(frames), 0
    while block := list(itertools.islice(iterator, size)):
        yield start, block
        start += len(block)


def _added(parts: Iterable[tuple[dict[str, np.ndarray], int]]) -> tuple[dict[str, np.ndarray], int]:
    total: dict[str, np.ndarray] = {}
    n_frames = 0
    for sums, n in parts:
        total = {key: total[key] + value for key, value in sums.items()} if total else sums
        n_frames += n
    return total, n_frames


def _in_pool(blocks: Iterator[tuple[int, list[Atoms]]], settings: tuple, workers: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """:func:`_frame_sums` of each block in ``workers`` spawned processes, in block order, with at
    most 2 blocks per worker waiting."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        pending: collections.deque = collections.deque()
        for start, block in blocks:
            pending.append(pool.submit(_frame_sums, block, start, *settings))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _one_thread() -> None:
    """Worker start: one thread per process (numpy's BLAS and vesin's OpenMP)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def coordination_numbers(result: RDF, r_cut: float | None = None, smooth: int = 1) -> dict[Pair, tuple[float, float]]:
    """Coordination numbers CN_ab for every ordered pair of species.

    Parameters
    ----------
    result : output of :func:`rdf`.
    r_cut : integrate to this radius, Å, for every pair; None: to the first minimum of each g_ab
        after its first peak (see :func:`first_minimum`).
    smooth : running-mean window (bins) applied before the peak and minimum are located.

    Returns
    -------
    {(a, b): (CN_ab, r_min in Å)}: the mean number of b atoms within r_min of an a atom. A pair
    whose g_ab has no peak and minimum inside r_max is left out.
    """
    out = {}
    for pair, g in result.partial.items():
        if r_cut is not None:
            k = int(np.searchsorted(result.edges[1:], r_cut, side="right")) - 1
            if k >= 0:
                out[pair] = (float(result.cumulative[pair][k]), float(result.edges[k + 1]))
            continue
        k = first_minimum(g, smooth)
        if k is not None:
            out[pair] = (float(result.cumulative[pair][k]), float(result.r[k]))
    return out


def first_minimum(g: np.ndarray, smooth: int = 1) -> int | None:
    """Bin index of the first minimum of g after its first peak, or None if there is none.

    The first peak is the first local maximum reached by climbing from the first bin where g
    exceeds 1; the minimum is where g stops decreasing after it (for a crystal at 0 K, the first
    empty bin after the first shell). ``smooth`` > 1 applies a running mean of that many bins
    first, against noise in short trajectories.
    """
    if smooth > 1:
        g = np.convolve(g, np.ones(smooth) / smooth, mode="same")
    above = np.flatnonzero(g > 1.0)
    if above.size == 0:
        return None
    k = int(above[0])
    while k + 1 < g.size and g[k + 1] > g[k]:
        k += 1
    while k + 1 < g.size and g[k + 1] < g[k]:
        k += 1
    return k if k + 1 < g.size else None


def _check_settings(r_max: float, n_bins: int, neighbors: str, skin: float) -> None:
    if not r_max > 0:
        raise ConfigError(f"r_max must be a positive distance in Å, got {r_max}")
    if not skin >= 0:
        raise ConfigError(f"skin must be a distance >= 0 in Å (0: a new pair list every frame), got {skin}")
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    if neighbors not in ("ase", "vesin"):
        raise ConfigError(f"neighbors must be 'ase' or 'vesin', got {neighbors!r}")


def _volume(atoms: Atoms, index: int) -> float:
    volume = abs(float(np.linalg.det(atoms.cell[:]))) if atoms.cell.rank == 3 else 0.0
    if volume < 1e-10:
        raise DataError(
            f"frame {index} has no cell (volume {volume:.3g} Å^3): an RDF needs the cell of every frame; "
            "write the trajectory with its cell (extxyz Lattice=, ASE .traj) or set atoms.cell"
        )
    return volume


def _species_index(numbers: np.ndarray, species: list[int], index: int) -> np.ndarray:
    """Index of each atom's species in ``species``: (n_atoms,)."""
    unknown = sorted(set(numbers.tolist()) - set(species))
    if unknown:
        raise DataError(
            f"frame {index} has species {[chemical_symbols[z] for z in unknown]} absent from the first frame "
            f"({[chemical_symbols[z] for z in species]}): analyse trajectories of one composition"
        )
    return np.searchsorted(species, numbers)


def _pair_function(neighbors: str, cutoff: float):
    """A function atoms -> (i, j, S, half) of the pairs closer than ``cutoff`` (Å) over every
    image, S the integer cell shift of j (vector r_j - r_i + S @ cell): all ordered pairs (half
    False, ASE), or each unordered pair once (half True, vesin: 1.5x faster)."""
    cutoff = cutoff * (1.0 + 1e-9) + 1e-9  # keep d == r_max, as ASE's (r, r + dr] bins do
    if neighbors == "vesin":
        from vesin import NeighborList  # lazy: vesin imports torch when it is installed

        calculator = NeighborList(cutoff=cutoff, full_list=False)
        return lambda atoms: (*calculator.compute(atoms.positions, atoms.cell[:], atoms.pbc, quantities="ijS"), True)
    from ase.neighborlist import neighbor_list

    return lambda atoms: (*neighbor_list("ijS", atoms, cutoff), False)


class _VerletPairs:
    """Pair distances of successive frames from one pair list while it stays valid (see the
    module docstring)."""

    def __init__(self, build, skin: float):
        self.build, self.skin = build, skin
        self.cell: np.ndarray | None = None

    def pairs(self, atoms: Atoms, kinds: np.ndarray, n_species: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(code, d, half)`` of the frame's pairs: code = kinds[i] * n_species + kinds[j]
        (``kinds``: each atom's species index), d in Å, half as in the list."""
        cell = atoms.cell[:]
        if self.cell is not None and np.array_equal(cell, self.cell) and np.array_equal(atoms.numbers, self.numbers):
            step = atoms.positions - self.last
            if atoms.pbc.any():  # an atom that crossed the boundary moved by a cell vector: take the minimum image
                fractional = np.linalg.solve(cell.T, step.T).T
                fractional[:, atoms.pbc] -= np.round(fractional[:, atoms.pbc])
                step = fractional @ cell
            self.unwrapped += step
            self.last = atoms.positions.copy()
            moved = np.max(np.einsum("ij,ij->i", self.unwrapped - self.at_build, self.unwrapped - self.at_build))
            if 4.0 * moved <= self.skin**2:
                return self.code, self._distances(), self.half
        self.i, self.j, shifts, self.half = self.build(atoms)
        self.cell, self.numbers, self.last = cell.copy(), atoms.numbers.copy(), atoms.positions.copy()
        self.unwrapped, self.at_build = self.last.copy(), self.last.copy()
        self.offsets = shifts @ cell  # (n_pairs, 3) Å
        self.code = kinds[self.i] * n_species + kinds[self.j]
        return self.code, self._distances(), self.half

    def _distances(self) -> np.ndarray:
        vectors = self.unwrapped[self.j] - self.unwrapped[self.i]
        vectors += self.offsets
        return np.sqrt(np.einsum("ij,ij->i", vectors, vectors))


def _pair_histogram(code: np.ndarray, d: np.ndarray, n_species: int, dr: float, n_bins: int) -> np.ndarray:
    """Pair counts per (species of i, species of j, bin): (n_species, n_species, n_bins); ``code``
    is each pair's species pair, species index of i times ``n_species`` plus that of j.

    Bin k (0-based) holds (k dr, (k + 1) dr], as ``ceil(d / dr)`` in ASE; farther pairs are dropped.
    """
    near = d < (n_bins + 1) * dr  # most of a reused list lies beyond r_max: drop it first
    bins = np.ceil(d[near] / dr).astype(np.int64) - 1  # (n_near,)
    keep = (bins >= 0) & (bins < n_bins)
    flat = code[near][keep] * n_bins + bins[keep]
    return np.bincount(flat, minlength=n_species * n_species * n_bins).reshape(n_species, n_species, n_bins).astype(float)


def _accumulate(sums: dict[str, np.ndarray], counts: np.ndarray, n_per_species: np.ndarray, volume: float, edges: np.ndarray) -> None:
    """Add one frame's g_ab, total g and neighbours per centre to the running sums."""
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # (n_bins,) Å^3
    n = n_per_species.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ideal = np.outer(n, n)[:, :, None] / volume * shell  # (s, s, n_bins): pairs of an ideal gas
        sums["g"] += np.where(ideal > 0, counts / ideal, 0.0)
        sums["n"] += np.where(n[:, None, None] > 0, counts / n[:, None, None], 0.0)
    sums["total"] += counts.sum(axis=(0, 1)) / (n.sum() ** 2 / volume * shell)
