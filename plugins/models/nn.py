"""Behler-Parrinello neural network: one feed-forward network per element.

References
----------
J. Behler and M. Parrinello, Phys. Rev. Lett. 98, 146401 (2007), doi:10.1103/PhysRevLett.98.146401.
N. Artrith, A. Urban and G. Ceder, J. Chem. Phys. 148, 241711 (2018), doi:10.1063/1.5017661
(2 x 15 tanh networks for a-LixSi).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from ase.data import atomic_numbers

from pesmith.errors import ConfigError
from pesmith.features import FeatureSet
from pesmith.model import FitSummary, Model, standardization
from pesmith.structures import DTYPE
from pesmith.training import AdamSettings, fit_adam

ACTIVATIONS = {"tanh": torch.nn.Tanh, "silu": torch.nn.SiLU, "softplus": torch.nn.Softplus, "gelu": torch.nn.GELU}


class BehlerParrinello(Model):
    """Behler-Parrinello network: E = sum_i NN_{Z_i}((G_i - mean_Z) / std_Z), eV.

    Parameters
    ----------
    species
        Chemical symbols, one network each.
    n_features
        Features per atom (from the descriptor).
    hidden
        Nodes per hidden layer (default 2 x 15, as in the Li3PO4 and LixSi studies).
    activation
        One of ``tanh``, ``silu``, ``softplus``, ``gelu``.
    """

    settings_schema: ClassVar[type[AdamSettings]] = AdamSettings

    def __init__(
        self, species: Sequence[str], n_features: int, hidden: Sequence[int] = (15, 15), activation: str = "tanh"
    ):
        super().__init__(species, n_features)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ConfigError(f"model.hidden must be a non-empty list of positive layer sizes, got {hidden!r}")
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.networks = torch.nn.ModuleDict({s: self._network() for s in self.species})
        n = len(self.species)
        self.register_buffer("feature_mean", torch.zeros(n, n_features, dtype=DTYPE))
        self.register_buffer("feature_scale", torch.ones(n, n_features, dtype=DTYPE))
        self.register_buffer("numbers_of_species", torch.tensor([atomic_numbers[s] for s in self.species]))

    def _network(self) -> torch.nn.Sequential:
        layers: list[torch.nn.Module] = []
        width = self.n_features
        for size in self.hidden:
            layers += [torch.nn.Linear(width, size, dtype=DTYPE), ACTIVATIONS[self.activation]()]
            width = size
        layers.append(torch.nn.Linear(width, 1, dtype=DTYPE))
        return torch.nn.Sequential(*layers)

    def get_config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "activation": self.activation}

    def forward(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        energies = torch.zeros(features.shape[0], dtype=features.dtype, device=features.device)
        for index, symbol in enumerate(self.species):
            atoms = torch.nonzero(numbers == self.numbers_of_species[index]).squeeze(1)  # (n_Z,)
            if atoms.numel() == 0:
                continue
            x = (features[atoms] - self.feature_mean[index]) / self.feature_scale[index]  # (n_Z, F)
            energies = energies.index_put((atoms,), self.networks[symbol](x).squeeze(1))
        return energies

    def fit(self, train_set: FeatureSet, validation: FeatureSet | None, settings: AdamSettings, warm_start: bool = False) -> FitSummary:
        """Standardise features per element on ``train_set`` and initialise the weights (seeded),
        then run the shared fit loop; with ``warm_start`` the loop continues from the current
        weights and feature scaling instead."""
        if not warm_start:
            with torch.random.fork_rng():  # seeded initialisation without touching the global RNG
                torch.manual_seed(settings.seed)
                for network in self.networks.values():
                    for layer in network:
                        if isinstance(layer, torch.nn.Linear):
                            layer.reset_parameters()
            mean, scale = standardization(train_set.features, train_set.numbers, self.species)
            self.feature_mean.copy_(mean)
            self.feature_scale.copy_(scale)
        return fit_adam(self, train_set, validation, settings)
