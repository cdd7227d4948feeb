"""The ase.db store of reference labels: one row per input structure, keyed by its hash.

A labeled row carries energy (eV), forces (eV/Å) and stress (eV/Å^3) as a single-point
calculator, so :func:`pesmith.data.read_dataset` reads it directly. Every row records
provenance in its key-value pairs:

=================  ===============================================================
``structure_hash`` sha256 of the input structure (:func:`structure_hash`)
``status``         ``"ok"``, ``"failed"`` (no labels, a ``reason``) or ``"running"``: claimed by
                   the run of ``pid`` on ``host``, being computed (no labels)
``method``         the reference ``kind`` (``xtb``, ``gpaw``, ...)
``reference_hash`` sha256 of kind + parameters: one database holds one reference's labels
``code_version``   program and version, e.g. ``tblite 0.8.0``
``wall_time``      seconds spent labeling this structure
``source``         input file, and ``source_index``: position in that file
=================  ===============================================================

and the reference parameters in ``row.data["parameters"]``. Only the parent process (rank 0)
writes; each row is written in its own transaction, so a killed run loses at most the
structures that were being computed.

Several ``pesmith label`` runs may share one database: a run claims a structure (a
``"running"`` row, :meth:`ReferenceDB.claim`) before computing it and overwrites that row with
the result, and claims are made under an exclusive ``flock`` on ``<database>.claims.lock``, so
no structure is computed twice. A claim whose process is gone (same host, pid not alive: a
killed run) is taken over by the next run; a claim from another host is always respected.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from . import ase_files
from .errors import ConfigError, DataError

OK, FAILED, RUNNING = "ok", "failed", "running"
POSITION_DECIMALS = 6  # Å; the hash ignores differences below 1e-6 Å


def structure_hash(atoms: Atoms) -> str:
    """sha256 of atomic numbers, positions (Å, rounded to 1e-6), cell (Å, rounded) and pbc."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        digest.update(np.ascontiguousarray(np.round(array, POSITION_DECIMALS) + 0.0, dtype=np.float64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def reference_hash(kind: str, parameters: dict[str, Any]) -> str:
    """sha256 of a reference's kind and parameters (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps({"kind": kind, "parameters": parameters}, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Label:
    """The outcome of labeling one structure: labels, or the reason it failed."""

    energy: float | None = None  # eV
    forces: np.ndarray | None = None  # (n_atoms, 3) eV/Å
    stress: np.ndarray | None = None  # (6,) eV/Å^3, ASE Voigt order
    reason: str | None = None  # set when the calculation failed
    wall_time: float = 0.0  # s

    @property
    def ok(self) -> bool:
        return self.reason is None


class ReferenceDB:
    """Labels of one reference in an ase.db file (created, with its tables, when first opened).

    Parameters
    ----------
    path
        The database file (``.db``).
    method, parameters, code_version
        Provenance of the reference: its ``kind``, its parameters and its program version.
    """

    def __init__(self, path: str | Path, method: str, parameters: dict[str, Any], code_version: str):
        self.path = Path(path)
        self.method = method
        self.parameters = parameters
        self.code_version = code_version
        self.reference_hash = reference_hash(method, parameters)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = ase_files.connect(self.path, type="db", append=True)
        with self._claims_lock():  # ASE creates the tables on first use: two runs starting on a new
            self._db.count()  # file at once would both create them ("table systems already exists")

    def statuses(self) -> dict[str, str]:
        """``{structure_hash: status}`` of the rows already stored.

        Raises
        ------
        ConfigError
            If the database holds labels of another reference or parameters.
        """
        statuses = {}
        try:
            rows = list(self._db.select(columns=["key_value_pairs"]))
        except Exception as exc:
            raise DataError(f"cannot read the label database {self.path}: {type(exc).__name__}: {exc}") from exc
        for row in rows:
            other = row.get("reference_hash")
            if other != self.reference_hash:
                raise ConfigError(
                    f"{self.path} holds labels from another reference (row {row.id}: method {row.get('method')!r});"
                    " label into a new database, or use the same reference settings to resume"
                )
            statuses[row.structure_hash] = row.status
        return statuses

    def delete_failed(self) -> int:
        """Delete the failed rows (to retry them); return how many."""
        ids = [row.id for row in self._db.select(status=FAILED)]
        if ids:
            self._db.delete(ids)
        return len(ids)

    def delete_source(self, source: str) -> int:
        """Delete every row written with ``source`` (e.g. by an interrupted batch that is redone); return how many."""
        ids = [row.id for row in self._db.select(source=source)]
        if ids:
            self._db.delete(ids)
        return len(ids)

    def claim(self, atoms: Atoms, source: str, source_index: int) -> int | None:
        """Claim ``atoms`` for this process: write a ``"running"`` row and return its id, or
        ``None`` when a row of it exists (labeled, failed, or claimed by a live process or by
        another host). A claim of a dead process on this host is taken over."""
        key = structure_hash(atoms)
        with self._claims_lock():
            for row in self._db.select(structure_hash=key):
                if row.status != RUNNING or owner_alive(row.get("host"), row.get("pid")):
                    return None
                self._db.delete([row.id])
            atoms = atoms.copy()
            atoms.calc = None
            pairs = self._provenance(key, RUNNING, 0.0, source, source_index)
            pairs.update(pid=os.getpid(), host=socket.gethostname())
            with self._db:
                return self._db.write(atoms, key_value_pairs=pairs, data={"parameters": self.parameters})

    def release(self, row_ids: Iterable[int]) -> None:
        """Delete this process's claims ``row_ids`` that are still ``"running"`` (not computed)."""
        with self._claims_lock():
            ids = [i for i in row_ids if self._db.get(id=i).get("status") == RUNNING]
            if ids:
                self._db.delete(ids)

    @contextmanager
    def _claims_lock(self) -> Iterator[None]:
        with open(self.path.with_name(self.path.name + ".claims.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released on close, also when the process dies
            yield

    def _provenance(self, key: str, status: str, wall_time: float, source: str, source_index: int) -> dict[str, Any]:
        return {
            "structure_hash": key,
            "status": status,
            "method": self.method,
            "reference_hash": self.reference_hash,
            "code_version": self.code_version,
            "wall_time": float(wall_time),
            "source": source,
            "source_index": int(source_index),
        }

    def write(self, atoms: Atoms, label: Label, source: str, source_index: int, row_id: int | None = None) -> int:
        """Store one structure with its labels (or its failure) in one transaction, over the
        claimed row ``row_id`` if given; return the row id."""
        atoms = atoms.copy()
        atoms.calc = None
        pairs = self._provenance(structure_hash(atoms), OK if label.ok else FAILED, label.wall_time, source, source_index)
        if label.ok:
            results = {"energy": label.energy, "forces": label.forces}
            if label.stress is not None:
                results["stress"] = label.stress
            atoms.calc = SinglePointCalculator(atoms, **results)
        else:
            pairs["reason"] = label.reason
        with self._db:
            return self._db.write(atoms, key_value_pairs=pairs, data={"parameters": self.parameters}, id=row_id)


def owner_alive(host: str | None, pid: int | None) -> bool:
    """Whether the process ``pid`` of a claim may still run: always for another host."""
    if host != socket.gethostname() or pid is None:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
