"""The contract of a descriptor plugin: per-atom features from neighbor-pair vectors."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from .errors import ConfigError, DataError
from .structures import Batch


class Descriptor(torch.nn.Module, ABC):
    """Maps a batch of structures to per-atom features ``(n_atoms, n_features)`` in float64.

    A descriptor is a function of the edge vectors only (center -> neighbor, Å), written with
    differentiable torch operations, so that forces and stress follow from autograd exactly.
    Hyper-parameters are constructor arguments; :meth:`get_config` returns them so that
    ``type(d)(**d.get_config())`` rebuilds the same descriptor.

    Subclasses set ``self.cutoff`` (Å) and ``self.species`` (chemical symbols, sorted by atomic
    number) in ``__init__``.
    """

    cutoff: float
    species: tuple[str, ...]

    @property
    @abstractmethod
    def n_features(self) -> int:
        """Number of features per atom."""

    @abstractmethod
    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        """Features of every atom.

        Parameters
        ----------
        numbers
            (n_atoms,) atomic numbers.
        edge_index
            (2, n_edges) center and neighbor atom of each edge, sorted by center.
        edge_vectors
            (n_edges, 3) vector from center to neighbor image, Å.

        Returns
        -------
        (n_atoms, n_features) float64
        """

    @abstractmethod
    def describe(self) -> list[str]:
        """One human-readable name per feature, in feature order."""

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (plain YAML/JSON types) that rebuild this descriptor."""

    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n_atoms, F)`` and their derivatives ``(n_edges, F, 3)`` (feature units / Å)
        with respect to each edge vector of their center.

        Because the features of atom i depend only on the edges centered on i,
        ``d(sum_i G_if)/dr_e = dG_{center(e), f}/dr_e``: this default takes one backward pass
        per feature. Descriptors with a cheaper route override it;
        :func:`pesmith.testing.check_descriptor` checks any override against autograd.
        """
        vectors = edge_vectors.detach().requires_grad_(True)
        features = self(numbers, edge_index, vectors)  # (n_atoms, F)
        n_features = features.shape[1]
        columns = []
        for f in range(n_features):
            (grad,) = torch.autograd.grad(features[:, f].sum(), vectors, retain_graph=f < n_features - 1)
            columns.append(grad)  # (n_edges, 3)
        jacobian = torch.stack(columns, dim=1) if columns else vectors.new_zeros(vectors.shape[0], 0, 3)
        return features.detach(), jacobian

    def pair_features(self, center: int, neighbor: int, distances: torch.Tensor) -> torch.Tensor:
        """``(n, F)`` features of an atom of atomic number ``center`` whose only neighbor, of
        atomic number ``neighbor``, is at each of ``distances`` ``(n,)`` (Å).

        For a pair-additive descriptor (``distance_2b``) these are the contributions of single
        pairs, the sparse points of gap_fit's 2-body GP; computed by :meth:`forward` on ``n``
        separate two-atom pieces, so every descriptor has them.
        """
        n = distances.shape[0]
        numbers = torch.tensor([center, neighbor], dtype=torch.int64).repeat(n)  # (2n,)
        centers = 2 * torch.arange(n)
        edge_index = torch.stack([centers, centers + 1])  # (2, n), sorted by center
        vectors = torch.zeros(n, 3, dtype=distances.dtype)
        vectors[:, 0] = distances
        with torch.no_grad():
            return self(numbers, edge_index, vectors)[centers]

    def featurize(self, batch: Batch) -> torch.Tensor:
        """(n_atoms, n_features) features of a :class:`Batch`, after checking its elements."""
        self.check_numbers(batch.numbers)
        return self(batch.numbers, batch.edge_index, batch.edge_vectors())

    def check_numbers(self, numbers: torch.Tensor) -> None:
        """Raise :class:`DataError` naming any element this descriptor was not set up for."""
        known = {atomic_numbers[s] for s in self.species}
        unknown = sorted(set(numbers.tolist()) - known)
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            raise DataError(
                f"element(s) {names} not in this descriptor/model (species: {', '.join(self.species)});"
                " train a model that includes them"
            )


def species_lookup(species: Sequence[str]) -> torch.Tensor:
    """(119,) int64 table: atomic number -> position in ``species``, -1 for other elements."""
    table = torch.full((119,), -1, dtype=torch.int64)
    for position, symbol in enumerate(species):
        table[atomic_numbers[symbol]] = position
    return table


def normalize_species(species: Sequence[str], key: str = "species") -> tuple[str, ...]:
    """Validate chemical symbols and sort them by atomic number (the feature order)."""
    if isinstance(species, str) or not species:
        raise ConfigError(f"{key} must be a non-empty list of chemical symbols, got {species!r}")
    bad = [s for s in species if s not in atomic_numbers or s == "X"]
    if bad:
        raise ConfigError(f"{key}: unknown chemical symbol(s) {bad}; use symbols such as 'Li', 'Si'")
    return tuple(sorted(set(species), key=lambda s: atomic_numbers[s]))


def shortest_bond(species: Sequence[str]) -> float:
    """Shortest covalent bond length among the species, Å: the smallest sum of two covalent radii."""
    radii = sorted(covalent_radii[atomic_numbers[s]] for s in species)
    return float(radii[0] + radii[0])


def check_cutoff(value: float, species: Sequence[str], key: str = "cutoff") -> float:
    """Validate a cutoff radius (Å): finite, positive and longer than the shortest bond.

    A cutoff below :func:`shortest_bond` would leave (almost) every atom without neighbors,
    so its features would be all zero. ``key`` names the config key in the error.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"descriptor.{key} must be a number of Å, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"descriptor.{key} must be a positive number of Å, got {value}")
    bond = shortest_bond(species)
    if value < bond:
        raise ConfigError(
            f"descriptor.{key} = {value} Å is shorter than the shortest {'/'.join(species)} bond"
            f" ({bond:.2f} Å, sum of covalent radii): atoms would have no neighbors; use a larger {key}"
        )
    return value
