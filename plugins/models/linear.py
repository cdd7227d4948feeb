"""A linear model per element, fitted in closed form on energies, forces and stress.

E = sum_i (w_Z . x_i + b_Z), x_i = (G_i - mean_Z) / scale_Z: SNAP's form (Thompson et al.,
J. Comput. Phys. 285, 316 (2015)) on any descriptor. Energies, forces and stress are all linear
in the parameters, so the fit is one weighted ridge regression whose normal equations are
accumulated chunk by chunk (memory grows with the number of parameters, not with the data),
with the same loss as the network (MSE of energy per atom + force_weight x MSE of force
components + stress_weight x MSE of stress components) plus ``alpha`` |w|^2.

The parameter covariance of that regression, ``sigma^2 (A^T W A + alpha I)^-1`` with ``sigma^2``
the weighted residual sum of squares over (rows - parameters), gives each structure's energy
standard deviation (:meth:`LinearModel.energy_std`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from pydantic import Field

from pesmith.descriptor import species_lookup
from pesmith.errors import DataError
from pesmith.features import FeatureSet
from pesmith.loss import evaluate
from pesmith.fit_settings import FitSettings
from pesmith.grad import VOIGT
from pesmith.model import FitSummary, Model, standardization
from pesmith.structures import DTYPE


class LinearSettings(FitSettings):
    """Fit settings of the ``linear`` model (the ``training:`` section)."""

    alpha: float = Field(1e-8, ge=0, description="ridge penalty on the weights of standardized features (loss units)")


class LinearModel(Model):
    """Linear in the features per element: E_i = w_Z . (G_i - mean_Z) / scale_Z + b_Z, eV;
    closed-form ridge fit on energies, forces and stress, with an energy uncertainty."""

    settings_schema: ClassVar[type[LinearSettings]] = LinearSettings

    def __init__(self, species: Sequence[str], n_features: int):
        super().__init__(species, n_features)
        n, f = len(self.species), self.n_features
        self.register_buffer("feature_mean", torch.zeros(n, f, dtype=DTYPE))
        self.register_buffer("feature_scale", torch.ones(n, f, dtype=DTYPE))
        self.register_buffer("weights", torch.zeros(n, f, dtype=DTYPE))
        self.register_buffer("bias", torch.zeros(n, dtype=DTYPE))
        self.register_buffer("covariance", torch.zeros(n * (f + 1), n * (f + 1), dtype=DTYPE))
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)

    @property
    def n_parameters(self) -> int:
        return len(self.species) * (self.n_features + 1)

    def get_config(self) -> dict[str, Any]:
        return {}

    def forward(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        index = self.lookup[numbers]
        x = (features - self.feature_mean[index]) / self.feature_scale[index]
        return (x * self.weights[index]).sum(1) + self.bias[index]

    def energy_std(
        self, features: torch.Tensor, numbers: torch.Tensor, structure_index: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        rows = self._energy_rows(features, numbers, structure_index, n_structures)  # (n_structures, P)
        variance = torch.einsum("np,pq,nq->n", rows, self.covariance, rows)
        return variance.clamp(min=0).sqrt()

    def _standardized(self, features: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.lookup[numbers]
        return (features - self.feature_mean[index]) / self.feature_scale[index], index

    def _energy_rows(
        self, features: torch.Tensor, numbers: torch.Tensor, structure_index: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """(n_structures, P) design rows of total energies: per-element sums of [x_i, 1]."""
        x, index = self._standardized(features, numbers)
        n, f = len(self.species), self.n_features
        augmented = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (n_atoms, F + 1)
        rows = torch.zeros(n_structures * n, f + 1, dtype=DTYPE).index_add(0, structure_index * n + index, augmented)
        return rows.view(n_structures, n, f + 1).reshape(n_structures, -1)

    def _design(self, part: FeatureSet, settings: FitSettings) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """(rows, targets, weight per row) blocks of one loaded part: energies per atom, and
        force and stress components when their weights are set."""
        n, f = len(self.species), self.n_features
        atoms = part.atoms_per_structure.to(DTYPE)
        energy_rows = self._energy_rows(part.features, part.numbers, part.structure_index, part.n_structures)
        blocks = [(energy_rows / atoms[:, None], part.energies / atoms, 1.0)]
        if not settings.needs_jacobian:
            return blocks
        index = self.lookup[part.numbers]
        centers, neighbors = part.edge_index
        center_species = index[centers]
        jacobian = part.load_jacobian() / self.feature_scale[center_species][:, :, None]  # (n_edges, F, 3): dx/dr_e
        if settings.force_weight > 0:
            # F_k = sum_{e: i=k} g_e - sum_{e: j=k} g_e with g_e = J_e^T w_{Z_i}: linear in w.
            per_edge = jacobian.transpose(1, 2)  # (n_edges, 3, F)
            rows = torch.zeros(part.n_atoms * n, 3, f, dtype=DTYPE)
            rows.index_add_(0, centers * n + center_species, per_edge)
            rows.index_add_(0, neighbors * n + center_species, -per_edge)
            rows = rows.view(part.n_atoms, n, 3, f).permute(0, 2, 1, 3)  # (n_atoms, 3, n, F)
            rows = torch.cat([rows, torch.zeros(part.n_atoms, 3, n, 1, dtype=DTYPE)], dim=3)  # bias: no force
            blocks.append((rows.reshape(3 * part.n_atoms, -1), part.forces.reshape(-1), settings.force_weight))
        labeled = part.has_stress
        if settings.stress_weight > 0 and bool(labeled.any()):
            owner = part.structure_index[centers]
            volumes = torch.where(part.volumes > 0, part.volumes, torch.ones_like(part.volumes))
            components = []
            for a, b in VOIGT:  # sigma_ab = (1/V) sum_e (r_a g_b + r_b g_a) / 2
                vectors = part.edge_vectors
                term = 0.5 * (vectors[:, a, None] * jacobian[:, :, b] + vectors[:, b, None] * jacobian[:, :, a])
                summed = torch.zeros(part.n_structures * n, f, dtype=DTYPE).index_add(0, owner * n + center_species, term)
                summed = summed.view(part.n_structures, n, f) / volumes[:, None, None]
                components.append(torch.cat([summed, torch.zeros(part.n_structures, n, 1, dtype=DTYPE)], dim=2))
            rows = torch.stack(components, dim=1)[labeled]  # (n_labeled, 6, n, F + 1)
            blocks.append((rows.reshape(-1, self.n_parameters), part.stresses[labeled].reshape(-1), settings.stress_weight))
        return blocks

    def fit(self, train_set: FeatureSet, validation: FeatureSet | None, settings: LinearSettings, warm_start: bool = False) -> FitSummary:
        """Standardise per element, accumulate the weighted normal equations over chunks, solve.
        ``warm_start`` changes nothing: the closed-form solution has no starting point."""
        mean, scale = standardization(train_set.features, train_set.numbers, self.species)
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(scale)
        counts = {"energy": train_set.n_structures, "force": 3 * train_set.n_atoms, "stress": 6 * int(train_set.has_stress.sum())}
        p = self.n_parameters
        normal = torch.zeros(p, p, dtype=DTYPE)
        right = torch.zeros(p, dtype=DTYPE)
        target_norm, n_rows = 0.0, 0
        with torch.no_grad():
            for part in train_set.chunks():
                for (rows, targets, weight), kind in zip(self._design(part, settings), ("energy", "force", "stress")):
                    w = weight / counts[kind]
                    normal += w * rows.T @ rows
                    right += w * rows.T @ targets
                    target_norm += w * float(targets @ targets)
                    n_rows += rows.shape[0]
            penalty = torch.full((p,), settings.alpha, dtype=DTYPE)
            penalty.view(len(self.species), -1)[:, -1] = 0.0  # no penalty on the per-element bias
            system = normal + torch.diag(penalty)
            factor, info = torch.linalg.cholesky_ex(system)
            if int(info) != 0:
                raise DataError(
                    f"the linear fit's normal equations are singular ({p} parameters, {n_rows} observations):"
                    " raise training.alpha (e.g. to 1e-6) or add structures"
                )
            theta = torch.cholesky_solve(right[:, None], factor)[:, 0]
            residual = float(theta @ normal @ theta - 2 * theta @ right) + target_norm  # weighted loss without penalty
            sigma2 = max(residual, 0.0) / max(n_rows - p, 1)
            self.covariance.copy_(sigma2 * torch.cholesky_inverse(factor))
            theta = theta.view(len(self.species), -1)
            self.weights.copy_(theta[:, :-1])
            self.bias.copy_(theta[:, -1])
        info = {"n_parameters": p, "n_observations": n_rows, "alpha": settings.alpha, "train": evaluate(self, train_set, settings)}
        if validation is not None and validation.n_structures:
            info["validation"] = evaluate(self, validation, settings)
        return FitSummary(info=info)
