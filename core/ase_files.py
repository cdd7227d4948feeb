"""ase.db and ase.io calls that are safe under MPI: the only place pesmith calls them.

Under ``mpiexec ... python -m mpi4py.futures`` (or any run where mpi4py is imported) ASE's
``ase.parallel.world`` is ``MPI.COMM_WORLD``. ``ase.io.read``/``ase.io.write`` and the methods
of an ``ase.db`` connection (``write``, ``select``, ``reserve``, ``update``, ...) are wrapped in
``ase.parallel.parallel_function``/``parallel_generator``: rank 0 does the work and then
broadcasts every result over ``COMM_WORLD``, expecting all ranks to be in the same call. In
pesmith only rank 0 reads and writes files; the worker ranks sit in mpi4py.futures' task loop on
another communicator and never join the broadcast. Small broadcasts go out eagerly and are left
as unmatched messages; one above MPI's eager limit (a pickled 500-atom structure, a row with
forces) blocks rank 0 forever. Every call here turns that broadcast off (``serial=True`` for a
database, ``parallel=False`` for ase.io), so each process reads and writes only for itself.

Databases are also opened without ASE's lock file (``use_lock_file=False``): ASE takes it by
creating ``<name>.lock`` and deletes it after the write, so a process killed during a write
(SIGKILL, a node failure) leaves it behind and every later connection waits for it forever (a
resumed search hung so). SQLite serialises concurrent writers itself, and the claims of
:class:`pesmith.reference_db.ReferenceDB` take an ``flock``, which dies with its process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import ase.db
import ase.io
from ase import Atoms
from ase.db.core import Database


def connect(path: str | Path, **kwargs: Any) -> Database:
    """``ase.db.connect(path, serial=True, use_lock_file=False, **kwargs)``: a connection that
    never broadcasts and never waits for a lock file left by a killed process."""
    return ase.db.connect(str(path), serial=True, use_lock_file=False, **kwargs)


def read(path: str | Path, index: Any = ":", **kwargs: Any) -> Atoms | list[Atoms]:
    """``ase.io.read(path, index, parallel=False, **kwargs)`` (default: every structure, a list)."""
    return ase.io.read(str(path), index=index, parallel=False, **kwargs)


def write(path: str | Path, images: Atoms | Sequence[Atoms], **kwargs: Any) -> None:
    """``ase.io.write(path, images, parallel=False, **kwargs)``: written by this process alone."""
    ase.io.write(str(path), images, parallel=False, **kwargs)
