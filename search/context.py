"""What the phases of a search share: the config, the plugins, the one map, the state and its
random generator, the reference, and the files of the output folder.

A phase is a function ``run(ctx: SearchContext) -> None`` in its own module
(:mod:`pesmith.search.phases`); it reads and changes ``ctx.state`` and may save it
(``ctx.save()``) after a unit of work it must not redo after a kill. The loop
(:mod:`pesmith.search.loop`) moves from phase to phase. Only this process writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from ase import Atoms

from pesmith import ase_files
from pesmith.errors import ConfigError
from pesmith.labeling import MapFunction
from pesmith.reference import Reference
from pesmith.reference_db import ReferenceDB
from pesmith.registry import Registry
from pesmith.simulate.relax import Relaxed

from . import checkpoint
from .candidates import CandidateStore
from .config import SearchConfig
from .state import SearchState


@dataclass
class SearchContext:
    """The run-wide objects a phase may use (see the module docstring).

    ``fitness_task(model_path)`` and ``reference_task()`` make the mapped model and reference
    relaxations (hooks of :class:`pesmith.search.loop.Search` that a test may replace);
    ``resumed`` says that ``candidates.db`` may hold evaluations the checkpoint does not know.
    """

    config: SearchConfig
    registry: Registry
    config_path: Path
    map_fn: MapFunction
    echo: Callable[[str], None]
    reference: Reference
    state: SearchState
    rng: np.random.Generator
    checkpoint_path: Path
    n_workers: int
    worker_threads: int  # torch threads per worker process
    training_threads: int  # torch threads of this process while it trains
    fitness_task: Callable[[str], Callable[[Atoms], Relaxed]]
    reference_task: Callable[[], Callable[[Atoms], Relaxed]]
    resumed: bool = False

    @property
    def output(self) -> Path:
        return self.config.output

    # ----------------------------------------------------------------- state
    def save(self) -> None:
        """Replace the checkpoint with the state (and the generator's state) as it is now."""
        self.state.rng = self.rng.bit_generator.state
        checkpoint.save(self.checkpoint_path, self.state)

    def goto(self, phase: str) -> None:
        self.state.phase = phase
        self.save()

    # ----------------------------------------------------------------- the one map
    def map(self, task: Callable[[Any], Any], items: Sequence[Any], description: str) -> Iterable[tuple[int, Any]]:
        """``(index, result)`` pairs of ``task`` over ``items``, in the order they finish."""
        return self.map_fn(task, items, workers=self.n_workers, progress=self.config.progress, description=description)

    def map_ordered(self, task: Callable[[Any], Any], items: Sequence[Any], description: str) -> list[Any]:
        """The results of ``task`` over ``items``, in the order of ``items``."""
        results = dict(self.map(task, items, description))
        return [results[i] for i in range(len(items))]

    # ----------------------------------------------------------------- files
    @property
    def database(self) -> ReferenceDB:
        """``reference.db``: every reference label of the search."""
        return ReferenceDB(self.output / "reference.db", self.config.reference.kind, self.reference.get_config(), self.reference.code_version())

    @property
    def candidates(self) -> CandidateStore:
        """``candidates.db``: every GA evaluation of the search."""
        return CandidateStore(self.output / "candidates.db")

    @property
    def model_path(self) -> Path:
        """The current model file."""
        return self.output / self.state.model

    def write_structure(self, name: str, atoms: Atoms) -> str:
        """Write ``structures/<name>`` (extxyz); its path relative to the output folder."""
        folder = self.output / "structures"
        folder.mkdir(exist_ok=True)
        path = folder / name
        ase_files.write(path, atoms, format="extxyz")
        return str(path.relative_to(self.output))

    def read_structure(self, relative: str) -> Atoms:
        return ase_files.read(self.output / relative, index=-1)

    # ----------------------------------------------------------------- checks
    def require_reference_calculator(self, key: str) -> None:
        """MD driven by the reference (``key`` set to ``reference``) needs its ASE calculator."""
        if not self.reference.has_calculator():
            raise ConfigError(f"{self.config_path}: {key} 'reference' needs a reference with an ASE calculator; {self.config.reference.kind} has none")

