"""The descriptor class, imported (with torch) only when a config or model uses ``example-radial``."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from pesmith.descriptor import Descriptor, normalize_species, species_lookup
from pesmith.errors import ConfigError


class RadialGaussians(Descriptor):
    """Radial-only Gaussian descriptor: G[s, k] = sum_j exp(-eta (r_ij - mu_k)^2) f_c(r_ij).

    ``j`` runs over neighbors of species ``s`` within ``cutoff`` (Å); the ``n_radial`` centers
    ``mu_k`` are spread evenly over [0, cutoff) Å with width ``eta = 1 / (2 d^2)``, ``d`` their
    spacing; ``f_c`` is the cosine cutoff. Features: for each neighbor species, all ``k``.
    """

    def __init__(self, species: Sequence[str], cutoff: float = 5.0, n_radial: int = 6):
        super().__init__()
        self.species = normalize_species(species)
        if not cutoff > 0 or n_radial < 1:
            raise ConfigError(f"descriptor.cutoff must be > 0 Å and n_radial >= 1, got {cutoff}, {n_radial}")
        self.cutoff = float(cutoff)
        self.n_radial = int(n_radial)
        spacing = self.cutoff / self.n_radial
        self.eta = 1.0 / (2.0 * spacing**2)
        self.register_buffer("centers", torch.arange(self.n_radial, dtype=torch.float64) * spacing, persistent=False)
        self.register_buffer("species_index", species_lookup(self.species), persistent=False)

    @property
    def n_features(self) -> int:
        return len(self.species) * self.n_radial

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        centers, neighbors = edge_index
        distances = torch.linalg.norm(edge_vectors, dim=1)  # (n_edges,) Å
        cut = torch.where(
            distances < self.cutoff, 0.5 * (torch.cos(distances * (math.pi / self.cutoff)) + 1.0), 0.0 * distances
        )
        gauss = torch.exp(-self.eta * (distances[:, None] - self.centers) ** 2) * cut[:, None]  # (n_edges, K)
        slot = centers * len(self.species) + self.species_index[numbers[neighbors]]
        out = torch.zeros(numbers.shape[0] * len(self.species), self.n_radial, dtype=torch.float64)
        return out.index_add(0, slot, gauss).reshape(numbers.shape[0], -1)  # (n_atoms, n_features)

    def describe(self) -> list[str]:
        return [f"G[{s}](mu={mu:.3g} Å)" for s in self.species for mu in self.centers.tolist()]

    def get_config(self) -> dict[str, Any]:
        return {"species": list(self.species), "cutoff": self.cutoff, "n_radial": self.n_radial}
