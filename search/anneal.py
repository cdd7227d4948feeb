"""Model-driven anneals: MD on a temperature schedule, then a relaxation, with the MLP.

The GA only rearranges which Li atoms go and relaxes locally, so the Si network of the
previous composition is carried along (isolated Si at x = 3.75 stays isolated down to x = 1.5,
where Si should form dimers, chains and rings). An anneal lets a candidate reorganise before it
is sent to the reference: Langevin MD at ``melt_K`` for ``melt_ps``, a linear quench to
``final_K`` over ``quench_ps`` (:func:`pesmith.simulate.md.melt_quench`), then a
relaxation (positions and cell by default) with the same model. The same recipe from a random
cell is melt-quench sampling, the search's baseline (:mod:`pesmith.search.baseline`).

A model trained on little data can run away at high temperature: the MD stops at the first
step with two atoms closer than ``min_distance`` (Å), and the candidate fails with that reason.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from pydantic import Field

from pesmith.errors import SimulationFailed
from pesmith.simulate.md import MeltQuenchSettings, melt_quench
from pesmith.simulate.relax import Relaxed, RelaxSettings, relax, relaxed_or_reason

from .initial_set import Section
from .relaxation import model_calculator

SEED_KEY = "anneal_seed"  # Atoms.info key carrying each task's random seed into a worker


class QuenchSettings(Section):
    """MD on a temperature schedule, then a relaxation, both with the model."""

    melt_quench: MeltQuenchSettings = MeltQuenchSettings(melt_K=1500.0, melt_ps=0.2, quench_ps=0.4, final_K=300.0, timestep_fs=2.0, interval=50)
    min_distance: float = Field(1.2, gt=0, le=3, description="Å; the MD stops (the candidate fails) when two atoms come closer")
    relax: RelaxSettings = RelaxSettings(relax="cell", fmax=0.05, steps=300)


class AnnealSettings(QuenchSettings):
    """A pool annealed before confirmation: each step's ``candidates`` lowest unique GA
    candidates and ``melt_quenches`` random cells of the step's composition are annealed and
    relaxed with the model, and the lowest ``confirm.candidates`` of the pool (duplicates
    merged) go to the reference: lowest in model energy, or with ``screen`` in the reference's
    energy at the model-relaxed geometry (one single point per distinct member, labeled into
    reference.db). Both counts 0 (the default): the GA's candidates go as they are."""

    candidates: int = Field(0, ge=0, le=10_000, description="GA candidates annealed per step (0: none)")
    melt_quenches: int = Field(0, ge=0, le=10_000, description="random cells melt-quenched into the pool per step (0: none)")
    volume_per_atom: float | None = Field(None, gt=5, lt=60, description="Å^3 of the random cells; default: interpolated between the hull's crystals")
    screen: bool = Field(False, description="rank the pool by a reference single point of each distinct member instead of the model energy")


def anneal(atoms: Atoms, calculator: Calculator, settings: QuenchSettings, rng: np.random.Generator) -> Relaxed:
    """MD of ``atoms`` with ``calculator`` on ``settings.melt_quench``'s schedule, then
    ``settings.relax``; the relaxed structure and its energy (eV).

    Raises
    ------
    SimulationFailed
        The MD stopped at two atoms closer than ``settings.min_distance`` or diverged, or the
        relaxation did not converge.
    """
    schedule = settings.melt_quench.model_copy(update={"interval": settings.melt_quench.n_steps})  # the last frame only
    frames = melt_quench(atoms, calculator, schedule, rng, min_distance=settings.min_distance)
    if not frames:
        raise SimulationFailed(f"anneal MD stopped early: two atoms closer than {settings.min_distance} Å (the model is unstable there)")
    return relax(frames[-1], calculator, settings.relax)


def anneal_with_model(model_path: str, settings: QuenchSettings, threads: int, atoms: Atoms) -> Relaxed:
    """Mapped task: :func:`anneal` with the model of ``model_path``, seeded by
    ``atoms.info[SEED_KEY]``; a failure comes back as a result with a ``reason``."""
    rng = np.random.default_rng(int(atoms.info[SEED_KEY]))
    bare = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return relaxed_or_reason(
        lambda: model_calculator(model_path, threads),
        lambda structure: anneal(structure, model_calculator(model_path, threads), settings, rng),
        bare,
        settings.relax.time_limit,
    )
