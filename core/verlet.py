"""A Verlet neighbor list with a skin, for MD: pairs found within ``cutoff + skin`` and reused
while no atom has moved more than ``skin / 2`` since they were found.

The rule is that of ``ase.neighborlist.PrimitiveNeighborList(skin=...)`` and of LAMMPS'
``neighbor skin``: two atoms now closer than ``cutoff`` were closer than ``cutoff + skin`` at the
build if neither moved more than ``skin / 2``, with the same cell shift as long as the cell is
unchanged. A change of the cell, the atomic numbers or the periodicity forces a rebuild. Every
call keeps the stored pairs that are within ``cutoff`` at the current positions (cell shifts from
the build, vectors from the current positions), in the order of a list built afresh
(:func:`pesmith.structures.neighbor_pairs`), so energies, forces and stress equal those of a fresh
list.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .errors import ConfigError
from .structures import Batch, build_batch, neighbor_pairs, single_batch


class VerletList:
    """Neighbor pairs of one structure within ``cutoff`` (Å), searched within ``cutoff + skin``
    (Å) and searched again only when an atom moved more than ``skin / 2`` or the cell, numbers or
    pbc changed. ``skin = 0`` searches on every call.

    Parameters
    ----------
    cutoff
        Å, the cutoff of the pairs returned.
    skin
        Å, ``>= 0``: the margin of the stored list.

    Raises
    ------
    ConfigError
        ``skin`` negative or not finite.
    """

    def __init__(self, cutoff: float, skin: float):
        if not np.isfinite(skin) or skin < 0:
            raise ConfigError(f"skin: {skin} Å is not a valid neighbor-list skin; give a value >= 0 Å (0: a new list every call, 1.0 for MD)")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0  # neighbor searches done
        self._reference: Atoms | None = None  # numbers, positions (Å), cell and pbc at the last search
        self._pairs: tuple[np.ndarray, ...] | None = None  # centers, neighbors, shifts, offsets (Å) within cutoff + skin

    def batch(self, atoms: Atoms) -> Batch:
        """The :class:`~pesmith.structures.Batch` of ``atoms`` with its pairs within :attr:`cutoff`."""
        if self.skin == 0:
            self.builds += 1
            return build_batch([atoms], self.cutoff)
        if self.needs_rebuild(atoms):
            centers, neighbors, shifts = neighbor_pairs(atoms, self.cutoff + self.skin)
            self._pairs = centers, neighbors, shifts.astype(np.float64), shifts @ atoms.cell.array  # offsets (n_pairs, 3) Å
            self._reference = atoms.copy()
            self._reference.calc = None
            self.builds += 1
        centers, neighbors, shifts, offsets = self._pairs
        vectors = atoms.positions[neighbors] - atoms.positions[centers] + offsets  # (n_pairs, 3) Å
        keep = np.einsum("ea,ea->e", vectors, vectors) < self.cutoff**2  # (n_pairs,)
        return single_batch(atoms, centers[keep], neighbors[keep], shifts[keep], self.cutoff)

    def needs_rebuild(self, atoms: Atoms) -> bool:
        """Whether the stored pairs may miss a pair of ``atoms`` within :attr:`cutoff`: no list
        yet, other numbers, pbc or cell, or an atom more than ``skin / 2`` (Å) from where it was."""
        reference = self._reference
        if reference is None or len(reference) != len(atoms):
            return True
        if not (np.array_equal(reference.numbers, atoms.numbers) and np.array_equal(reference.pbc, atoms.pbc)):
            return True
        if not np.array_equal(reference.cell.array, atoms.cell.array):
            return True
        moved = atoms.positions - reference.positions  # (n_atoms, 3) Å
        return bool(np.einsum("ia,ia->i", moved, moved).max(initial=0.0) > 0.25 * self.skin**2)
