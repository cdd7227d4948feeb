"""Accuracy of a potential on labeled data: RMSE/MAE of energies, forces and stress, parity data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Dataset
from .features import EV_PER_A3_IN_GPA
from .potential import ENERGY, FORCES, STRESS, Potential
from .structures import has_full_cell


@dataclass
class Predictions:
    """Reference and predicted labels of a dataset, for metrics and parity plots."""

    energy_per_atom_ref: np.ndarray  # (n_structures,) eV/atom
    energy_per_atom_pred: np.ndarray
    forces_ref: np.ndarray  # (n_atoms, 3) eV/Å
    forces_pred: np.ndarray
    stress_ref: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))  # (n_labeled, 6) eV/Å^3
    stress_pred: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))

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


def predict_dataset(
    potential: Potential, dataset: Dataset, chunk_atoms: int = 4000, progress: bool = False, description: str = "predicting"
) -> Predictions:
    """Predict every structure of ``dataset`` in chunks of about ``chunk_atoms`` atoms; with
    ``progress`` a bar on stderr (``description``, counting structures) shows the chunks done.

    Raises
    ------
    DataError
        Before predicting anything, if ``dataset`` holds an element ``potential`` has no species for.
    """
    numbers = {int(z) for atoms in dataset.structures for z in np.unique(atoms.numbers)}
    potential.descriptor.check_numbers(torch.tensor(sorted(numbers), dtype=torch.int64))  # before any work
    energies, forces, stresses = [], [], []
    with tqdm(total=len(dataset), desc=description, unit="structure", disable=not progress, leave=False) as bar:
        for chunk in _chunks(dataset, chunk_atoms):
            results = potential.predict(chunk, stress=True)  # stress of cells without a 3D cell is dropped below
            energies.append(results[ENERGY].numpy())
            forces.append(results[FORCES].numpy())
            stresses.append(results[STRESS].numpy())
            bar.update(len(chunk))
    labeled = [s is not None and has_full_cell(a) for a, s in zip(dataset.structures, dataset.stresses)]
    sizes = np.array([len(a) for a in dataset.structures])
    return Predictions(
        energy_per_atom_ref=dataset.energies / sizes,
        energy_per_atom_pred=np.concatenate(energies) / sizes,
        forces_ref=np.concatenate(dataset.forces),
        forces_pred=np.concatenate(forces),
        stress_ref=np.array([s for s, has in zip(dataset.stresses, labeled) if has]).reshape(-1, 6),
        stress_pred=np.concatenate(stresses)[labeled].reshape(-1, 6),
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
