"""``pesmith search``: the delithiation loop of Artrith, Urban & Ceder, J. Chem. Phys. 148, 241711 (2018).

1. *initial*: label the initial training set with the reference (the generate recipe) into
   ``<output>/reference.db``; relax the hull crystals (bcc Li, diamond Si, compounds) with the
   reference.
2. *train*: fit the MLP on every label of the database (``models/model_<k>.pt``).
3. *start*: relax the start structure (amorphous, at the path's first composition) with the
   reference.
4. for each step ``x_k -> x_(k+1)`` of the path: *ga*: a DEAP GA chooses which Li to remove,
   fitness = MLP energy after a relaxation; *confirm*: the lowest unique candidates are relaxed
   with the reference, their final structures and relaxation frames labeled into the database;
   the model's error on them is the learning curve; the lowest becomes the next start;
   *explore* (optional, ``explore.frames``): MD from the confirmed structures, frames labeled
   with the reference (:mod:`pesmith.search.explore`); *train* again.
5. *hull*: formation energies, convex hull, voltage profile, plots and tables.

This module is the phase order; each phase is a module of :mod:`pesmith.search.phases` with
``run(ctx)``, and the phases share a :class:`~pesmith.search.context.SearchContext`. Every model
evaluation and reference relaxation goes through one map (MPI ranks or local processes); only
this process writes files. The checkpoint (``checkpoint.json``, a
:class:`~pesmith.search.state.SearchState`) is replaced after every phase, every generation and
every confirmed candidate; every GA evaluation is also a row of ``candidates.db``
(:class:`~pesmith.search.candidates.CandidateStore`) as soon as it returns, so a resumed run
evaluates nothing twice and redoes no finished reference calculation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import Atoms

from pesmith import ase_files
from pesmith.errors import ConfigError
from pesmith.labeling import MapFunction, build_reference
from pesmith.parallel import mpi_workers, parallel_map, threads_per_worker
from pesmith.registry import Registry
from pesmith.simulate.relax import Relaxed

from . import checkpoint, status
from .config import SearchConfig
from .context import SearchContext
from .ga import GAState
from .phases import anneal, baseline, confirm, explore, ga, hull, initial, start, train
from .relaxation import relax_with_model, relax_with_reference
from .state import PHASES, SearchState, StepRecord

__all__ = ["PHASES", "Search", "SearchResult", "StepRecord"]

log = logging.getLogger(__name__)

RUN = {
    "initial": initial.run, "train": train.run, "start": start.run, "ga": ga.run, "anneal": anneal.run, "confirm": confirm.run,
    "baseline": baseline.run, "explore": explore.run, "hull": hull.run,
}


@dataclass
class SearchResult:
    """The outcome of a search: per-step records, the hull and voltage tables, files written."""

    steps: list[StepRecord]
    hull: list[dict[str, Any]]
    voltages: list[dict[str, float]]  # of the crystalline hull
    amorphous_voltages: list[dict[str, float]] = field(default_factory=list)  # of the search's amorphous hull
    search_vs_baseline: list[dict[str, Any]] = field(default_factory=list)  # per composition, lowest E_f of each
    models: list[dict[str, Any]] = field(default_factory=list)  # per training: file, validation and holdout metrics
    reference_truth: dict[str, float] | None = None  # the reference's own force errors on the holdout_truth frames
    files: dict[str, Path] = field(default_factory=dict)


class Search:
    """One ``pesmith search`` run in ``config.output``.

    Parameters
    ----------
    config, registry
        The validated config and the plugin registry.
    config_path
        The config file (named in errors and used to resolve the generate recipe).
    map_fn
        The one map (default :func:`pesmith.parallel.parallel_map`).
    echo
        Receives one line per stage for the user (default: the logger).
    """

    def __init__(
        self,
        config: SearchConfig,
        registry: Registry,
        config_path: Path,
        map_fn: MapFunction = parallel_map,
        echo: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.registry = registry
        self.config_path = Path(config_path)
        self.map_fn = map_fn
        self.echo = echo or log.info
        self.output = config.output
        self.checkpoint_path = self.output / "checkpoint.json"
        self.config_hash = checkpoint.config_hash(config.model_dump(mode="json"))
        self.reference = build_reference(config.reference, registry, str(config_path))
        self.n_workers = mpi_workers() or config.workers
        self.worker_threads = threads_per_worker(self.n_workers) if not mpi_workers() else 1
        # rank 0 trains while the workers wait: it gets the cores its node does not give to other ranks
        self.training_threads = threads_per_worker(mpi_workers() + 1)

    def run(self, resume: bool = False) -> SearchResult:
        """Run (or, with ``resume``, continue) the search to the end; return its result."""
        restarted_ga = False
        if resume:
            state, changed = checkpoint.resume(self.checkpoint_path, self.config.model_dump(mode="json"), self.config_path)
            self.echo(f"resuming {self.output}: {status.where(state)}")
            if changed:
                ga_before = state.ga
                self.echo(f"config changed since the checkpoint: {', '.join(changed)}; {self._continue_changed(state, changed)}")
                restarted_ga = state.ga is not ga_before
            checkpoint.save(self.checkpoint_path, state)
        else:
            if self.checkpoint_path.exists():
                raise ConfigError(
                    f"{self.checkpoint_path} exists: a search already ran in {self.output}; continue it with --resume,"
                    " or set another output folder"
                )
            if self.config.start.file is not None:
                start.check_start(self.config, ase_files.read(self.config.start.file, index=-1).repeat(self.config.start.repeat))  # before hours of labeling and training
            self.output.mkdir(parents=True, exist_ok=True)
            state = SearchState(self.config_hash, np.random.default_rng(self.config.seed).bit_generator.state)
            state.config = checkpoint.stable_config(self.config.model_dump(mode="json"))
            checkpoint.save(self.checkpoint_path, state)
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng
        ctx = SearchContext(
            config=self.config, registry=self.registry, config_path=self.config_path, map_fn=self.map_fn, echo=self.echo,
            reference=self.reference, state=state, rng=rng, checkpoint_path=self.checkpoint_path, n_workers=self.n_workers,
            worker_threads=self.worker_threads, training_threads=self.training_threads,
            fitness_task=self._fitness_task, reference_task=self._reference_task,
            resumed=resume and not restarted_ga,  # candidates.db may hold a generation the checkpoint does not know
        )
        while state.phase != "done":
            phase = state.phase
            RUN[phase](ctx)
            following = self.next_phase(phase, state)
            if following == "ga":
                ga.begin_step(ctx)
            ctx.goto(following)
        return self._result(state)

    def _continue_changed(self, state: SearchState, changed: list[str]) -> str:
        """Make the state fit a config changed in keys that shaped no finished work
        (:func:`pesmith.search.checkpoint.shaped_finished_work`); what it did, for the user."""
        sections = {key.split(".")[0] for key in changed}
        if state.phase == "ga" and sections & {"ga", "fitness"} and state.ga is not None:
            state.ga = GAState()  # its energies were computed with the old settings; candidates.db keeps their rows
            return f"the GA of step {state.step + 1} starts again with them"
        if state.phase == "confirm" and "confirm" in sections and state.confirm is not None:
            failed = [key for key, entry in state.confirm.done.items() if not entry.ok]
            for key in failed:
                del state.confirm.done[key]
            if failed:
                return f"the {len(failed)} failed reference relaxations of step {state.step + 1} run again with them"
        return "they apply to the work still to do"

    def next_phase(self, phase: str, state: SearchState) -> str:
        """The phase after ``phase`` has run: the order of the search."""
        if phase == "initial":
            return "train"
        if phase == "train":
            if state.step >= len(self.config.path) - 1:
                return "hull"
            return "start" if state.start is None else "ga"
        if phase == "start":  # it samples the start's baseline itself
            return "ga"
        if phase == "ga" and self.config.anneal.candidates + self.config.anneal.melt_quenches:
            return "anneal"
        if phase in ("ga", "anneal"):
            return "baseline" if self.config.baseline.enabled else "confirm"
        if phase == "baseline":
            return "confirm"
        if phase == "confirm":
            return "explore" if self.config.explore.frames else "train"
        if phase == "explore":
            return "train"
        if phase == "hull":
            return "done"
        raise ValueError(f"unknown phase {phase!r}; the phases are {', '.join(PHASES)}")

    # ----------------------------------------------------------------- mapped tasks (a test may replace them)
    def _reference_task(self) -> Callable[[Atoms], Relaxed]:
        """The mapped reference relaxation (confirmations, the start, the hull crystals)."""
        return partial(relax_with_reference, self.reference, self.config.confirm, self.config.confirm.frame_interval)

    def _fitness_task(self, model_path: str) -> Callable[[Atoms], Relaxed]:
        """The mapped GA fitness: relax with the model (a test may replace it)."""
        return partial(relax_with_model, model_path, self.config.fitness, self.worker_threads)

    def _result(self, state: SearchState) -> SearchResult:
        hull_tables = state.hull or {}
        return SearchResult(
            steps=list(state.steps),
            hull=hull_tables.get("entries", []),
            voltages=hull_tables.get("voltages", []),
            amorphous_voltages=hull_tables.get("amorphous_voltages", []),
            search_vs_baseline=hull_tables.get("search_vs_baseline", []),
            models=[asdict(m) for m in state.models],
            reference_truth=state.reference_truth,
            files={k: self.output / v for k, v in hull_tables.get("files", {}).items()},
        )
