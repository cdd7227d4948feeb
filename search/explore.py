"""Active learning between delithiation steps: MD from the confirmed structures, frames labeled.

After a step's candidates are relaxed with the reference, the structures the next steps will
move through (amorphous Li_xSi at the new composition, at finite temperature) are still
outside the training set: the relaxations only add frames near minima. So each confirmed
structure is run through a short Langevin MD (NVT, the relaxed cell; at ``temperature_K``, or
quenched to it from ``start_K``) driven by the model
about to be retrained (``driver: model``, cheap, and it goes where the model believes the
energy is low, including where it is wrong) or by the reference; frames along it are then
labeled with the reference (Artrith, Urban & Ceder 2018 refine their potential the same way
with MD of the sampled compositions).

A model trained on little data can run away in MD (atoms collapse onto each other). A
trajectory therefore stops at the first MD step with two atoms closer than ``min_distance``
(Å); the frames before it are kept and the reason is reported. A run whose positions diverge
keeps no frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from pydantic import Field, model_validator

from pesmith.labeling import attempt
from pesmith.reference import Reference
from pesmith.simulate.md import MeltQuenchSettings, melt_quench

from .initial_set import Section
from .relaxation import model_calculator

SEED_KEY = "explore_seed"  # Atoms.info key carrying each task's random seed into a worker


class ExploreSettings(Section):
    """MD from each confirmed structure; a frame every ``interval`` steps is labeled with the
    reference before retraining. ``frames: 0`` (the default) turns exploration off."""

    frames: int = Field(0, ge=0, le=10_000, description="frames labeled per confirmed structure (0: no exploration)")
    interval: int = Field(10, ge=1, le=100_000, description="MD steps between labeled frames")
    temperature_K: float = Field(600.0, gt=0, le=10_000, description="K, Langevin thermostat (at the end, with start_K)")
    start_K: float | None = Field(
        None, gt=0, le=10_000, description="K at the start, cooled linearly to temperature_K over the run (a quench"
        " from each confirmed structure, sampling disordered configurations); None: temperature_K throughout",
    )
    timestep_fs: float = Field(1.0, ge=0.01, le=5, description="fs")
    friction: float = Field(0.02, gt=0, le=1, description="1/fs, Langevin friction")
    min_distance: float = Field(1.2, gt=0, le=3, description="Å; a trajectory stops at a frame with two atoms closer than this")
    driver: Literal["model", "reference"] = Field("model", description="what drives the MD (the reference always labels)")

    @model_validator(mode="after")
    def _cooling(self) -> "ExploreSettings":
        if self.start_K is not None and self.start_K < self.temperature_K:
            raise ValueError(f"start_K ({self.start_K}) must not be below temperature_K ({self.temperature_K}): the run cools")
        return self

    def md_settings(self) -> MeltQuenchSettings:
        """The run as a melt-quench schedule: from ``start_K`` (or ``temperature_K``) down to
        ``temperature_K`` over ``frames x interval`` steps."""
        return MeltQuenchSettings(
            melt_K=self.start_K or self.temperature_K, melt_ps=0.0, final_K=self.temperature_K, timestep_fs=self.timestep_fs,
            quench_ps=self.frames * self.interval * self.timestep_fs / 1000.0, friction=self.friction, interval=self.interval,
        )


@dataclass
class Explored:
    """Frames of one exploration run (positions, cell; no labels) and why it stopped early, if it did."""

    frames: list[Atoms] = field(default_factory=list)
    reason: str | None = None
    wall_time: float = 0.0


def explore(atoms: Atoms, calculator: Calculator, settings: ExploreSettings, rng: np.random.Generator) -> Explored:
    """Langevin MD of ``atoms`` with ``calculator`` at ``settings.temperature_K``; the frames up to
    the first one closer than ``settings.min_distance`` (or up to a divergence or crash)."""
    done = attempt(lambda start: melt_quench(start, calculator, settings.md_settings(), rng, min_distance=settings.min_distance), atoms)
    frames, reason = done.value or [], done.reason  # diverged or crashed: no frame is trusted
    if reason is None and len(frames) < settings.frames:
        last = frames[-1].info["md_step"] if frames else 0
        reason = f"stopped after MD step {last}: two atoms closer than {settings.min_distance} Å"
    for frame in frames:
        frame.info = {key: frame.info[key] for key in ("md_step", "temperature_K") if key in frame.info}
    return Explored(frames, reason, done.wall_time)


def explore_with_model(model_path: str, settings: ExploreSettings, threads: int, atoms: Atoms) -> Explored:
    """Mapped task: :func:`explore` driven by the model file, seeded by ``atoms.info[SEED_KEY]``."""
    rng = np.random.default_rng(int(atoms.info[SEED_KEY]))
    loaded = attempt(lambda path: model_calculator(path, threads), model_path)
    if loaded.reason is not None:
        return Explored(reason=f"loading {model_path}: {loaded.reason}")
    return explore(_bare(atoms), loaded.value, settings, rng)


def explore_with_reference(reference: Reference, settings: ExploreSettings, atoms: Atoms) -> Explored:
    """Mapped task: :func:`explore` driven by the reference's ASE calculator."""
    rng = np.random.default_rng(int(atoms.info[SEED_KEY]))
    made = attempt(lambda ref: ref.make_calculator(), reference, reference.prepare)
    if made.reason is not None:
        return Explored(reason=f"reference calculator: {made.reason}")
    return explore(_bare(atoms), made.value, settings, rng)


def _bare(atoms: Atoms) -> Atoms:
    return Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
