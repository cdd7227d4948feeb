"""Neighbor lists and batching of ASE structures into one flat graph.

Neighbor pairs and their integer cell shifts are found without gradients (vesin: the fastest
of vesin, matscipy and ase.neighborlist that was correct on small triclinic cells, slabs and
molecules; see ``scripts/bench_neighbors.py``). Distance vectors are then rebuilt in torch from
positions, cells and shifts, so that autograd through them gives forces and stress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import vesin
from ase import Atoms

from .errors import DataError

DTYPE = torch.float64
MIN_DISTANCE = 0.5  # Å: no two atoms closer than this (shorter than any bond, H2's is 0.74 Å)
# vesin's cell grid is slow for tiny cutoffs (1,000 atoms: 37 ms at 0.5 Å, 1.8 ms at 2 Å), so
# close pairs are searched within this cutoff (Å) and then filtered.
CLOSE_PAIR_SEARCH = 2.0


@dataclass
class Batch:
    """Several structures as one graph of directed neighbor pairs ("edges").

    Edge ``e`` points from its center atom ``edge_index[0, e]`` to its neighbor
    ``edge_index[1, e]``; its vector is ``positions[j] - positions[i] + shift @ cell`` (Å).
    Edges are sorted by center atom.
    """

    numbers: torch.Tensor  # (n_atoms,) atomic numbers, int64
    positions: torch.Tensor  # (n_atoms, 3) Å, float64
    cells: torch.Tensor  # (n_structures, 3, 3) Å, rows are cell vectors
    pbc: torch.Tensor  # (n_structures, 3) bool
    structure_index: torch.Tensor  # (n_atoms,) which structure each atom belongs to
    edge_index: torch.Tensor  # (2, n_edges) center, neighbor (global atom indices)
    edge_shifts: torch.Tensor  # (n_edges, 3) integer cell shifts, float64
    cutoff: float  # Å

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def n_structures(self) -> int:
        return int(self.cells.shape[0])

    @property
    def atoms_per_structure(self) -> torch.Tensor:
        """(n_structures,) number of atoms in each structure."""
        return torch.bincount(self.structure_index, minlength=self.n_structures)

    def edge_vectors(self) -> torch.Tensor:
        """(n_edges, 3) vectors from each center to its neighbor image, Å, differentiable."""
        centers, neighbors = self.edge_index
        cell_of_edge = self.cells[self.structure_index[centers]]  # (n_edges, 3, 3)
        offsets = torch.einsum("ea,eab->eb", self.edge_shifts, cell_of_edge)  # (n_edges, 3)
        return self.positions[neighbors] - self.positions[centers] + offsets

    def volumes(self) -> torch.Tensor:
        """(n_structures,) cell volumes, Å^3 (zero for a structure without a cell)."""
        return torch.linalg.det(self.cells).abs()


def batch_structures(batch: Batch) -> list[Atoms]:
    """The structures of ``batch`` as :class:`ase.Atoms` (numbers, positions Å, cell, pbc), in order."""
    structures = []
    for k in range(batch.n_structures):
        mask = batch.structure_index == k
        structures.append(
            Atoms(
                numbers=batch.numbers[mask].numpy(),
                positions=batch.positions[mask].detach().numpy(),
                cell=batch.cells[k].detach().numpy(),
                pbc=batch.pbc[k].numpy(),
            )
        )
    return structures


def has_full_cell(atoms: Atoms) -> bool:
    """True when ``atoms`` is periodic in all three directions with a non-degenerate cell."""
    return bool(atoms.pbc.all()) and atoms.cell.rank == 3


def check_structure(atoms: Atoms, where: str, min_distance: float = MIN_DISTANCE) -> None:
    """Raise :class:`DataError` if ``atoms`` has a non-finite position or cell, or two atoms (or
    an atom and a periodic image) closer than ``min_distance`` (Å); ``where`` names the structure."""
    check_finite_geometry(atoms, where)
    centers, neighbors, shifts = neighbor_pairs(atoms, max(min_distance, CLOSE_PAIR_SEARCH))
    vectors = atoms.positions[neighbors] - atoms.positions[centers] + shifts @ atoms.cell.array  # (n_edges, 3)
    check_close_pairs(atoms, where, centers, neighbors, np.linalg.norm(vectors, axis=1), min_distance)


def check_finite_geometry(atoms: Atoms, where: str) -> None:
    """Raise :class:`DataError` if a position or the cell of ``atoms`` is NaN or infinite."""
    finite = np.isfinite(atoms.positions).all(axis=1)  # (n_atoms,)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise DataError(
            f"{where}: atom {index} ({atoms.symbols[index]}) has position {atoms.positions[index].tolist()} (Å),"
            f" and {int((~finite).sum())} atom(s) in all are not finite; fix or remove this structure"
        )
    if not np.isfinite(atoms.cell.array).all():
        raise DataError(f"{where}: the cell {atoms.cell.array.tolist()} (Å) is not finite; fix or remove this structure")


def check_close_pairs(
    atoms: Atoms,
    where: str,
    centers: np.ndarray,
    neighbors: np.ndarray,
    distances: np.ndarray,
    min_distance: float = MIN_DISTANCE,
) -> None:
    """Raise :class:`DataError` naming the closest pair if any of the neighbor pairs
    ``(centers, neighbors)`` of ``atoms``, at ``distances`` (Å), is closer than ``min_distance`` (Å)."""
    if distances.size == 0 or distances.min() >= min_distance:
        return
    k = int(np.argmin(distances))
    i, j = int(centers[k]), int(neighbors[k])
    pair = f"atom {i} ({atoms.symbols[i]}) and " + (
        "its own periodic image" if i == j else f"atom {j} ({atoms.symbols[j]})"
    )
    raise DataError(
        f"{where}: {pair} are {distances[k]:.3g} Å apart, closer than the minimum distance {min_distance} Å;"
        " fix or remove this structure"
    )


def neighbor_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbor list of one structure within ``cutoff`` (Å).

    Returns
    -------
    centers, neighbors : (n_edges,) int64
        Both directions of every pair; an atom's own periodic images are included.
    shifts : (n_edges, 3) int64
        Cell shifts such that ``r_ij = pos[j] - pos[i] + shift @ cell``.

    Pairs are sorted by center, neighbor and shift, so a list built at a larger cutoff and
    filtered to ``cutoff`` (:class:`pesmith.verlet.VerletList`) is this list in this order.
    """
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-12:
        raise DataError(
            f"structure {atoms.get_chemical_formula()} is periodic (pbc={pbc.tolist()}) but its cell has zero"
            " volume; give it a cell or set pbc=False"
        )
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    centers, neighbors, shifts = calculator.compute(
        points=np.asarray(atoms.positions, dtype=np.float64), box=cell, periodic=pbc, quantities="ijS"
    )
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], neighbors, centers))  # a total order, whatever vesin's
    return (
        centers[order].astype(np.int64),
        neighbors[order].astype(np.int64),
        shifts[order].astype(np.int64),
    )


def build_batch(structures: Sequence[Atoms], cutoff: float) -> Batch:
    """Batch ``structures`` into one :class:`Batch` with neighbor pairs within ``cutoff`` (Å)."""
    return batch_of_pairs(structures, [neighbor_pairs(atoms, cutoff) for atoms in structures], cutoff)


def single_batch(atoms: Atoms, centers: np.ndarray, neighbors: np.ndarray, shifts: np.ndarray, cutoff: float) -> Batch:
    """The :class:`Batch` of one structure with given neighbor pairs (``centers``, ``neighbors``
    ``(n_edges,)`` sorted by center, integer cell ``shifts`` ``(n_edges, 3)``) within ``cutoff`` (Å)."""
    return batch_of_pairs([atoms], [(centers, neighbors, shifts)], cutoff)


def batch_of_pairs(
    structures: Sequence[Atoms], pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], cutoff: float
) -> Batch:
    """One :class:`Batch` of ``structures`` with their neighbor ``pairs`` (per structure
    ``centers``, ``neighbors`` sorted by center and integer cell ``shifts``, as
    :func:`neighbor_pairs` gives them) within ``cutoff`` (Å). The arrays are copied: the batch
    outlives changes to the structures."""
    sizes = [len(atoms) for atoms in structures]
    offsets = np.cumsum([0] + sizes[:-1]).astype(np.int64)
    return Batch(
        numbers=torch.as_tensor(np.concatenate([atoms.numbers for atoms in structures]), dtype=torch.int64),
        positions=torch.as_tensor(np.concatenate([atoms.positions for atoms in structures]), dtype=DTYPE),
        cells=torch.as_tensor(np.stack([atoms.cell.array for atoms in structures]), dtype=DTYPE),
        pbc=torch.as_tensor(np.stack([atoms.pbc for atoms in structures]), dtype=torch.bool),
        structure_index=torch.as_tensor(np.repeat(np.arange(len(structures)), sizes), dtype=torch.int64),
        edge_index=torch.as_tensor(np.stack([
            np.concatenate([i + offset for (i, _, _), offset in zip(pairs, offsets)]),
            np.concatenate([j + offset for (_, j, _), offset in zip(pairs, offsets)]),
        ])),
        edge_shifts=torch.as_tensor(np.concatenate([s for _, _, s in pairs]), dtype=DTYPE),
        cutoff=float(cutoff),
    )


def edge_pairs(centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs of edges that share a center (the triplets j-i-k).

    Parameters
    ----------
    centers
        (n_edges,) center atom of each edge, sorted (non-decreasing).

    Returns
    -------
    first, second : (n_triplets,) int64
        Edge indices with ``first < second`` and ``centers[first] == centers[second]``.
    """
    n_edges = centers.shape[0]
    if n_edges == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=centers.device)
        return empty, empty
    _, counts = torch.unique_consecutive(centers, return_counts=True)  # (n_centers,)
    starts = torch.cumsum(counts, 0) - counts
    start_of_edge = torch.repeat_interleave(starts, counts)  # (n_edges,)
    count_of_edge = torch.repeat_interleave(counts, counts)
    position = torch.arange(n_edges, device=centers.device) - start_of_edge
    partners = count_of_edge - position - 1  # edges after this one with the same center
    first = torch.repeat_interleave(torch.arange(n_edges, device=centers.device), partners)
    triplet_starts = torch.cumsum(partners, 0) - partners
    rank = torch.arange(first.shape[0], device=centers.device) - triplet_starts[first]
    second = first + 1 + rank
    return first, second
