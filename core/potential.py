"""A potential: a sum of terms (descriptor + model each) + per-element reference energies,
with energies, forces and stress from autograd."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers

from .baseline import Baseline, subtract_baseline
from .data import Dataset, reference_energies
from .descriptor import Descriptor
from .errors import ConfigError
from .features import check_stress_labels, featurize_dataset, plan_for
from .fit_settings import FitSettings
from .grad import forces_and_stress
from .memory import default_memory_gb
from .model import FitSummary, Model
from .repulsion import core_edge_energies, core_radii
from .structures import DTYPE, Batch, batch_structures, build_batch
from .terms import Term, combined_std, edges_within

ENERGY, ATOM_ENERGIES, FORCES, STRESS, FEATURES = "energy", "energies", "forces", "stress", "features"
ENERGY_STD, FORCES_STD = "energy_std", "forces_std"


class Potential(torch.nn.Module):
    """E = E_baseline + sum_t E_t + sum_i e_ref(Z_i) + E_core, eV, over the terms t (a descriptor with its own
    cutoff and a model of per-atom energies each, :class:`~pesmith.terms.Term`); forces eV/Å and
    stress eV/Å^3 by autograd through the sum.

    ``Potential(descriptor, model)`` is the one-term potential (``potential.descriptor`` and
    ``potential.model`` are its parts); ``Potential(terms=[(descriptor, model), ...])`` a sum
    of terms, whose descriptors share the species. The neighbor list is built at the largest
    cutoff (:attr:`cutoff`) and each term sees the edges within its own.

    ``features`` (the ``FEATURES`` result) and the training range ``feature_min`` /
    ``feature_max`` ``(sum_t F_t,)`` are the terms' features concatenated in term order, so
    :meth:`out_of_range` counts a feature of any term outside its range.

    ``E_core`` is a screened-nuclear repulsion below the shortest distance of each element pair
    in the training data (:mod:`pesmith.repulsion`), zero on every training structure; it keeps
    MD from fusing atoms where the model has never seen a pair so close. :meth:`fit` sets it
    (``FitSettings.core_repulsion``); a potential without it (``core_outer`` empty) has none.

    ``E_baseline`` is an optional fixed potential (:mod:`pesmith.baseline`: an analytic pair
    repulsion or another fitted potential) under the learned terms (delta learning): :meth:`fit`
    subtracts its energies, forces and stress from the labels, and every prediction includes it.
    The neighbor list is then built at the larger of the terms' and the baseline's cutoffs;
    ``features``, the feature range and the uncertainties are those of the learned terms only.

    Parameters
    ----------
    descriptor, model
        The feature map and the per-atom energy model of a one-term potential (same species,
        matching n_features).
    reference
        Per-element reference energies, eV (see :func:`pesmith.data.reference_energies`).
    terms
        Instead of ``descriptor`` and ``model``: one ``(descriptor, model)`` pair per term.
    baseline
        A fixed potential under the terms, or ``None``.

    Raises
    ------
    ConfigError
        Neither or both of ``descriptor`` / ``model`` and ``terms``, no terms, terms whose
        species differ, or a baseline that does not fit the species
        (:meth:`pesmith.baseline.Baseline.check_species`).
    """

    def __init__(
        self,
        descriptor: Descriptor | None = None,
        model: Model | None = None,
        reference: dict[str, float] | None = None,
        *,
        terms: Sequence[tuple[Descriptor, Model]] | None = None,
        baseline: Baseline | None = None,
    ):
        super().__init__()
        given = descriptor is not None or model is not None
        if (terms is None and (descriptor is None or model is None)) or (terms is not None and given):
            raise ConfigError("a Potential takes either a descriptor and a model or terms=[(descriptor, model), ...], not both or neither")
        pairs = [(descriptor, model)] if terms is None else list(terms)
        if not pairs:
            raise ConfigError("a Potential needs at least one term (descriptor, model)")
        self.terms = torch.nn.ModuleList([Term(d, m) for d, m in pairs])
        species = {tuple(term.descriptor.species) for term in self.terms}
        if len(species) > 1:
            raise ConfigError(f"the terms of a potential must share their species; got {sorted(map(list, species))}")
        self.register_buffer("reference_table", torch.zeros(119, dtype=DTYPE), persistent=False)
        self.set_reference(reference or {s: 0.0 for s in self.species})
        n = self.n_features
        self.register_buffer("feature_min", torch.full((n,), -torch.inf, dtype=DTYPE))
        self.register_buffer("feature_max", torch.full((n,), torch.inf, dtype=DTYPE))
        self.register_buffer("core_table", torch.zeros(119, 119, dtype=DTYPE), persistent=False)
        self.core_outer: dict[str, float] = {}
        if baseline is not None:
            baseline.check_species(self.species)
        self.baseline = baseline

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
        return self.terms[0].descriptor.species

    @property
    def descriptor(self) -> Descriptor:
        """The descriptor of a one-term potential.

        Raises
        ------
        ConfigError
            The potential has several terms (use ``terms[k].descriptor``).
        """
        return self._single_term("descriptor").descriptor

    @property
    def model(self) -> Model:
        """The model of a one-term potential (see :attr:`descriptor`)."""
        return self._single_term("model").model

    def _single_term(self, part: str) -> Term:
        if len(self.terms) != 1:
            raise ConfigError(
                f"this potential is a sum of {len(self.terms)} terms and has no single {part}; use potential.terms[k].{part}"
            )
        return self.terms[0]

    @property
    def cutoff(self) -> float:
        """The largest cutoff of the terms and the baseline, Å: the neighbor list's."""
        return max([term.cutoff for term in self.terms] + ([self.baseline.cutoff] if self.baseline is not None else []))

    @property
    def n_features(self) -> int:
        """Features per atom, all terms together."""
        return sum(term.descriptor.n_features for term in self.terms)

    @property
    def has_forces_std(self) -> bool:
        """Whether every term's model has a force uncertainty (:meth:`forces_std`)."""
        return all(term.model.has_forces_std for term in self.terms)

    def check_numbers(self, numbers: torch.Tensor) -> None:
        """Raise :class:`~pesmith.errors.DataError` naming any element the potential was not set up for."""
        self.terms[0].descriptor.check_numbers(numbers)

    def forward(self, batch: Batch, forces: bool = True, stress: bool = False) -> dict[str, torch.Tensor]:
        """Energies (n_structures,), per-atom energies, features and, if asked, forces and stress
        (an external baseline's included)."""
        self.check_numbers(batch.numbers)
        with torch.enable_grad():
            vectors = batch.edge_vectors().detach().requires_grad_(forces or stress)
            results = self.energy(batch, vectors)
            if forces or stress:
                results[FORCES], stress_tensor = forces_and_stress(results[ENERGY], vectors, batch, stress=stress)
                if stress_tensor is not None:
                    results[STRESS] = stress_tensor
        results = {k: v.detach() for k, v in results.items()}
        if self.baseline is not None and self.baseline.external:
            add_labels(results, batch, self.baseline.labels(batch_structures(batch)))
        return results

    def energy(self, batch: Batch, edge_vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Energies (n_structures,) eV, per-atom energies and features, differentiable in
        ``edge_vectors``; ``energy_std`` (eV) when every term's model has one. Each term computes
        in its ``compute_dtype``; what is returned is float64. An external
        baseline (:attr:`pesmith.baseline.Baseline.external`) is not in them: :meth:`forward` adds it."""
        atom_energies = self.reference_table[batch.numbers]  # (n_atoms,)
        features, stds = [], []
        largest = self.cutoff
        for term in self.terms:
            edge_index, vectors = edges_within(term.cutoff, largest, batch.edge_index, edge_vectors)
            term_features = term.descriptor(batch.numbers, edge_index, vectors.to(term.compute_dtype))  # (n_atoms, F_t)
            atom_energies = term.model(term_features, batch.numbers).to(DTYPE) + atom_energies
            features.append(term_features.to(DTYPE))
            std = term.model.energy_std(term_features, batch.numbers, batch.structure_index, batch.n_structures)
            stds.append(None if std is None else std.to(DTYPE))
        if self.core_outer:
            centers, neighbors = batch.edge_index
            core = core_edge_energies(edge_vectors.norm(dim=1), batch.numbers[centers], batch.numbers[neighbors], self.core_table)
            atom_energies = atom_energies.index_add(0, centers, core)
        if self.baseline is not None and not self.baseline.external:
            atom_energies = atom_energies + self.baseline.atom_energies(batch, edge_vectors)
        energy = torch.zeros(batch.n_structures, dtype=DTYPE).index_add(0, batch.structure_index, atom_energies)
        results = {ENERGY: energy, ATOM_ENERGIES: atom_energies, FEATURES: features[0] if len(features) == 1 else torch.cat(features, 1)}
        std = combined_std(stds)
        if std is not None:
            results[ENERGY_STD] = std
        return results

    def atom_energies(self, batch: Batch, edge_vectors: torch.Tensor) -> torch.Tensor:
        """(n_atoms,) atomic energies, eV, differentiable in ``edge_vectors`` (the part of
        :meth:`energy` another potential's baseline uses)."""
        return self.energy(batch, edge_vectors)[ATOM_ENERGIES]

    def forces_std(self, batch: Batch) -> torch.Tensor | None:
        """(n_atoms, 3) standard deviation of the predicted forces, eV/Å, or ``None`` when a
        term's model has no force uncertainty. Several terms add their variances (independent
        GPs; the posterior covariance between terms is neglected). Computes the feature
        derivatives of ``batch`` (about the cost of the forces themselves), so it is asked for
        separately from :meth:`forward`."""
        if not self.has_forces_std:
            return None
        self.check_numbers(batch.numbers)
        with torch.no_grad():
            vectors = batch.edge_vectors()
        stds = []
        for term in self.terms:
            edge_index, term_vectors = edges_within(term.cutoff, self.cutoff, batch.edge_index, vectors)
            features, jacobian = term.descriptor.features_and_jacobian(batch.numbers, edge_index, term_vectors)
            stds.append(term.model.forces_std(features.detach(), batch.numbers, edge_index, jacobian.detach()))
        return combined_std(stds)

    def fit(
        self,
        train_set: Dataset,
        validation: Dataset | None,
        settings: FitSettings,
        isolated_atom_energies: dict[str, float] | None = None,
        cache_dir: Path | None = None,
        warm_start: bool = False,
        term_settings: Sequence[FitSettings] | None = None,
    ) -> FitSummary:
        """Fit reference energies, feature range and the model(s) on labeled structures (on
        what is left of the labels after the baseline's, with a baseline).

        Features and derivatives are computed within ``settings.memory_gb``
        (:func:`pesmith.memory.plan_features`; several terms share it equally); a ``disk`` plan
        writes its float32 cache into ``cache_dir``, which the caller owns and removes. The
        summary's ``info["features"]`` records the plan and the featurization time (s). With
        ``warm_start`` (a potential loaded from a model file) the reference energies stay as
        they are and the model continues from its state.

        A potential of several terms is fitted jointly by the class method ``fit_terms`` of its
        models, which must all be of one class that has it (GAP: one sparse GP with the
        block-diagonal sparse set of all terms); ``term_settings`` (default: ``settings`` for
        every term) are each term's settings, e.g. its ``n_sparse``. Mixed models (say NN + GAP)
        and several NN terms are refused for now.

        Raises
        ------
        ConfigError
            ``warm_start`` with a model whose ``fit`` cannot continue from its state or with
            several terms; several terms whose models cannot be fitted together.
        """
        several = len(self.terms) > 1
        if several:
            kinds = sorted({type(term.model).__name__ for term in self.terms})
            if len(kinds) > 1:
                raise ConfigError(
                    f"the terms' models ({', '.join(kinds)}) cannot be fitted together yet: a potential of several terms"
                    " needs the same model kind (gap) in every term"
                )
            if warm_start:
                raise ConfigError("initial_model: a potential of several terms cannot continue from a saved state yet; train it from scratch")
        elif warm_start and not self.model.can_warm_start():
            raise ConfigError(f"model {type(self.model).__name__} cannot continue from a saved state (its fit takes no warm_start); train it from scratch")
        if self.baseline is not None:
            train_set, validation = self._residuals(train_set, validation)
        self.set_core(core_radii(train_set.structures, self.species) if settings.core_repulsion else {})
        if not warm_start:
            self.set_reference(reference_energies(train_set, self.species, isolated_atom_energies))
        datasets = [train_set] + ([validation] if validation is not None and len(validation) else [])
        term_budget = settings if not several else settings.model_copy(update={"memory_gb": (settings.memory_gb or default_memory_gb()) / len(self.terms)})
        started = time.perf_counter()
        plans, sets = [], []
        for t, term in enumerate(self.terms):
            plan, edges = plan_for(term.descriptor, datasets, term_budget, cache_dir)
            prefix = f"term{t}_" if several else ""
            sets.append([
                featurize_dataset(
                    term.descriptor,
                    dataset,
                    self.reference,
                    plan,
                    cache_path=Path(cache_dir) / f"{prefix}jacobian_{k}.f32" if cache_dir is not None else None,
                    edges=dataset_edges,
                    progress=settings.progress,
                )
                for k, (dataset, dataset_edges) in enumerate(zip(datasets, edges))
            ])
            plans.append(plan)
        featurization_time = time.perf_counter() - started
        check_stress_labels(sets[0][0], settings, train_set.source)
        train_features = torch.cat([term_sets[0].features for term_sets in sets], 1)  # (n_atoms, sum F_t)
        self.feature_min.copy_(train_features.min(0).values)
        self.feature_max.copy_(train_features.max(0).values)
        validations = [term_sets[1] if len(term_sets) > 1 else None for term_sets in sets]
        if several:
            models = [term.model for term in self.terms]
            summary = type(models[0]).fit_terms(models, [s[0] for s in sets], validations, settings, list(term_settings or [settings] * len(models)))
            summary.info["features"] = {"terms": [plan.as_dict() for plan in plans], "featurization_s": featurization_time}
            return summary
        extra = {"warm_start": True} if warm_start else {}
        summary = self.model.fit(sets[0][0], validations[0], settings, **extra)
        summary.info["features"] = plans[0].as_dict() | {"featurization_s": featurization_time}
        return summary

    def _residuals(self, train_set: Dataset, validation: Dataset | None) -> tuple[Dataset, Dataset | None]:
        """``train_set`` and ``validation`` less the baseline's energies, forces and stress."""
        return subtract_baseline(train_set, self.baseline), None if validation is None else subtract_baseline(validation, self.baseline)

    def predict(self, structures: Sequence[Atoms], stress: bool | None = None) -> dict[str, torch.Tensor]:
        """Energies (eV), forces (eV/Å) and, for periodic cells, stress (eV/Å^3) of ``structures``."""
        batch = build_batch(structures, self.cutoff)
        if stress is None:
            stress = bool(batch.pbc.all()) and bool((batch.volumes() > 0).all())
        return self(batch, forces=True, stress=stress)

    def out_of_range(self, features: torch.Tensor) -> tuple[int, int]:
        """(atoms, features) outside the per-feature range seen in training."""
        outside = (features < self.feature_min) | (features > self.feature_max)  # (n_atoms, F)
        return int(outside.any(1).sum()), int(outside.any(0).sum())


def add_labels(results: dict[str, torch.Tensor], batch: Batch, labels: tuple) -> None:
    """Add an external baseline's ``labels`` (energies eV, forces eV/Å, stress eV/Å^3 or None per
    structure) to a forward pass's ``results`` in place; each atom gets E / N of its structure's
    energy."""
    energies, forces, stresses = labels
    energy = torch.as_tensor(energies, dtype=DTYPE)
    results[ENERGY] = results[ENERGY] + energy
    per_atom = (energy / batch.atoms_per_structure.to(DTYPE))[batch.structure_index]
    results[ATOM_ENERGIES] = results[ATOM_ENERGIES] + per_atom
    if FORCES in results:
        results[FORCES] = results[FORCES] + torch.as_tensor(np.concatenate(forces), dtype=DTYPE)
    if STRESS in results:
        extra = torch.stack([torch.as_tensor(s if s is not None else np.zeros(6), dtype=DTYPE) for s in stresses])
        results[STRESS] = results[STRESS] + extra
