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

Every model evaluation and reference relaxation goes through one map (MPI ranks or local
processes); only this process writes files. The checkpoint (``checkpoint.json``) is replaced
after every generation and every confirmed candidate; every GA evaluation is also a row of
``candidates.db`` as soon as it returns, so a resumed run evaluates nothing twice and redoes no
finished reference calculation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import Atoms

from pesmith import ase_files
from pesmith.config import DataSettings, TrainConfig, validate_section
from pesmith.data import Dataset
from pesmith.errors import ConfigError, DataError, LabelingFailed
from pesmith.labeling import MapFunction, build_reference
from pesmith.parallel import mpi_workers, parallel_map, threads_per_worker
from pesmith.reference_db import Label, ReferenceDB
from pesmith.registry import Registry
from pesmith.threads import torch_threads

from . import checkpoint
from .comparator import StructureComparator
from .config import SearchConfig, generate_config
from .delithiation import DelithiationProblem, Genome, genome_hash
from .ga import GAState, GeneticSearch, Outcome
from .relaxation import Relaxed, relax_with_model, relax_with_reference

log = logging.getLogger(__name__)

PHASES = ("initial", "train", "start", "ga", "confirm", "explore", "hull", "done")


@dataclass
class StepRecord:
    """What one delithiation step did (energies in eV/atom, errors of the model before retraining)."""

    step: int
    x_from: float
    x_to: float
    n_li_removed: int
    arrangements: int
    generations: int = 0
    evaluated: int = 0
    duplicates: int = 0
    failed_evaluations: int = 0
    stop_reason: str = ""
    best_model_energy_per_atom: float | None = None
    candidates: int = 0
    confirmed: int = 0
    failed_confirmations: int = 0
    model_energy_rmse_meV_per_atom: float | None = None
    model_force_rmse_eV_per_A: float | None = None
    new_labels: int = 0
    explored_frames: int = 0
    failed_explore_labels: int = 0
    explore_stops: list[str] = field(default_factory=list)
    explore_energy_rmse_meV_per_atom: float | None = None
    explore_force_rmse_eV_per_A: float | None = None
    lowest_reference_energy_per_atom: float | None = None
    wall_time_ga_s: float = 0.0
    wall_time_confirm_s: float = 0.0
    wall_time_explore_s: float = 0.0
    wall_time_train_s: float = 0.0


@dataclass
class SearchResult:
    """The outcome of a search: per-step records, the hull and voltage tables, files written."""

    steps: list[StepRecord]
    hull: list[dict[str, Any]]
    voltages: list[dict[str, float]]
    models: list[dict[str, Any]] = field(default_factory=list)  # per training: file, validation and holdout metrics
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
        self.comparator = StructureComparator()

    # ----------------------------------------------------------------- driver
    def run(self, resume: bool = False) -> SearchResult:
        """Run (or, with ``resume``, continue) the search to the end; return its result."""
        self._may_hold_evaluations = resume  # candidates.db may hold a generation the checkpoint does not know
        if resume:
            self.state = checkpoint.load(self.checkpoint_path, self.config_hash)
            self.echo(f"resuming {self.output} at step {self.state['step']}, phase {self.state['phase']}")
        else:
            if self.checkpoint_path.exists():
                raise ConfigError(
                    f"{self.checkpoint_path} exists: a search already ran in {self.output}; continue it with --resume,"
                    " or set another output folder"
                )
            if self.config.start.file is not None:
                self._check_start(ase_files.read(self.config.start.file, index=-1))  # before hours of labeling and training
            self.output.mkdir(parents=True, exist_ok=True)
            self.state = self._fresh_state()
            self._save()
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = self.state["rng"]
        handlers = {
            "initial": self._initial,
            "train": self._train,
            "start": self._start,
            "ga": self._ga,
            "confirm": self._confirm,
            "explore": self._explore,
            "hull": self._hull,
        }
        while self.state["phase"] != "done":
            handlers[self.state["phase"]]()
        return self._result()

    def _fresh_state(self) -> dict[str, Any]:
        return {
            "config_hash": self.config_hash,
            "phase": "initial",
            "step": 0,
            "rng": np.random.default_rng(self.config.seed).bit_generator.state,
            "model": None,
            "model_hash": None,
            "models": [],
            "crystals": [],
            "start": None,
            "current": None,
            "ga": None,
            "confirm": None,
            "steps": [],
            "entries": [],  # confirmed candidates, for the hull
            "ga_logs": [],  # per step: the GA log (best and mean energy per generation)
            "hull": None,
        }

    def _save(self) -> None:
        if hasattr(self, "rng"):
            self.state["rng"] = self.rng.bit_generator.state
        checkpoint.save(self.checkpoint_path, self.state)

    def _goto(self, phase: str) -> None:
        self.state["phase"] = phase
        self._save()

    # ----------------------------------------------------------------- files
    @property
    def database(self) -> ReferenceDB:
        return ReferenceDB(self.output / "reference.db", self.config.reference.kind, self.reference.get_config(), self.reference.code_version())

    def _structure_file(self, name: str) -> Path:
        folder = self.output / "structures"
        folder.mkdir(exist_ok=True)
        return folder / name

    def _write_structure(self, name: str, atoms: Atoms) -> str:
        path = self._structure_file(name)
        ase_files.write(path, atoms, format="extxyz")
        return str(path.relative_to(self.output))

    def _read_structure(self, relative: str) -> Atoms:
        return ase_files.read(self.output / relative, index=-1)

    # ----------------------------------------------------------------- phases
    def _initial(self) -> None:
        started = time.perf_counter()
        if self.config.initial.generate is not None:
            from .initial_set import generate

            summary = generate(generate_config(self.config, self.config_path), self.registry, self.map_fn, where=str(self.config_path))
            self.echo(f"initial data: {summary.n_labeled} labeled, {summary.n_failed} failed, {summary.n_skipped} already in {summary.database}")
        crystals = []
        for path in self.config.hull.crystals:
            atoms = ase_files.read(path, index=-1)
            atoms.calc = None
            crystals.append(atoms)
        relaxed = self._reference_relax(crystals, "relaxing the hull crystals with the reference", source="hull crystal")
        self.state["crystals"] = [
            {"file": str(p), **self._entry(r, self._write_structure(f"crystal_{p.stem}.xyz", r.atoms) if r.ok else None)}
            for p, r in zip(self.config.hull.crystals, relaxed)
        ]
        for entry in self.state["crystals"]:
            if entry["reason"]:
                self.echo(f"hull crystal {entry['file']} failed: {entry['reason']}")
        self.echo(f"initial phase done in {time.perf_counter() - started:.0f} s")
        self._goto("train")

    def _train(self) -> None:
        from pesmith.workflows import train

        step = self.state["step"]
        started = time.perf_counter()
        models = self.output / "models"
        models.mkdir(exist_ok=True)
        potential = self.config.potential
        files = [*self.config.initial.labeled, self.output / "reference.db"]
        config = TrainConfig(
            data=DataSettings(
                train=[f for f in files if f.exists()],
                validation_fraction=potential.validation_fraction,
                seed=self.config.seed,
                isolated_atom_energies=potential.isolated_atom_energies,
            ),
            descriptor=potential.descriptor,
            model=potential.model,
            output=models / f"model_{step}.pt",
            initial_model=self.output / self.state["model"] if step > 0 and potential.warm_start else None,
        )
        model_cls = self.registry.get("model", potential.model.kind)
        config.training = validate_section(self.config_path, "potential.training", dict(potential.training) | {"progress": False}, model_cls.settings_schema)
        config.training.threads = config.training.threads or self.training_threads
        with torch_threads(config.training.threads):
            result = train(config, self.registry, warn=self.echo)
        metrics = result.report["metrics"].get("validation", result.report["metrics"]["train"])
        self.state["model"] = str(config.output.relative_to(self.output))
        self.state["model_hash"] = checkpoint.file_hash(config.output)
        holdout = self._holdout_metrics(result.potential)
        self.state["models"].append({"step": step, "file": self.state["model"], "hash": self.state["model_hash"], "metrics": metrics, "holdout": holdout})
        if holdout:
            self.echo(f"model {self.state['model']} on the holdout: {holdout['energy_rmse_meV_per_atom']:.1f} meV/atom, {holdout['force_rmse_eV_per_A']:.3f} eV/Å")
        wall = time.perf_counter() - started
        if step > 0:
            self.state["steps"][step - 1]["wall_time_train_s"] = wall
        self.echo(
            f"model {self.state['model']}: {result.report['split']['n_train']} structures,"
            f" validation {metrics['energy_rmse_meV_per_atom']:.1f} meV/atom, {metrics['force_rmse_eV_per_A']:.3f} eV/Å ({wall:.0f} s)"
        )
        if step >= len(self.config.path) - 1:
            self._goto("hull")
        elif self.state["start"] is None:
            self._goto("start")
        else:
            self._begin_step()

    def _start(self) -> None:
        if self.config.start.file is not None:
            atoms = ase_files.read(self.config.start.file, index=-1)
            atoms.calc = None
        else:
            atoms = self._melt_quenched_start()
        self._check_start(atoms)
        [relaxed] = self._reference_relax([atoms], "relaxing the start structure with the reference", source="start")
        if not relaxed.ok:
            raise DataError(f"start structure {self.config.start.file}: the reference relaxation failed: {relaxed.reason}")
        self._store_labels(relaxed, "start", 0)
        self.state["start"] = self._entry(relaxed, self._write_structure("start.xyz", relaxed.atoms))
        self.state["current"] = self.state["start"]["structure"]
        self._begin_step()

    def _melt_quenched_start(self) -> Atoms:
        """A random cell at the path's first composition, melt-quenched with the first model or
        the reference (``start.driver``)."""
        from .amorphous import composition_counts, interpolated_volume_per_atom, melt_quench, random_cell
        from .relaxation import model_calculator

        settings = self.config.start
        counts = composition_counts(self.config.path[0], settings.atoms)
        crystals = [ase_files.read(p, index=-1) for p in self.config.hull.crystals]
        volume = settings.volume_per_atom or interpolated_volume_per_atom(self.config.path[0], crystals)
        cell = random_cell(counts, volume, self.rng)
        started = time.perf_counter()
        if settings.driver == "model":
            driver, calculator = self.state["model"], model_calculator(str(self.output / self.state["model"]), 1)
        else:
            self._check_reference_drives("start.driver")
            driver, calculator = self.config.reference.kind, self.reference.make_calculator()
        try:
            frames = melt_quench(cell, calculator, settings.melt_quench, self.rng)
        except LabelingFailed as exc:
            raise DataError(
                f"start: the melt-quench driven by {driver} failed ({exc}); set start.driver: reference (a model trained"
                " on few structures can be unstable in MD), lower start.melt_quench.timestep_fs, or give start.file"
            ) from exc
        atoms = frames[-1]
        atoms.info = {}
        self.echo(
            f"start: {atoms.get_chemical_formula()} at {volume:.2f} Å^3/atom melt-quenched with {driver}"
            f" ({settings.melt_quench.n_steps} MD steps, {time.perf_counter() - started:.0f} s)"
        )
        return atoms

    def _check_reference_drives(self, key: str) -> None:
        """MD driven by the reference (``key`` set to ``reference``) needs its ASE calculator."""
        if getattr(self.reference, "make_calculator", None) is None:
            raise ConfigError(f"{self.config_path}: {key} 'reference' needs a reference with an ASE calculator; {self.config.reference.kind} has none")

    def _check_start(self, atoms: Atoms) -> None:
        where = f"start structure {self.config.start.file or '(melt-quenched)'}"
        n_li, n_si = int((atoms.numbers == 3).sum()), int((atoms.numbers == 14).sum())
        if n_li == 0:
            raise ConfigError(f"{where} ({atoms.get_chemical_formula()}) has no Li: a delithiation search starts from a lithiated structure")
        if n_si == 0 or set(atoms.numbers) - {3, 14}:
            raise ConfigError(f"{where} ({atoms.get_chemical_formula()}) must hold Li and Si only, with at least one Si")
        x0 = self.config.path[0]
        if abs(n_li - x0 * n_si) > 0.5:
            raise ConfigError(f"{where} is Li{n_li}Si{n_si} (x = {n_li / n_si:.3f}) but path starts at x = {x0}; make them agree")
        for x in self.config.path[1:]:
            if abs(x * n_si - round(x * n_si)) > 0.25:
                log.warning("x = %s with %d Si is not a whole number of Li; the step uses %d Li", x, n_si, round(x * n_si))

    def _begin_step(self) -> None:
        step = self.state["step"]
        current = self._read_structure(self.state["current"])
        n_si = int((current.numbers == 14).sum())
        n_li = int((current.numbers == 3).sum())
        target = int(round(self.config.path[step + 1] * n_si))
        record = StepRecord(step, n_li / n_si, target / n_si, n_li - target, 0)
        self.state["steps"].append(asdict(record))
        self.state["ga"] = GAState().as_dict()
        self._goto("ga")

    def _problem(self) -> DelithiationProblem | None:
        """The step's problem, or ``None`` when every Li goes (a single arrangement)."""
        current = self._read_structure(self.state["current"])
        record = self.state["steps"][self.state["step"]]
        n_li = int((current.numbers == 3).sum())
        if record["n_li_removed"] >= n_li:
            return None
        return DelithiationProblem(current, record["n_li_removed"])

    def _ga(self) -> None:
        step = self.state["step"]
        record = self.state["steps"][step]
        problem = self._problem()
        started = time.perf_counter()
        if problem is None:  # x -> 0: the only arrangement is the Si framework itself
            current = self._read_structure(self.state["current"])
            genome: Genome = tuple([1] * int((current.numbers == 3).sum()))
            state = GAState()
            [outcome] = self._evaluate_genomes(None, [genome], current=current)
            from .ga import Evaluation

            state.evaluations[genome_hash(genome)] = Evaluation(genome_hash(genome), genome, 0, "all", (), outcome.energy, outcome.energy_std, outcome.reason, outcome.payload)
            state.done, state.stop_reason = True, "one arrangement (every Li removed)"
            record["arrangements"] = 1
        else:
            record["arrangements"] = problem.n_arrangements
            search = GeneticSearch(problem, self.config.ga, lambda genomes: self._evaluate_genomes(problem, genomes), self.rng, GAState.from_dict(self.state["ga"]))

            def after_generation(ga: GeneticSearch) -> None:
                last = ga.state.log[-1]
                self._record_origins(ga.state, last.generation)
                self.state["ga"] = ga.state.as_dict()
                self._save()
                self.echo(
                    f"step {step + 1}, generation {last.generation}: {last.evaluated} evaluated, {last.duplicates} duplicates"
                    f" ({100 * last.duplicate_rate:.0f} %), {last.failed} failed, best {last.best_energy:.4f} eV"
                )

            state = search.run(after_generation)
        record.update(
            generations=len(state.log),
            evaluated=len(state.evaluations),
            duplicates=sum(r.duplicates for r in state.log),
            failed_evaluations=sum(1 for e in state.evaluations.values() if not e.ok),
            stop_reason=state.stop_reason,
        )
        best = state.best()
        if not best:
            raise DataError(f"step {step + 1}: every one of the {len(state.evaluations)} candidates failed with the model; see {self.output / 'candidates.db'}")
        n_atoms = self._candidate_row(best[0].payload["row"]).natoms
        record["best_model_energy_per_atom"] = best[0].energy / n_atoms
        record["wall_time_ga_s"] = record.get("wall_time_ga_s", 0.0) + time.perf_counter() - started
        self.state["ga"] = state.as_dict()
        self.state["ga_logs"].append([asdict(r) | {"n_atoms": n_atoms} for r in state.log])
        self.state["confirm"] = {"picked": self._pick_candidates(state), "done": {}}
        record["candidates"] = len(self.state["confirm"]["picked"])
        self._goto("confirm")

    def _record_origins(self, state: GAState, generation: int) -> None:
        """Add operator and parents to the candidates.db rows of one generation."""
        db = self.candidates
        with db:
            for evaluation in state.evaluations.values():
                if evaluation.generation == generation:
                    db.update(evaluation.payload["row"], operator=evaluation.operator, parents=" ".join(evaluation.parents) or "none")

    def _pick_candidates(self, state: GAState) -> list[dict[str, Any]]:
        """The lowest-energy candidates that are not the same structure (nor, with
        ``confirm.diversity``, too similar to one picked before), up to ``confirm.candidates``."""
        picked: list[tuple[Atoms, float, str, int]] = []
        weight = self.config.confirm.uncertainty_weight
        ranked = sorted(state.best(len(state.evaluations)), key=lambda e: (e.energy - weight * (e.energy_std or 0.0), e.key))
        for evaluation in ranked:
            row = self._candidate_row(evaluation.payload["row"])
            atoms = row.toatoms()
            if any(self.comparator.same(atoms, evaluation.energy, other, energy) for other, energy, _, _ in picked):
                continue
            diversity = self.config.confirm.diversity
            if diversity and any(self.comparator.differ_by(atoms, other) < diversity for other, _, _, _ in picked):
                continue
            picked.append((atoms, evaluation.energy, evaluation.key, row.id))
            if len(picked) == self.config.confirm.candidates:
                break
        return [{"key": key, "row": row_id, "model_energy": energy} for _, energy, key, row_id in picked]

    def _confirm(self) -> None:
        step = self.state["step"]
        record = self.state["steps"][step]
        confirm = self.state["confirm"]
        started = time.perf_counter()
        todo = [p for p in confirm["picked"] if p["key"] not in confirm["done"]]
        structures = [self._candidate_row(p["row"]).toatoms() for p in todo]
        for atoms in structures:
            atoms.calc = None
        results = self.map_fn(self._reference_task(), structures, workers=self.n_workers, progress=self.config.progress, description=f"step {step + 1}: reference relaxations")
        rank = {p["key"]: position for position, p in enumerate(confirm["picked"])}  # the same after a resume
        for index, relaxed in results:
            pick = todo[index]
            source, position = f"step {step + 1} candidate {pick['key']}", rank[pick["key"]]
            rows = self._store_labels(relaxed, source, position) if relaxed.ok else []
            if not relaxed.ok:
                self.database.write(structures[index], Label(reason=relaxed.reason, wall_time=relaxed.wall_time), source=source, source_index=position)
            entry = self._entry(relaxed, self._write_structure(f"step{step + 1}_{pick['key']}.xyz", relaxed.atoms) if relaxed.ok else None)
            confirm["done"][pick["key"]] = entry | {"label_rows": rows, "model_energy": pick["model_energy"]}
            self._update_candidate(pick["row"], entry)
            self._save()
        done = [confirm["done"][p["key"]] for p in confirm["picked"]]
        ok = [d for d in done if d["reason"] is None]
        record.update(confirmed=len(ok), failed_confirmations=len(done) - len(ok), wall_time_confirm_s=record["wall_time_confirm_s"] + time.perf_counter() - started)
        record.update(self._model_errors([r for d in ok for r in d["label_rows"]]))
        if not ok:
            raise DataError(f"step {step + 1}: every reference relaxation failed; reasons in {self.output / 'reference.db'}")
        self.state["entries"] += [d | {"kind": f"step {step + 1}"} for d in ok]
        lowest = min(ok, key=lambda d: d["energy"] / d["n_atoms"])
        record["lowest_reference_energy_per_atom"] = lowest["energy"] / lowest["n_atoms"]
        self.state["current"] = lowest["structure"]
        self.echo(
            f"step {step + 1} (x {record['x_from']:.3f} -> {record['x_to']:.3f}): {record['confirmed']} confirmed,"
            f" {record['failed_confirmations']} failed; model before retraining on them:"
            f" {record['model_energy_rmse_meV_per_atom']:.1f} meV/atom, {record['model_force_rmse_eV_per_A']:.3f} eV/Å"
        )
        self.state["step"] = step + 1
        self._goto("explore" if self.config.explore.frames else "train")

    def _explore(self) -> None:
        """MD from the step's confirmed structures, a frame every ``explore.interval`` MD steps
        labeled with the reference; the model's error on them before retraining is recorded."""
        from pesmith.labeling import label_one

        from .explore import SEED_KEY, explore_with_model, explore_with_reference

        step = self.state["step"]  # the step just confirmed (1-based)
        record = self.state["steps"][step - 1]
        settings = self.config.explore
        source = f"step {step} explore"
        started = time.perf_counter()
        database = self.database
        database.delete_source(source)  # rows of an interrupted attempt: this one redoes it from the same seeds
        starts = []
        confirm = self.state["confirm"]
        for done in (confirm["done"][p["key"]] for p in confirm["picked"]):  # pick order, not completion order
            if done["reason"] is None:
                atoms = self._read_structure(done["structure"])
                atoms.calc = None
                atoms.info = {SEED_KEY: int(self.rng.integers(2**62))}
                starts.append(atoms)
        if settings.driver == "model":
            task = partial(explore_with_model, str(self.output / self.state["model"]), settings, self.worker_threads)
        else:
            self._check_reference_drives("explore.driver")
            task = partial(explore_with_reference, self.reference, settings)
        runs = dict(self.map_fn(task, starts, workers=self.n_workers, progress=self.config.progress, description=f"step {step}: exploration MD"))
        runs = [runs[i] for i in range(len(starts))]
        frames = [frame for run in runs for frame in run.frames]
        labels = dict(self.map_fn(
            partial(label_one, self.reference, self.config.confirm.time_limit), frames, workers=self.n_workers,
            progress=self.config.progress, description=f"step {step}: labeling {len(frames)} explored frames",
        ))
        rows = [database.write(frame, labels[i], source=source, source_index=i) for i, frame in enumerate(frames)]
        ok_rows = [row for i, row in enumerate(rows) if labels[i].ok]
        errors = self._model_errors(ok_rows)
        record.update(
            explored_frames=len(ok_rows),
            failed_explore_labels=len(rows) - len(ok_rows),
            explore_stops=[run.reason for run in runs if run.reason],
            explore_energy_rmse_meV_per_atom=errors["model_energy_rmse_meV_per_atom"],
            explore_force_rmse_eV_per_A=errors["model_force_rmse_eV_per_A"],
            wall_time_explore_s=time.perf_counter() - started,
        )
        heat = f"{settings.start_K:.0f} -> " if settings.start_K else ""
        message = f"step {step}: explored {len(starts)} structures at {heat}{settings.temperature_K:.0f} K, {len(ok_rows)} frames labeled"
        if ok_rows:
            message += f"; model before retraining on them: {errors['model_energy_rmse_meV_per_atom']:.1f} meV/atom, {errors['model_force_rmse_eV_per_A']:.3f} eV/Å"
        for reason in record["explore_stops"]:
            message += f"; a run {reason}"
        self.echo(message)
        self._goto("train")

    def _hull(self) -> None:
        from .phase_diagram import write_phase_diagram

        entries = [e | {"kind": "crystal"} for e in self.state["crystals"] if e["reason"] is None]
        entries.append(self.state["start"] | {"kind": "start"})
        entries += self.state["entries"]
        structures = [self._read_structure(e["structure"]) for e in entries]
        self.state["hull"] = write_phase_diagram(self.output, entries, structures, self.state["steps"], self.state["ga_logs"])
        self._goto("done")

    # ----------------------------------------------------------------- helpers
    def _entry(self, relaxed: Relaxed, structure: str | None) -> dict[str, Any]:
        n_atoms = len(relaxed.atoms) if relaxed.atoms is not None else None
        return {"structure": structure, "energy": relaxed.energy, "n_atoms": n_atoms, "reason": relaxed.reason, "wall_time": relaxed.wall_time}

    def _reference_relax(self, structures: list[Atoms], description: str, source: str) -> list[Relaxed]:
        results = dict(self.map_fn(self._reference_task(), structures, workers=self.n_workers, progress=self.config.progress, description=description))
        out = [results[i] for i in range(len(structures))]
        for index, relaxed in enumerate(out):
            if relaxed.ok:
                self._store_labels(relaxed, source, index)
        return out

    def _store_labels(self, relaxed: Relaxed, source: str, index: int) -> list[int]:
        """Write the final structure and the frames of a reference relaxation to the database."""
        database = self.database
        rows = []
        for atoms, energy, forces, stress in [*relaxed.frames, (relaxed.atoms, relaxed.energy, relaxed.forces, relaxed.stress)]:
            rows.append(database.write(atoms, Label(energy=energy, forces=forces, stress=stress, wall_time=relaxed.wall_time), source=source, source_index=index))
        return rows

    def _holdout_metrics(self, potential) -> dict[str, float] | None:
        """Errors of a freshly trained potential on ``holdout`` files (the learning curve)."""
        if not self.config.holdout:
            return None
        from pesmith.data import read_dataset
        from pesmith.validation import predict_dataset

        dataset = read_dataset(self.config.holdout, allow_mixed_references=True)
        return predict_dataset(potential, dataset).metrics()

    def _model_errors(self, label_rows: list[int]) -> dict[str, float | None]:
        """Energy (meV/atom) and force (eV/Å) RMSE of the current model on these new labels."""
        if not label_rows:
            return {"model_energy_rmse_meV_per_atom": None, "model_force_rmse_eV_per_A": None, "new_labels": 0}
        from pesmith.model_file import load_potential
        from pesmith.validation import predict_dataset

        db = ase_files.connect(self.output / "reference.db")
        structures = [db.get(id=r).toatoms() for r in label_rows]
        dataset = Dataset(
            structures=structures,
            energies=np.array([a.get_potential_energy() for a in structures]),
            forces=[a.get_forces() for a in structures],
            stresses=[None for _ in structures],
        )
        potential, _ = load_potential(self.output / self.state["model"], self.registry)
        metrics = predict_dataset(potential, dataset).metrics()
        return {
            "model_energy_rmse_meV_per_atom": metrics["energy_rmse_meV_per_atom"],
            "model_force_rmse_eV_per_A": metrics["force_rmse_eV_per_A"],
            "new_labels": len(label_rows),
        }

    # ----------------------------------------------------------------- candidates.db
    @property
    def candidates(self):
        return ase_files.connect(self.output / "candidates.db", type="db", append=True)

    def _candidate_row(self, row_id: int):
        return self.candidates.get(id=row_id)

    def _update_candidate(self, row_id: int, entry: dict[str, Any]) -> None:
        pairs = {"confirmed": entry["reason"] is None, "reference_method": self.config.reference.kind}
        if entry["reason"] is None:
            pairs["reference_energy"] = float(entry["energy"])
        else:
            pairs["reference_failure"] = entry["reason"].splitlines()[0][:200]
        db = self.candidates
        with db:
            db.update(row_id, **pairs)

    def _reference_task(self) -> Callable[[Atoms], Relaxed]:
        """The mapped reference relaxation (confirmations, the start, the hull crystals)."""
        return partial(relax_with_reference, self.reference, self.config.confirm, self.config.confirm.frame_interval)

    def _fitness_task(self, model_path: str) -> Callable[[Atoms], Relaxed]:
        """The mapped GA fitness: relax with the model (a test may replace it)."""
        return partial(relax_with_model, model_path, self.config.fitness, self.worker_threads)

    def _evaluate_genomes(self, problem: DelithiationProblem | None, genomes: list[Genome], current: Atoms | None = None) -> list[Outcome]:
        """Fitness of each genome: from ``candidates.db`` when this step already evaluated it
        (the first generation after a resume), else mapped over the workers and written there
        as it returns. Without a resume the GA never asks for a genome twice, so the database
        is read only once after one."""
        step = self.state["step"]
        generation = GAState.from_dict(self.state["ga"]).generation if self.state["ga"] else 0
        keys = [genome_hash(g) for g in genomes]
        known = {row.genome_hash: row for row in self.candidates.select(step=step + 1)} if self._may_hold_evaluations else {}
        self._may_hold_evaluations = False
        outcomes: dict[int, Outcome] = {}
        todo = []
        for index, key in enumerate(keys):
            row = known.get(key)
            if row is not None:
                outcomes[index] = _outcome(row)
            else:
                todo.append(index)
        structures = [problem.apply(genomes[i]) if problem is not None else _without_li(current) for i in todo]
        model_path = str(self.output / self.state["model"])
        results = self.map_fn(
            self._fitness_task(model_path), structures, workers=self.n_workers, progress=self.config.progress,
            description=f"step {step + 1}, generation {generation}: model relaxations",
        )
        db = self.candidates
        for position, relaxed in results:
            index = todo[position]
            pairs = {
                "step": step + 1,
                "generation": generation,
                "genome_hash": keys[index],
                "model_hash": self.state["model_hash"],
                "relax": self.config.fitness.relax,
                "status": "ok" if relaxed.ok else "failed",
                "wall_time": float(relaxed.wall_time),
                "extrapolation": bool(relaxed.extrapolation),
            }
            if relaxed.ok:
                pairs["model_energy"] = float(relaxed.energy)
                if relaxed.energy_std is not None:
                    pairs["model_energy_std"] = float(relaxed.energy_std)
                atoms = relaxed.atoms
            else:
                pairs["reason"] = relaxed.reason.splitlines()[0][:300]
                atoms = structures[position]
            with db:
                row_id = db.write(atoms, key_value_pairs=pairs, data={"genome": list(genomes[index])})
            outcomes[index] = _outcome(db.get(id=row_id))
        return [outcomes[i] for i in range(len(genomes))]

    def _result(self) -> SearchResult:
        hull = self.state["hull"] or {}
        return SearchResult(
            steps=[StepRecord(**r) for r in self.state["steps"]],
            hull=hull.get("entries", []),
            voltages=hull.get("voltages", []),
            models=self.state["models"],
            files={k: self.output / v for k, v in hull.get("files", {}).items()},
        )


def _outcome(row) -> Outcome:
    if row.get("status") == "ok":
        return Outcome(energy=float(row.model_energy), energy_std=row.get("model_energy_std"), payload={"row": row.id})
    return Outcome(energy=None, reason=row.get("reason", "failed"), payload={"row": row.id})


def _without_li(atoms: Atoms) -> Atoms:
    out = atoms[atoms.numbers != 3]
    out.calc = None
    return out
