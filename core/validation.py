"""Accuracy of a potential on labeled data: RMSE/MAE of energies, forces and stress (overall, per
``config_type`` and, for forces, per element), parity data, and how many atoms the potential saw
outside the descriptor range of its training data (extrapolation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from .data import Dataset
from .loss import EV_PER_A3_IN_GPA
from .potential import ENERGY, ENERGY_STD, FEATURES, FORCES, STRESS, Potential
from .structures import build_batch, has_full_cell


@dataclass
class Predictions:
    """Reference and predicted labels of a dataset, for metrics and parity plots."""

    energy_per_atom_ref: np.ndarray  # (n_structures,) eV/atom
    energy_per_atom_pred: np.ndarray
    forces_ref: np.ndarray  # (n_atoms, 3) eV/Å
    forces_pred: np.ndarray
    stress_ref: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))  # (n_labeled, 6) eV/Å^3
    stress_pred: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (n_atoms,) atomic numbers
    atom_structure: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (n_atoms,) structure of each atom
    stress_structure: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (n_labeled,) structure of each stress row
    config_types: list[str] = field(default_factory=list)  # (n_structures,) ``config_type`` ("-" where none)
    atoms_outside: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (n_atoms,) any feature outside the training range
    features_outside: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (F,) atoms with that feature outside it
    energy_std: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_structures,) eV/atom, a model with an uncertainty only
    forces_std: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (n_atoms, 3) eV/Å, likewise

    def metrics(self) -> dict[str, float]:
        """n_structures, energy RMSE/MAE (meV/atom), force RMSE/MAE (eV/Å, over components) and,
        when periodic structures carry stress labels, stress RMSE/MAE (GPa, over components)."""
        de = self.energy_per_atom_pred - self.energy_per_atom_ref
        df = self.forces_pred - self.forces_ref
        metrics = {
            "n_structures": int(de.shape[0]),
            "energy_rmse_meV_per_atom": float(1000 * np.sqrt(np.mean(de**2))),
            "energy_mae_meV_per_atom": float(1000 * np.mean(np.abs(de))),
            "force_rmse_eV_per_A": float(np.sqrt(np.mean(df**2))),
            "force_mae_eV_per_A": float(np.mean(np.abs(df))),
        }
        if len(self.stress_ref):
            ds = EV_PER_A3_IN_GPA * (self.stress_pred - self.stress_ref)
            metrics["stress_rmse_GPa"] = float(np.sqrt(np.mean(ds**2)))
            metrics["stress_mae_GPa"] = float(np.mean(np.abs(ds)))
        return metrics

    def subset(self, structures: np.ndarray) -> "Predictions":
        """The predictions of the structures where the boolean mask ``structures`` is true."""
        keep = np.flatnonzero(structures)
        renumber = np.full(len(structures), -1)
        renumber[keep] = np.arange(len(keep))
        atoms = np.isin(self.atom_structure, keep)
        stress = np.isin(self.stress_structure, keep)
        return Predictions(
            energy_per_atom_ref=self.energy_per_atom_ref[keep],
            energy_per_atom_pred=self.energy_per_atom_pred[keep],
            forces_ref=self.forces_ref[atoms],
            forces_pred=self.forces_pred[atoms],
            stress_ref=self.stress_ref[stress],
            stress_pred=self.stress_pred[stress],
            numbers=self.numbers[atoms],
            atom_structure=renumber[self.atom_structure[atoms]],
            stress_structure=renumber[self.stress_structure[stress]],
            config_types=[self.config_types[i] for i in keep],
            atoms_outside=self.atoms_outside[atoms] if len(self.atoms_outside) else self.atoms_outside,
            features_outside=self.features_outside,
            energy_std=self.energy_std[keep] if len(self.energy_std) else self.energy_std,
            forces_std=self.forces_std[atoms] if len(self.forces_std) else self.forces_std,
        )

    def metrics_per_config_type(self) -> dict[str, dict[str, float]]:
        """:meth:`metrics` of the structures of each ``config_type`` ("-": none given)."""
        return self.metrics_per_group(self.config_types)

    def metrics_per_group(self, labels: Sequence[str]) -> dict[str, dict[str, float]]:
        """:meth:`metrics` of the structures of each label, ``labels`` giving one per structure
        (e.g. its config_type or chemical system), in sorted label order."""
        groups = np.array(labels)
        return {name: self.subset(groups == name).metrics() for name in sorted(set(labels))}

    def force_metrics_per_element(self) -> dict[str, dict[str, float]]:
        """Force RMSE and MAE (eV/Å, over components) on the atoms of each element, and their count."""
        out = {}
        for z in sorted(set(self.numbers.tolist())):
            df = self.forces_pred[self.numbers == z] - self.forces_ref[self.numbers == z]
            out[chemical_symbols[z]] = {
                "n_atoms": int(len(df)),
                "force_rmse_eV_per_A": float(np.sqrt(np.mean(df**2))),
                "force_mae_eV_per_A": float(np.mean(np.abs(df))),
            }
        return out

    def uncertainty(self) -> dict[str, float]:
        """How well the model's own uncertainty tracks its errors (models that give one): the
        Spearman rank correlation between predicted spread and true error, per structure for
        energies and per atom for forces (vector norms), and the 1-sigma coverage (the share of
        energies, and of force components, whose error is within one predicted standard deviation;
        0.68 for calibrated Gaussian errors)."""
        from scipy.stats import spearmanr

        out: dict[str, float] = {}
        if len(self.energy_std):
            error = np.abs(self.energy_per_atom_pred - self.energy_per_atom_ref)
            out["energy_spearman"] = float(spearmanr(self.energy_std, error)[0]) if len(error) > 2 else float("nan")
            out["energy_coverage_1sigma"] = float(np.mean(error <= self.energy_std))
        if len(self.forces_std):
            error = self.forces_pred - self.forces_ref
            error_norms = np.linalg.norm(error, axis=1)
            out["force_spearman"] = float(spearmanr(np.linalg.norm(self.forces_std, axis=1), error_norms)[0])
            # a naive proxy to beat: larger forces tend to have larger errors
            out["force_spearman_of_reference_norm"] = float(spearmanr(np.linalg.norm(self.forces_ref, axis=1), error_norms)[0])
            out["force_coverage_1sigma"] = float(np.mean(np.abs(error) <= self.forces_std))
        return out

    def uncertainty_per_config_type(self) -> dict[str, dict[str, float]]:
        """:meth:`uncertainty` within the structures of each ``config_type`` ("-": none given), so
        that a correlation is not only the one between kinds of structures; empty without an
        uncertainty."""
        if not (len(self.energy_std) or len(self.forces_std)):
            return {}
        types = np.array(self.config_types)
        return {name: self.subset(types == name).uncertainty() for name in sorted(set(self.config_types))}

    def extrapolation(self) -> dict[str, float]:
        """Atoms with at least one descriptor feature outside the range of the training data: their
        count and fraction, overall and per element, and how many features were ever outside."""
        if not len(self.atoms_outside):
            return {}
        out = {"n_atoms": int(len(self.atoms_outside)), "atoms_outside": int(self.atoms_outside.sum()),
               "fraction_outside": float(self.atoms_outside.mean()), "features_outside": int((self.features_outside > 0).sum()),
               "n_features": int(len(self.features_outside))}
        for z in sorted(set(self.numbers.tolist())):
            out[f"fraction_outside_{chemical_symbols[z]}"] = float(self.atoms_outside[self.numbers == z].mean())
        return out


def predict_dataset(
    potential: Potential,
    dataset: Dataset,
    chunk_atoms: int = 4000,
    progress: bool = False,
    description: str = "predicting",
    uncertainty: bool = False,
) -> Predictions:
    """Predict every structure of ``dataset`` in chunks of about ``chunk_atoms`` atoms; with
    ``progress`` a bar on stderr (``description``, counting structures) shows the chunks done.
    With ``uncertainty``, also the model's energy and force standard deviations where it gives
    them (a committee, a GAP; the forces' costs about a second evaluation with derivatives).

    Raises
    ------
    DataError
        Before predicting anything, if ``dataset`` holds an element ``potential`` has no species for.
    """
    numbers = {int(z) for atoms in dataset.structures for z in np.unique(atoms.numbers)}
    potential.check_numbers(torch.tensor(sorted(numbers), dtype=torch.int64))  # before any work
    energies, forces, stresses, outside, energy_std, forces_std = [], [], [], [], [], []
    features_outside = np.zeros(potential.n_features, dtype=int)
    with tqdm(total=len(dataset), desc=description, unit="structure", disable=not progress, leave=False) as bar:
        for chunk in _chunks(dataset, chunk_atoms):
            batch = build_batch(chunk, potential.cutoff)
            results = potential(batch, forces=True, stress=True)  # stress of cells without a 3D cell is dropped below
            energies.append(results[ENERGY].numpy())
            forces.append(results[FORCES].numpy())
            stresses.append(results[STRESS].numpy())
            beyond = ((results[FEATURES] < potential.feature_min) | (results[FEATURES] > potential.feature_max)).numpy()
            outside.append(beyond.any(1))
            features_outside += beyond.sum(0)
            if uncertainty and ENERGY_STD in results:
                energy_std.append(results[ENERGY_STD].numpy())
            if uncertainty and potential.has_forces_std:
                forces_std.append(potential.forces_std(batch).numpy())
            bar.update(len(chunk))
    labeled = np.array([s is not None and has_full_cell(a) for a, s in zip(dataset.structures, dataset.stresses)], dtype=bool)
    sizes = np.array([len(a) for a in dataset.structures])
    return Predictions(
        energy_per_atom_ref=dataset.energies / sizes,
        energy_per_atom_pred=np.concatenate(energies) / sizes,
        forces_ref=np.concatenate(dataset.forces),
        forces_pred=np.concatenate(forces),
        stress_ref=np.array([s for s, has in zip(dataset.stresses, labeled) if has]).reshape(-1, 6),
        stress_pred=np.concatenate(stresses)[labeled].reshape(-1, 6),
        numbers=np.concatenate([a.numbers for a in dataset.structures]),
        atom_structure=np.repeat(np.arange(len(sizes)), sizes),
        stress_structure=np.flatnonzero(labeled),
        config_types=[t if t is not None else "-" for t in dataset.config_types],
        atoms_outside=np.concatenate(outside),
        features_outside=features_outside,
        energy_std=np.concatenate(energy_std) / sizes if energy_std else np.zeros(0),
        forces_std=np.concatenate(forces_std) if forces_std else np.zeros((0, 3)),
    )


def _chunks(dataset: Dataset, chunk_atoms: int) -> Iterator[list]:
    chunk, size = [], 0
    for atoms in dataset.structures:
        chunk.append(atoms)
        size += len(atoms)
        if size >= chunk_atoms:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
