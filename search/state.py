"""The typed state of a search: what :mod:`pesmith.search.checkpoint` writes as JSON after every
generation and every confirmed candidate, and what :mod:`pesmith.search.status` reads.

Energies in eV, wall times in s; structure paths are relative to the search's output folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .ga import GAState

if TYPE_CHECKING:
    from pesmith.simulate.relax import Relaxed

PHASES = ("initial", "train", "start", "ga", "anneal", "baseline", "confirm", "explore", "hull", "done")


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
    lowest_origin: str | None = None  # where the step's lowest confirmed structure came from (ga, anneal of ga, melt-quench)
    annealed: int = 0  # pool members annealed and relaxed with the model
    failed_anneals: int = 0
    pool_from_ga: int = 0  # of the candidates sent to the reference: annealed GA candidates
    pool_from_melt_quench: int = 0  # ... and melt-quenched random cells
    screened: int = 0  # distinct pool members given a reference single point (anneal.screen)
    screen_energy_rmse_meV_per_atom: float | None = None  # the model against those single points, at the same geometries
    wall_time_ga_s: float = 0.0
    wall_time_anneal_s: float = 0.0
    wall_time_confirm_s: float = 0.0
    wall_time_explore_s: float = 0.0
    wall_time_train_s: float = 0.0


@dataclass
class Entry:
    """A structure relaxed with the reference: a hull crystal, the start, or a confirmed candidate.

    ``energy`` (eV) is the reference energy of the final structure ``structure`` (``None``, with
    ``reason``, when the relaxation failed). ``kind`` is its label on the hull (``"crystal"``,
    ``"start"``, ``"step k"``).
    """

    structure: str | None
    energy: float | None
    n_atoms: int | None
    reason: str | None
    wall_time: float
    kind: str = ""
    file: str | None = None  # a hull crystal's input file
    label_rows: list[int] = field(default_factory=list)  # its rows in reference.db (confirmed candidates)
    model_energy: float | None = None  # eV, the model's energy before the reference relaxation (confirmed candidates)
    origin: str | None = None  # ga, anneal of ga, melt-quench (confirmed candidates and baseline)
    max_force: float | None = None  # eV/Å left at the end of the reference relaxation
    max_stress_GPa: float | None = None  # GPa left at the end of a cell relaxation

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def energy_per_atom(self) -> float:
        return self.energy / self.n_atoms

    @classmethod
    def of(cls, relaxed: Relaxed, structure: str | None, **extra: Any) -> Entry:
        """The entry of a reference relaxation whose final structure was written to ``structure``."""
        n_atoms = len(relaxed.atoms) if relaxed.atoms is not None else None
        residuals = {"max_force": relaxed.max_force, "max_stress_GPa": relaxed.max_stress_GPa}
        return cls(structure, relaxed.energy, n_atoms, relaxed.reason, relaxed.wall_time, **(residuals | extra))


@dataclass
class Pick:
    """A candidate picked for the reference: its key, its GA row in candidates.db (``None`` for a
    melt-quenched pool member), its model energy (eV), and, when it was annealed, the annealed
    structure's file (relative to the output folder), where it came from and, when the pool was
    screened, the reference's energy (eV) at the annealed geometry."""

    key: str
    row: int | None
    model_energy: float
    structure: str | None = None
    origin: str = "ga"
    screen_energy: float | None = None


@dataclass
class ConfirmState:
    """The confirmation of one step: the candidates picked (in rank order), the baseline's
    melt-quenched cells relaxed in the same map (phase *baseline*), the entries done by key."""

    picked: list[Pick] = field(default_factory=list)
    done: dict[str, Entry] = field(default_factory=dict)
    baseline: list[Pick] = field(default_factory=list)

    def finished(self) -> list[Entry]:
        """The entries of the picked candidates, in pick order (not completion order)."""
        return [self.done[p.key] for p in self.picked]


@dataclass
class ModelRecord:
    """One training: the model file (relative), its hash, validation and holdout metrics, and its
    force errors on the ``holdout_truth`` frames (eV/Å)."""

    step: int
    file: str
    hash: str
    metrics: dict[str, Any]
    holdout: dict[str, float] | None = None
    truth: dict[str, float] | None = None


@dataclass
class SearchState:
    """Everything a search needs to continue after a kill, and nothing it can recompute."""

    config_hash: str
    rng: dict[str, Any]  # the numpy bit generator's state (the only random source of the search)
    phase: str = "initial"
    step: int = 0
    model: str | None = None  # the current model file, relative to the output folder
    model_hash: str | None = None
    models: list[ModelRecord] = field(default_factory=list)
    crystals: list[Entry] = field(default_factory=list)
    start: Entry | None = None
    current: str | None = None  # the structure the current step starts from
    ga: GAState | None = None
    confirm: ConfirmState | None = None
    steps: list[StepRecord] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # confirmed candidates, for the hull
    baseline: list[Entry] = field(default_factory=list)  # melt-quench sampling at equal reference cost, for the hull
    baseline_done: list[float] = field(default_factory=list)  # x (Li per Si) already sampled
    ga_logs: list[list[dict[str, Any]]] = field(default_factory=list)  # per step: best and mean energy per generation
    hull: dict[str, Any] | None = None  # what write_phase_diagram returned
    reference_truth: dict[str, float] | None = None  # the reference's own force errors on the holdout_truth frames (eV/Å)
    config: dict[str, Any] | None = None  # the config (JSON, without workers and progress) the work was done with; None in older checkpoints

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the checkpoint's content)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["models"] = [asdict(m) for m in self.models]
        out["crystals"] = [asdict(e) for e in self.crystals]
        out["start"] = asdict(self.start) if self.start else None
        out["ga"] = self.ga.as_dict() if self.ga else None
        out["confirm"] = (
            {
                "picked": [asdict(p) for p in self.confirm.picked],
                "done": {k: asdict(e) for k, e in self.confirm.done.items()},
                "baseline": [asdict(p) for p in self.confirm.baseline],
            }
            if self.confirm else None
        )
        out["steps"] = [asdict(s) for s in self.steps]
        out["entries"] = [asdict(e) for e in self.entries]
        out["baseline"] = [asdict(e) for e in self.baseline]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchState:
        """The state of :meth:`to_json` (extra keys such as ``version`` are ignored)."""
        confirm = data.get("confirm")
        return cls(
            config_hash=data["config_hash"],
            rng=data["rng"],
            phase=data["phase"],
            step=data["step"],
            model=data.get("model"),
            model_hash=data.get("model_hash"),
            models=[ModelRecord(**m) for m in data.get("models", [])],
            crystals=[Entry(**e) for e in data.get("crystals", [])],
            start=Entry(**data["start"]) if data.get("start") else None,
            current=data.get("current"),
            ga=GAState.from_dict(data["ga"]) if data.get("ga") else None,
            confirm=ConfirmState(
                [Pick(**p) for p in confirm["picked"]],
                {k: Entry(**e) for k, e in confirm["done"].items()},
                [Pick(**p) for p in confirm.get("baseline", [])],
            ) if confirm else None,
            steps=[StepRecord(**s) for s in data.get("steps", [])],
            entries=[Entry(**e) for e in data.get("entries", [])],
            baseline=[Entry(**e) for e in data.get("baseline", [])],
            baseline_done=data.get("baseline_done", []),
            ga_logs=data.get("ga_logs", []),
            hull=data.get("hull"),
            reference_truth=data.get("reference_truth"),
            config=data.get("config"),
        )
