"""Reference labels of the search: relaxations with the reference written to ``reference.db``
(final structure and frames), and the current model's error on new labels (the learning curve)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from pesmith import ase_files
from pesmith.data import Dataset
from pesmith.reference_db import Label
from pesmith.simulate.relax import Relaxed

from .context import SearchContext


def reference_relax(ctx: SearchContext, structures: list[Atoms], description: str, source: str) -> list[Relaxed]:
    """Relax ``structures`` with the reference over the map; the labels of each successful one
    go to ``reference.db`` as ``source`` with its index. Results in the order of ``structures``."""
    out = ctx.map_ordered(ctx.reference_task(), structures, description)
    for index, relaxed in enumerate(out):
        if relaxed.ok:
            store_labels(ctx, relaxed, source, index)
    return out


def store_labels(ctx: SearchContext, relaxed: Relaxed, source: str, index: int) -> list[int]:
    """Write the frames and the final structure of a reference relaxation to ``reference.db``;
    their row ids."""
    database = ctx.database
    rows = []
    for atoms, energy, forces, stress in [*relaxed.frames, (relaxed.atoms, relaxed.energy, relaxed.forces, relaxed.stress)]:
        rows.append(database.write(atoms, Label(energy=energy, forces=forces, stress=stress, wall_time=relaxed.wall_time), source=source, source_index=index))
    return rows


def model_errors(ctx: SearchContext, label_rows: list[int]) -> tuple[float | None, float | None]:
    """Energy (meV/atom) and force (eV/Å) RMSE of the current model on these rows of
    ``reference.db`` (``None`` without rows)."""
    if not label_rows:
        return None, None
    from pesmith.model_file import load_potential
    from pesmith.validation import predict_dataset

    db = ase_files.connect(ctx.output / "reference.db")
    structures = [db.get(id=r).toatoms() for r in label_rows]
    dataset = Dataset(
        structures=structures,
        energies=np.array([a.get_potential_energy() for a in structures]),
        forces=[a.get_forces() for a in structures],
        stresses=[None for _ in structures],
    )
    potential, _ = load_potential(ctx.model_path, ctx.registry)
    metrics = predict_dataset(potential, dataset).metrics()
    return metrics["energy_rmse_meV_per_atom"], metrics["force_rmse_eV_per_A"]


def failed_labels_last(reference_energy: float | None, then: Any) -> tuple[bool, float, Any]:
    """Sort key of a screened candidate: by its reference energy (eV), the ones whose label
    failed (``None``) after every labeled one, ties by ``then`` (its model energy)."""
    return reference_energy is None, reference_energy or 0.0, then
