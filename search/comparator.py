"""Whether two relaxed candidates are the same structure.

Two structures are the same when they have the same composition, energies per atom within
``energy_tol`` (eV/atom), and interatomic-distance fingerprints that agree: for every pair of
species, the sorted list of all minimum-image distances (Å, each pair once). The fingerprint
does not change when atoms are permuted or shifted by lattice vectors, nor under rigid
translation or rotation. The distances are compared as in ase-ga's
``InteratomicDistanceComparator``: the mean absolute difference must be below ``distance_tol``
and the largest below ``max_distance_tol``. It assumes cells of equal shape (same step of a
delithiation path); under cell relaxation the tolerances absorb small cell changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms


@dataclass(frozen=True)
class StructureComparator:
    """Tolerances of :meth:`same` (energies in eV/atom, distances in Å)."""

    energy_tol: float = 0.002
    distance_tol: float = 0.02
    max_distance_tol: float = 0.3

    def same(self, first: Atoms, first_energy: float, second: Atoms, second_energy: float) -> bool:
        """True when the two structures (total energies in eV) are one structure."""
        if sorted(first.numbers) != sorted(second.numbers):
            return False
        if abs(first_energy / len(first) - second_energy / len(second)) > self.energy_tol:
            return False
        a, b = distance_fingerprint(first), distance_fingerprint(second)
        for pair, distances in a.items():
            difference = np.abs(distances - b[pair])
            if len(difference) and (difference.mean() > self.distance_tol or difference.max() > self.max_distance_tol):
                return False
        return True

    def differ_by(self, first: Atoms, second: Atoms) -> float:
        """Mean absolute difference (Å) of the two distance fingerprints over every pair of atoms,
        or ``inf`` for different compositions: the distance a diversity filter compares."""
        if sorted(first.numbers) != sorted(second.numbers):
            return float("inf")
        a, b = distance_fingerprint(first), distance_fingerprint(second)
        differences = np.concatenate([np.abs(d - b[pair]) for pair, d in a.items()])
        return float(differences.mean()) if len(differences) else 0.0

    def unique(self, structures: list[Atoms], energies: list[float]) -> list[int]:
        """Indices of the first of each group of equal structures, lowest energy first."""
        kept: list[int] = []
        for index in np.argsort(energies, kind="stable"):
            if not any(self.same(structures[index], energies[index], structures[k], energies[k]) for k in kept):
                kept.append(int(index))
        return kept


def distance_fingerprint(atoms: Atoms) -> dict[tuple[int, int], np.ndarray]:
    """Sorted minimum-image distances (Å) of every pair of atoms, per pair of atomic numbers."""
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    numbers = atoms.numbers
    i, j = np.triu_indices(len(atoms), k=1)
    out = {}
    for za in np.unique(numbers):
        for zb in np.unique(numbers[numbers >= za]):
            mask = ((numbers[i] == za) & (numbers[j] == zb)) | ((numbers[i] == zb) & (numbers[j] == za))
            out[(int(za), int(zb))] = np.sort(distances[i[mask], j[mask]])
    return out
