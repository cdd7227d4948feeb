"""``pesmith label``: label structures with a reference, in parallel, into a resumable ase.db.

Each structure runs in a worker (a local process or an MPI rank, through the ``map`` the caller
passes: :func:`pesmith.parallel.parallel_map`). With a ``time_limit`` the calculation
runs in a child process of the worker that is killed when the limit passes, because a
calculation inside a C or Fortran library cannot be interrupted in-thread. Failures (an
exception, no SCF convergence, the time limit) come back as failed labels; the parent records
them and goes on. Structures whose hash is already in the database are skipped, so rerunning
a killed run resumes it; each structure is claimed in the database before it is computed, so
two runs on one database never compute a structure twice (:meth:`ReferenceDB.claim`).
"""

from __future__ import annotations

import time
from concurrent.futures.process import BrokenProcessPool
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

import yaml
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field

from . import ase_files, data
from .atomic_io import write_text_atomic
from .config import PluginSettings, check_plugin_options, parse_config, resolve_path
from .errors import CalculationFailed, ConfigError, DataError, LabelingFailed, PesmithError
from .parallel import call_with_time_limit
from .reference import Reference
from .reference_db import RUNNING, Label, ReferenceDB, structure_hash
from .registry import Registry
from .structures import has_full_cell

MapFunction = Callable[..., Iterator[tuple[int, Label]]]
A = TypeVar("A")
T = TypeVar("T")


class LabelConfig(BaseModel):
    """A ``pesmith label`` configuration."""

    model_config = ConfigDict(extra="forbid")

    structures: Path = Field(description="structures to label: extxyz (or anything ase.io reads) or ase.db")
    database: Path = Field(description="ase.db file the labels go to (created, or resumed)")
    reference: PluginSettings
    workers: int = Field(1, ge=1, description="local worker processes (ignored under MPI: the ranks are the workers)")
    time_limit: float | None = Field(None, gt=0, description="seconds per structure; beyond it the structure fails")
    retry_failed: bool = Field(False, description="relabel structures that failed in an earlier run")
    progress: bool = Field(True, description="show a progress bar")


@dataclass
class LabelSummary:
    """Counts of one ``pesmith label`` run."""

    database: Path
    n_structures: int
    n_skipped: int  # already in the database
    n_busy: int  # claimed by another run that is still going
    n_labeled: int
    n_failed: int
    wall_time: float  # s
    failures: dict[str, int] = field(default_factory=dict)  # first line of each reason -> how many of this run

    @property
    def all_failed(self) -> bool:
        """Every structure this run computed failed (and there was at least one)."""
        return self.n_failed > 0 and self.n_labeled == 0


def load_label_config(path: str | Path, registry: Registry) -> LabelConfig:
    """Read and validate a label config; relative paths resolve against its folder."""
    path = Path(path)
    config = parse_config(path, LabelConfig)
    base = path.resolve().parent
    config.structures = resolve_path(base, config.structures)
    config.database = resolve_path(base, config.database)
    check_plugin_options(path, "reference", config.reference, registry, implicit=())
    return config


def build_reference(settings: PluginSettings, registry: Registry, where: str) -> Reference:
    """Instantiate the reference plugin named in ``settings``; ``where`` names the config."""
    cls = registry.get("reference", settings.kind)
    try:
        return cls(**settings.options)
    except TypeError as exc:
        raise ConfigError(f"{where}: invalid options for reference kind '{settings.kind}': {exc}") from exc
    except PesmithError as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def read_structures(path: Path) -> list[Atoms]:
    """Structures to label (any labels in the file dropped) from an extxyz file or an ase.db."""
    structures = data.read_structures(path, what="structure file")
    for atoms in structures:
        atoms.calc = None
    return structures


def check_cells(structures: list[Atoms], reference: Reference, kind: str, source: Path) -> None:
    """A periodic reference needs every structure to have a 3D cell and ``pbc=True``."""
    if not reference.periodic:
        return
    for index, atoms in enumerate(structures):
        if not has_full_cell(atoms):
            raise DataError(
                f"{source}, structure {index} ({atoms.get_chemical_formula()}): no 3D periodic cell"
                f" (pbc={atoms.pbc.tolist()}, cell lengths {atoms.cell.lengths().round(3).tolist()} Å);"
                f" the {kind} reference is periodic: give it a cell and pbc=True (a cluster goes in a vacuum box)"
            )


def label_one(reference: Reference, time_limit: float | None, atoms: Atoms) -> Label:
    """Label one structure; any failure becomes a :class:`Label` with a ``reason``."""
    done = attempt(reference.label, atoms, reference.prepare, time_limit)
    if done.reason is not None:
        return Label(reason=done.reason, wall_time=done.wall_time)
    energy, forces, stress = done.value
    return Label(energy=float(energy), forces=forces, stress=stress, wall_time=done.wall_time)


@dataclass
class Attempt(Generic[T]):
    """What one calculation returned (``value``), or the ``reason`` it failed; ``wall_time`` in s."""

    value: T | None = None
    reason: str | None = None
    wall_time: float = 0.0


def attempt(
    compute: Callable[[A], T], argument: A, prepare: Callable[[], object] | None = None, time_limit: float | None = None
) -> Attempt[T]:
    """``compute(argument)`` for one structure, its failure turned into a reason (never raised).

    Parameters
    ----------
    compute
        The calculation (a label, a relaxation, an MD run).
    argument
        What it is computed for, usually an ``Atoms``.
    prepare
        Called first, in this worker, so a time-limited forked child inherits what it loaded
        (e.g. :meth:`Reference.prepare`); its failure is a failure of the attempt.
    time_limit
        s; ``compute`` then runs in a forked child killed after it (:func:`pesmith.parallel.call_with_time_limit`).

    Returns
    -------
    Attempt
        The value, or the reason: a :class:`CalculationFailed`'s message, or the type and message
        of any other exception (a crash of the calculator, model or reference must not end a run).
    """
    started = time.perf_counter()
    try:
        if prepare is not None:
            prepare()
        value = compute(argument) if time_limit is None else call_with_time_limit(compute, argument, time_limit)
    except CalculationFailed as exc:
        return Attempt(reason=str(exc), wall_time=time.perf_counter() - started)
    except Exception as exc:  # a crash must not end the run
        return Attempt(reason=f"{type(exc).__name__}: {exc}", wall_time=time.perf_counter() - started)
    return Attempt(value=value, wall_time=time.perf_counter() - started)


def label_structures(config: LabelConfig, registry: Registry, map_fn: MapFunction, where: str = "label config") -> LabelSummary:
    """Label every structure of ``config.structures`` not yet in ``config.database``.

    ``map_fn(fn, items, workers=, progress=, description=)`` yields ``(index, fn(item))``
    (see :func:`pesmith.parallel.parallel_map`); only this process writes the database.
    """
    started = time.perf_counter()
    reference = build_reference(config.reference, registry, where)
    structures = read_structures(config.structures)
    check_cells(structures, reference, config.reference.kind, config.structures)
    store = ReferenceDB(config.database, config.reference.kind, reference.get_config(), reference.code_version())
    if config.retry_failed:
        store.delete_failed()
    seen = {key for key, status in store.statuses().items() if status != RUNNING}
    pending = []
    for index, atoms in enumerate(structures):
        key = structure_hash(atoms)
        if key not in seen:  # duplicates in the input are labeled once
            seen.add(key)
            pending.append(index)
    write_resolved_config(config, store)
    claims = {}  # index -> row id: claimed before computing, so concurrent runs never compute one twice
    for index in pending:
        row_id = store.claim(structures[index], source=str(config.structures), source_index=index)
        if row_id is not None:
            claims[index] = row_id
    n_busy = len(pending) - len(claims)
    pending = list(claims)  # claims shrinks as results are written
    failures: Counter[str] = Counter()
    results = map_fn(
        partial(label_one, reference, config.time_limit),
        (structures[i] for i in pending),
        workers=config.workers,
        progress=config.progress,
        description=f"labeling with {config.reference.kind}",
    )
    try:
        for position, label in results:
            index = pending[position]
            store.write(structures[index], label, source=str(config.structures), source_index=index, row_id=claims.pop(index))
            if not label.ok:
                failures[label.reason.splitlines()[0] if label.reason else "no reason given"] += 1
    except BrokenProcessPool as exc:
        raise LabelingFailed(
            f"a worker process died ({exc}); the labels so far are in {config.database}. Set time_limit so that"
            " each structure runs in its own process (a crash then fails only that structure) and rerun"
        ) from exc
    finally:
        store.release(claims.values())  # what was claimed but not written: free for the next run
    n_failed = sum(failures.values())
    return LabelSummary(
        database=config.database,
        n_structures=len(structures),
        n_skipped=len(structures) - len(pending) - n_busy,
        n_busy=n_busy,
        n_labeled=len(pending) - n_failed,
        n_failed=n_failed,
        wall_time=time.perf_counter() - started,
        failures=dict(failures.most_common()),
    )


def write_resolved_config(config: LabelConfig, store: ReferenceDB) -> None:
    """Write ``<database stem>_label_config.yaml``: the config with the reference's full parameters
    and code version, as the database records them."""
    resolved = config.model_dump(mode="json")
    resolved["reference"] = {"kind": store.method, **store.parameters}
    resolved["code_version"] = store.code_version
    path = store.path.with_name(store.path.stem + "_label_config.yaml")
    write_text_atomic(path, yaml.safe_dump(resolved, sort_keys=False))
