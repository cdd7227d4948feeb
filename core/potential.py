"""A potential: descriptor + model + per-element reference energies, with energies, forces
and stress from autograd."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Sequence

import torch
from ase import Atoms
from ase.data import atomic_numbers

from .data import Dataset, reference_energies
from .descriptor import Descriptor
from .errors import ConfigError
from .features import check_stress_labels, featurize_dataset, plan_for
from .fit_settings import FitSettings
from .grad import forces_and_stress
from .repulsion import core_edge_energies, core_radii
from .model import FitSummary, Model
from .structures import DTYPE, Batch, build_batch

ENERGY, ATOM_ENERGIES, FORCES, STRESS, FEATURES = "energy", "energies", "forces", "stress", "features"
ENERGY_STD, FORCES_STD = "energy_std", "forces_std"


class Potential(torch.nn.Module):
    """E = sum_i (e_ref(Z_i) + model(G_i)) + E_core, eV; forces eV/Å and stress eV/Å^3 by autograd.

    ``E_core`` is a screened-nuclear repulsion below the shortest distance of each element pair
    in the training data (:mod:`pesmith.repulsion`), zero on every training structure; it keeps
    MD from fusing atoms where the model has never seen a pair so close. :meth:`fit` sets it
    (``FitSettings.core_repulsion``); a potential without it (``core_outer`` empty) has none.

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
        self.register_buffer("core_table", torch.zeros(119, 119, dtype=DTYPE), persistent=False)
        self.core_outer: dict[str, float] = {}

    def set_core(self, outer: dict[str, float]) -> None:
        """Set the core's outer radius (Å) of each element pair, keyed ``"Li-Si"``; ``{}``: no core."""
        self.core_table.zero_()
        self.core_outer = {pair: float(r) for pair, r in outer.items()}
        for pair, radius in self.core_outer.items():
            a, b = (atomic_numbers[s] for s in pair.split("-"))
            self.core_table[a, b] = self.core_table[b, a] = radius

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
        if self.core_outer:
            centers, neighbors = batch.edge_index
            distances = edge_vectors.norm(dim=1)
            core = core_edge_energies(distances, batch.numbers[centers], batch.numbers[neighbors], self.core_table)
            atom_energies = atom_energies.index_add(0, centers, core)
        energy = torch.zeros(batch.n_structures, dtype=DTYPE).index_add(0, batch.structure_index, atom_energies)
        results = {ENERGY: energy, ATOM_ENERGIES: atom_energies, FEATURES: features}
        std = self.model.energy_std(features, batch.numbers, batch.structure_index, batch.n_structures)
        if std is not None:
            results[ENERGY_STD] = std
        return results

    def forces_std(self, batch: Batch) -> torch.Tensor | None:
        """(n_atoms, 3) standard deviation of the predicted forces, eV/Å, or ``None`` when the
        model has no force uncertainty. Computes the feature derivatives of ``batch`` (about the
        cost of the forces themselves), so it is asked for separately from :meth:`forward`."""
        if not self.model.has_forces_std:
            return None
        self.descriptor.check_numbers(batch.numbers)
        with torch.no_grad():
            vectors = batch.edge_vectors()
        features, jacobian = self.descriptor.features_and_jacobian(batch.numbers, batch.edge_index, vectors)
        return self.model.forces_std(features.detach(), batch.numbers, batch.edge_index, jacobian.detach())

    def fit(
        self,
        train_set: Dataset,
        validation: Dataset | None,
        settings: FitSettings,
        isolated_atom_energies: dict[str, float] | None = None,
        cache_dir: Path | None = None,
        warm_start: bool = False,
    ) -> FitSummary:
        """Fit reference energies, feature range and the model on labeled structures.

        Features and derivatives are computed within ``settings.memory_gb``
        (:func:`pesmith.memory.plan_features`); a ``disk`` plan writes its float32 cache into
        ``cache_dir``, which the caller owns and removes. The summary's ``info["features"]``
        records the plan and the featurization time (s). With ``warm_start`` (a potential loaded
        from a model file) the reference energies stay as they are and the model continues from
        its state.

        Raises
        ------
        ConfigError
            ``warm_start`` with a model whose ``fit`` cannot continue from its state.
        """
        self.set_core(core_radii(train_set.structures, self.species) if settings.core_repulsion else {})
        if not warm_start:
            self.set_reference(reference_energies(train_set, self.species, isolated_atom_energies))
        elif "warm_start" not in inspect.signature(self.model.fit).parameters:
            raise ConfigError(f"model {type(self.model).__name__} cannot continue from a saved state (its fit takes no warm_start); train it from scratch")
        datasets = [train_set] + ([validation] if validation is not None and len(validation) else [])
        plan, edges = plan_for(self.descriptor, datasets, settings, cache_dir)
        started = time.perf_counter()
        feature_sets = [
            featurize_dataset(
                self.descriptor,
                dataset,
                self.reference,
                plan,
                cache_path=Path(cache_dir) / f"jacobian_{k}.f32" if cache_dir is not None else None,
                edges=dataset_edges,
                progress=settings.progress,
            )
            for k, (dataset, dataset_edges) in enumerate(zip(datasets, edges))
        ]
        featurization_time = time.perf_counter() - started
        check_stress_labels(feature_sets[0], settings, train_set.source)
        self.feature_min.copy_(feature_sets[0].features.min(0).values)
        self.feature_max.copy_(feature_sets[0].features.max(0).values)
        extra = {"warm_start": True} if warm_start else {}
        summary = self.model.fit(feature_sets[0], feature_sets[1] if len(feature_sets) > 1 else None, settings, **extra)
        summary.info["features"] = plan.as_dict() | {"featurization_s": featurization_time}
        return summary

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
