"""The contract of a model plugin: per-atom features -> per-atom energies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from .features import FeatureSet
from .training import TrainingSettings


class Model(torch.nn.Module, ABC):
    """Maps per-atom features ``(n_atoms, n_features)`` to per-atom energies ``(n_atoms,)``, eV.

    The energies are residuals: pesmith adds per-element reference energies. ``forward`` must
    be differentiable in the features (forces follow by the chain rule). Learned state lives in
    parameters and buffers, so ``state_dict()`` holds all of it; :meth:`get_config` holds the
    hyper-parameters, and ``cls(species=..., n_features=..., **get_config())`` followed by
    ``load_state_dict`` rebuilds a fitted model.
    """

    def __init__(self, species: Sequence[str], n_features: int):
        super().__init__()
        self.species = tuple(species)
        self.n_features = int(n_features)

    @abstractmethod
    def forward(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(n_atoms,) energies, eV, of atoms with ``features`` (n_atoms, F) and ``numbers``."""

    @abstractmethod
    def fit(self, train: FeatureSet, validation: FeatureSet | None, settings: TrainingSettings) -> dict[str, Any]:
        """Fit to ``train`` (energies and forces); return a history/summary for the report."""

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters (plain YAML/JSON types), without ``species`` and ``n_features``."""
