"""``candidates.db``, the one record of every GA evaluation of a search, and its one owner.

A row is written once, as the evaluation returns, with what the GA knew when it asked for it
(step, generation, genome, operator, parents) and the model's result (energy in eV or the reason
it failed, the model's hash, the relaxation). Each write is its own transaction, so a killed run
keeps every finished evaluation and a resumed one reads them back instead of evaluating again.
The reference's verdict on a confirmed candidate is added to its row later
(:meth:`CandidateStore.record_reference`). Only rank 0 (this process) opens the database.
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms

from pesmith import ase_files
from pesmith.simulate.relax import Relaxed

from .ga import Evaluation, Outcome


class CandidateStore:
    """Reads and writes of ``candidates.db`` at ``path`` (an ase.db file).

    Parameters
    ----------
    path
        The database file (created at the first write).
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self):
        return ase_files.connect(self.path, type="db", append=True)

    def evaluated(self, step: int) -> dict[str, Outcome]:
        """The outcomes already stored for ``step`` (1-based), by genome hash."""
        return {row.genome_hash: _outcome(row) for row in self._connect().select(step=step)}

    def add_evaluation(self, step: int, evaluation: Evaluation, relaxed: Relaxed, asked: Atoms, model_hash: str, relax: str) -> Outcome:
        """Write the model's result for ``evaluation`` of ``step`` (1-based): the relaxed
        structure, or the structure ``asked`` when the relaxation failed; return its outcome."""
        pairs = {
            "step": step,
            "generation": evaluation.generation,
            "genome_hash": evaluation.key,
            "model_hash": model_hash,
            "relax": relax,
            "status": "ok" if relaxed.ok else "failed",
            "wall_time": float(relaxed.wall_time),
            "extrapolation": bool(relaxed.extrapolation),
            "operator": evaluation.operator,
            "parents": " ".join(evaluation.parents) or "none",
        }
        if relaxed.ok:
            pairs["model_energy"] = float(relaxed.energy)
            if relaxed.energy_std is not None:
                pairs["model_energy_std"] = float(relaxed.energy_std)
            atoms = relaxed.atoms
        else:
            pairs["reason"] = relaxed.reason.splitlines()[0][:300]
            atoms = asked
        db = self._connect()
        with db:
            row_id = db.write(atoms, key_value_pairs=pairs, data={"genome": list(evaluation.genome)})
        return _outcome(db.get(id=row_id))

    def atoms(self, row_id: int) -> Atoms:
        """The structure of a row, without a calculator."""
        atoms = self._connect().get(id=row_id).toatoms()
        atoms.calc = None
        return atoms

    def n_atoms(self, row_id: int) -> int:
        return self._connect().get(id=row_id).natoms

    def record_reference(self, row_id: int, method: str, energy: float | None, failure: str | None) -> None:
        """Add the reference's verdict to a candidate's row: ``confirmed`` with its energy (eV),
        or the first line of why the reference relaxation failed."""
        pairs = {"confirmed": failure is None, "reference_method": method}
        if failure is None:
            pairs["reference_energy"] = float(energy)
        else:
            pairs["reference_failure"] = failure.splitlines()[0][:200]
        db = self._connect()
        with db:
            db.update(row_id, **pairs)


def _outcome(row) -> Outcome:
    if row.get("status") == "ok":
        return Outcome(energy=float(row.model_energy), energy_std=row.get("model_energy_std"), payload={"row": row.id})
    return Outcome(energy=None, reason=row.get("reason", "failed"), payload={"row": row.id})
