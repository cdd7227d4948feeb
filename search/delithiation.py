"""The delithiation problem: which Li atoms of a Li–Si structure to remove.

At one step of a delithiation path (Li_x1 Si -> Li_x2 Si, x2 < x1) the structure keeps its Si
and loses ``n_remove`` of its ``n_li`` Li atoms. A genome is the set of removed Li sites: a
tuple of ``n_li`` zeros and ones with exactly ``n_remove`` ones (site ``k`` is the ``k``-th Li
atom of the structure, in atom order). The operators keep that count fixed:

- :func:`swap_mutation` moves one vacancy: a removed Li is put back and a kept one removed, so
  the child always differs from its parent;
- :func:`uniform_crossover` takes each site from either parent and repairs the count by
  flipping, at random, sites on which the parents disagree (as aenet's ævo does), then mutates
  a child that equals a parent.

Every random draw comes from the :class:`numpy.random.Generator` passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from pesmith.errors import ConfigError

Genome = tuple[int, ...]
MAX_PARENT_COPY_MUTATIONS = 20  # swap mutations at most applied to a crossover child equal to a parent


@dataclass(frozen=True)
class DelithiationProblem:
    """Remove ``n_remove`` of the Li atoms of ``structure``.

    Attributes
    ----------
    structure
        The lithiated structure (its Li and Si atoms; any cell).
    n_remove
        Li atoms to remove, ``0 < n_remove < n_li``.
    """

    structure: Atoms
    n_remove: int

    def __post_init__(self):
        n_li = self.n_li
        if n_li == 0:
            raise ConfigError(f"the start structure ({self.structure.get_chemical_formula()}) has no Li to remove")
        if not 0 < self.n_remove < n_li:
            raise ConfigError(
                f"cannot remove {self.n_remove} of the {n_li} Li atoms of {self.structure.get_chemical_formula()}:"
                f" a step removes between 1 and {n_li - 1}; check the composition path"
            )

    @property
    def li_sites(self) -> np.ndarray:
        """Atom indices of the Li atoms, in atom order (site ``k`` is atom ``li_sites[k]``)."""
        return np.flatnonzero(self.structure.numbers == 3)

    @property
    def n_li(self) -> int:
        return int((self.structure.numbers == 3).sum())

    @property
    def n_arrangements(self) -> int:
        """Number of distinct genomes, ``C(n_li, n_remove)``."""
        from math import comb

        return comb(self.n_li, self.n_remove)

    def random_genome(self, rng: np.random.Generator) -> Genome:
        removed = rng.choice(self.n_li, size=self.n_remove, replace=False)
        genome = np.zeros(self.n_li, dtype=int)
        genome[removed] = 1
        return tuple(int(g) for g in genome)

    def check(self, genome: Sequence[int]) -> None:
        """Raise ``ValueError`` unless ``genome`` is a valid mask for this problem."""
        if len(genome) != self.n_li or sum(genome) != self.n_remove or set(genome) - {0, 1}:
            raise ValueError(f"genome of length {len(genome)} with {sum(genome)} removed does not fit {self.n_li} Li / {self.n_remove} removed")

    def apply(self, genome: Sequence[int]) -> Atoms:
        """The structure with the Li sites of ``genome`` removed (a copy, no calculator)."""
        self.check(genome)
        removed = self.li_sites[np.asarray(genome, dtype=bool)]
        keep = np.ones(len(self.structure), dtype=bool)
        keep[removed] = False
        atoms = self.structure[keep]
        atoms.calc = None
        return atoms


def genome_hash(genome: Sequence[int]) -> str:
    """``"g"`` and 15 hex digits of the genome's sha1 (the same mask always gives the same hash;
    the letter keeps ase.db from reading it as a number)."""
    return "g" + hashlib.sha1(bytes(int(g) for g in genome)).hexdigest()[:15]


def swap_mutation(genome: Sequence[int], rng: np.random.Generator) -> Genome:
    """Put back one removed Li and remove one kept Li (never a no-op)."""
    child = np.array(genome, dtype=int)
    removed, kept = np.flatnonzero(child == 1), np.flatnonzero(child == 0)
    child[rng.choice(removed)] = 0
    child[rng.choice(kept)] = 1
    return tuple(int(g) for g in child)


def uniform_crossover(first: Sequence[int], second: Sequence[int], rng: np.random.Generator) -> Genome:
    """Each site from either parent at random; the count of removed sites repaired to the parents'.

    The repair flips randomly chosen sites where the parents disagree (every site where they
    agree keeps its value). A child equal to either parent is mutated (:func:`swap_mutation`, up
    to ``MAX_PARENT_COPY_MUTATIONS`` times) until it differs from both, which is always possible unless the
    problem has at most two genomes.
    """
    a, b = np.asarray(first, dtype=int), np.asarray(second, dtype=int)
    if len(a) != len(b) or a.sum() != b.sum():
        raise ValueError("crossover needs two genomes of the same length and count")
    child = np.where(rng.random(len(a)) < 0.5, a, b)
    excess = int(child.sum() - a.sum())
    disagree = np.flatnonzero(a != b)
    if excess > 0:
        child[rng.choice(disagree[child[disagree] == 1], size=excess, replace=False)] = 0
    elif excess < 0:
        child[rng.choice(disagree[child[disagree] == 0], size=-excess, replace=False)] = 1
    parents = {tuple(int(g) for g in a), tuple(int(g) for g in b)}
    result = tuple(int(g) for g in child)
    for _ in range(MAX_PARENT_COPY_MUTATIONS):
        if result not in parents:
            break
        result = swap_mutation(result, rng)
    return result
