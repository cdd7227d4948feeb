"""A chosen subset of another descriptor's features (``pesmith select-features`` writes it).

``{kind: selected, base: {kind: acsf, ...}, features: [3, 17, ...]}`` computes the base
descriptor and keeps the listed columns, in that order; forces and stress follow from the base's
derivatives of the kept columns. The base still computes all of its features: the subset makes
the model smaller (and its training and inference cheaper), not the descriptor.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from pesmith.descriptor import Descriptor
from pesmith.errors import ConfigError


class Selected(Descriptor):
    """A subset of another descriptor's features, in the listed order.

    Parameters
    ----------
    species
        Chemical symbols (passed on to the base descriptor).
    base
        The base descriptor's config section: ``kind`` and its own keys (not ``species``).
    features
        0-based indices of the base features to keep, distinct.

    Raises
    ------
    ConfigError
        A base section without ``kind``, or indices outside the base's features or repeated.
    """

    def __init__(self, species: Sequence[str], base: Mapping[str, Any], features: Sequence[int]):
        super().__init__()
        from pesmith.registry import default_registry

        if not isinstance(base, Mapping) or "kind" not in base:
            raise ConfigError(f"descriptor.base must be a descriptor section with a kind, e.g. {{kind: acsf, cutoff: 6.0}}, got {base!r}")
        options = {k: v for k, v in base.items() if k not in ("kind", "species")}
        try:
            self.base = default_registry().get("descriptor", base["kind"])(species=list(species), **options)
        except TypeError as exc:
            raise ConfigError(f"descriptor.base: invalid options for descriptor kind {base['kind']!r}: {exc}") from None
        self.base_config = {"kind": base["kind"], **options}
        kept = [int(f) for f in features]
        if not kept or len(set(kept)) != len(kept) or any(not 0 <= f < self.base.n_features for f in kept):
            raise ConfigError(
                f"descriptor.features must be distinct indices in 0..{self.base.n_features - 1} (the base's"
                f" {self.base.n_features} features), got {list(features)!r}"
            )
        self.kept = kept
        self.register_buffer("columns", torch.tensor(kept, dtype=torch.int64), persistent=False)
        self.species, self.cutoff = self.base.species, self.base.cutoff

    @property
    def n_features(self) -> int:
        return len(self.kept)

    def get_config(self) -> dict[str, Any]:
        return {"species": list(self.species), "base": dict(self.base_config), "features": list(self.kept)}

    def describe(self) -> list[str]:
        names = self.base.describe()
        return [names[f] for f in self.kept]

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        return self.base(numbers, edge_index, edge_vectors)[:, self.columns]

    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The base's features and derivatives ``(n_edges, F, 3)`` of the kept columns."""
        features, jacobian = self.base.features_and_jacobian(numbers, edge_index, edge_vectors)
        return features[:, self.columns], jacobian[:, self.columns]
