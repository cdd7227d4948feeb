"""A potential: descriptor + model + per-element reference energies, with energies, forces
and stress from autograd."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from ase import Atoms
from ase.data import atomic_numbers

from .data import Dataset, reference_energies
from .descriptor import Descriptor
from .features import featurize_dataset
from .grad import forces_and_stress
from .model import Model
from .structures import DTYPE, Batch, build_batch
from .training import TrainingSettings

ENERGY, ATOM_ENERGIES, FORCES, STRESS, FEATURES = "energy", "energies", "forces", "stress", "features"


class Potential(torch.nn.Module):
    """E = sum_i (e_ref(Z_i) + model(G_i)), eV; forces eV/Å and stress eV/Å^3 by autograd.

    Parameters
    ----------
    descriptor, model
        The feature map and the per-atom energy model (same species, matching n_features).
    reference
        Per-element reference energies, eV (see :func:`pesmith.data.reference_energies`).
    """

    def __init__(self, descriptor: Descriptor, model: Model, reference: dict[str, float] | None = None):
        super().__init__()
        self.descriptor = descriptor
        self.model = model
        self.register_buffer("reference_table", torch.zeros(119, dtype=DTYPE), persistent=False)
        self.set_reference(reference or {s: 0.0 for s in descriptor.species})
        n = descriptor.n_features
        self.register_buffer("feature_min", torch.full((n,), -torch.inf, dtype=DTYPE))
        self.register_buffer("feature_max", torch.full((n,), torch.inf, dtype=DTYPE))

    def set_reference(self, reference: dict[str, float]) -> None:
        """Set the per-element reference energies, eV."""
        self.reference = {s: float(reference[s]) for s in self.species}
        for symbol, energy in self.reference.items():
            self.reference_table[atomic_numbers[symbol]] = energy

    @property
    def species(self) -> tuple[str, ...]:
        return self.descriptor.species

    def forward(self, batch: Batch, forces: bool = True, stress: bool = False) -> dict[str, torch.Tensor]:
        """Energies (n_structures,), per-atom energies, features and, if asked, forces and stress."""
        self.descriptor.check_numbers(batch.numbers)
        with torch.enable_grad():
            vectors = batch.edge_vectors().detach().requires_grad_(forces or stress)
            results = self.energy(batch, vectors)
            if forces or stress:
                results[FORCES], stress_tensor = forces_and_stress(results[ENERGY], vectors, batch, stress=stress)
                if stress_tensor is not None:
                    results[STRESS] = stress_tensor
        return {k: v.detach() for k, v in results.items()}

    def energy(self, batch: Batch, edge_vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Energies (n_structures,) eV, per-atom energies and features, differentiable in ``edge_vectors``."""
        features = self.descriptor(batch.numbers, batch.edge_index, edge_vectors)  # (n_atoms, F)
        atom_energies = self.model(features, batch.numbers) + self.reference_table[batch.numbers]  # (n_atoms,)
        energy = torch.zeros(batch.n_structures, dtype=DTYPE).index_add(0, batch.structure_index, atom_energies)
        return {ENERGY: energy, ATOM_ENERGIES: atom_energies, FEATURES: features}

    def fit(
        self,
        train_set: Dataset,
        validation: Dataset | None,
        settings: TrainingSettings,
        isolated_atom_energies: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Fit reference energies, feature range and the model on labeled structures."""
        self.set_reference(reference_energies(train_set, self.species, isolated_atom_energies))
        train_features = featurize_dataset(self.descriptor, train_set, self.reference)
        validation_features = (
            featurize_dataset(self.descriptor, validation, self.reference) if validation is not None and len(validation) else None
        )
        self.feature_min.copy_(train_features.features.min(0).values)
        self.feature_max.copy_(train_features.features.max(0).values)
        return self.model.fit(train_features, validation_features, settings)

    def predict(self, structures: Sequence[Atoms], stress: bool | None = None) -> dict[str, torch.Tensor]:
        """Energies (eV), forces (eV/Å) and, for periodic cells, stress (eV/Å^3) of ``structures``."""
        batch = build_batch(structures, self.descriptor.cutoff)
        if stress is None:
            stress = bool(batch.pbc.all()) and bool((batch.volumes() > 0).all())
        return self(batch, forces=True, stress=stress)

    def out_of_range(self, features: torch.Tensor) -> tuple[int, int]:
        """(atoms, features) outside the per-feature range seen in training."""
        outside = (features < self.feature_min) | (features > self.feature_max)  # (n_atoms, F)
        return int(outside.any(1).sum()), int(outside.any(0).sum())
