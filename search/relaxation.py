"""Relaxations of the search: GA fitness with the model, confirmation with the reference.

Both are functions of one structure that the search maps over workers
(:func:`pesmith.parallel.parallel_map`), so they are module-level and take picklable
arguments. They never raise for a bad candidate: a crash, a non-converged relaxation or a time
limit comes back as a result with a ``reason``; only the caller (rank 0) writes files.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from pydantic import BaseModel, ConfigDict, Field

from pesmith.calculator import ExtrapolationWarning
from pesmith.errors import CalculationFailed, SimulationFailed
from pesmith.labeling import call_with_time_limit
from pesmith.reference import Reference
from pesmith.structures import has_full_cell

RelaxKind = Literal["none", "positions", "cell"]


class RelaxSettings(BaseModel):
    """How a structure is relaxed: ``none`` (single point), ``positions``, or ``cell``
    (positions and cell, FIRE on a Fréchet cell filter)."""

    model_config = ConfigDict(extra="forbid")

    relax: RelaxKind = "positions"
    fmax: float = Field(0.05, gt=0, description="eV/Å: converged when every force is below it")
    smax: float | None = Field(
        None, gt=0, le=100, description="GPa; with relax: cell, converged also needs every stress component below it"
        " (None: the cell filter's own criterion, where fmax applies to stress x volume per atom)",
    )
    steps: int = Field(200, ge=1, description="FIRE steps at most; not converged by then = failed")
    time_limit: float | None = Field(None, gt=0, description="s per structure; beyond it the candidate fails")


@dataclass
class Relaxed:
    """A relaxed structure with its energy (eV), forces (eV/Å), stress (eV/Å^3 or ``None``), or
    the ``reason`` it failed. ``frames`` are labeled intermediate structures (confirmation only)."""

    atoms: Atoms | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    energy_std: float | None = None
    steps: int = 0
    extrapolation: bool = False  # the model warned that descriptors left its training range
    reason: str | None = None
    wall_time: float = 0.0
    frames: list[tuple[Atoms, float, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    max_force: float | None = None  # eV/Å, largest atomic force at the end
    max_stress_GPa: float | None = None  # largest stress component at the end (None without a full cell)

    @property
    def ok(self) -> bool:
        return self.reason is None


def relax(atoms: Atoms, calculator: Calculator, settings: RelaxSettings, frame_interval: int = 0) -> Relaxed:
    """Relax a copy of ``atoms`` with ``calculator``; ``frame_interval > 0`` keeps a labeled frame
    every that many steps (not the last one, which is the result).

    Converged means every atomic force below ``settings.fmax`` (eV/Å) and, for ``relax: cell``
    with ``settings.smax``, every stress component below ``smax`` (GPa). Without ``smax`` a cell
    relaxation stops on the Fréchet filter's criterion, where fmax also bounds stress x volume
    per atom (0.1 eV/Å at 17 Å^3/atom leaves up to about 0.9 GPa).

    Raises
    ------
    SimulationFailed
        When the criteria are not met in ``settings.steps`` steps; the message gives the residuals.
    """
    work = atoms.copy()
    work.calc = calculator
    if hasattr(calculator, "rearm_extrapolation_warning"):
        calculator.rearm_extrapolation_warning()
    frames = []
    steps = 0
    with warnings.catch_warnings(record=True) as caught:  # the model's extrapolation warning, recorded per structure
        warnings.simplefilter("always", ExtrapolationWarning)
        if settings.relax != "none":
            stress_criterion = settings.relax == "cell" and settings.smax is not None
            target = FrechetCellFilter(work) if settings.relax == "cell" else work
            optimizer = FIRE(target, logfile=None)
            if frame_interval > 0:
                optimizer.attach(lambda: frames.append(_labeled_copy(work)), interval=frame_interval)
            if stress_criterion:
                converged = False
                for _ in optimizer.irun(fmax=0.0, steps=settings.steps):  # the loop decides, on forces and stress
                    if _converged(work, settings):
                        converged = True
                        break
            else:
                converged = optimizer.run(fmax=settings.fmax, steps=settings.steps)
            steps = optimizer.nsteps
            if not converged:
                force, stress = _residuals(work)
                criteria = f"fmax {settings.fmax} eV/Å" + (f" and smax {settings.smax} GPa" if stress_criterion else "")
                residual = f"max force {force:.3f} eV/Å" + (f", max stress {stress:.2f} GPa" if stress is not None else "")
                raise SimulationFailed(f"{criteria} not reached in {settings.steps} steps ({settings.relax}): {residual}")
            frames = frames[1:]  # the first is the unrelaxed start
        final = _labeled_copy(work)
    extrapolation = any(issubclass(w.category, ExtrapolationWarning) for w in caught)
    force, stress = _residuals(work)
    return Relaxed(
        atoms=final[0],
        energy=final[1],
        forces=final[2],
        stress=final[3],
        energy_std=calculator.results.get("energy_std"),
        steps=steps,
        extrapolation=extrapolation,
        frames=frames,
        max_force=force,
        max_stress_GPa=stress,
    )


def _residuals(atoms: Atoms) -> tuple[float, float | None]:
    """Largest atomic force (eV/Å) and largest stress component (GPa; None without a full cell)."""
    force = float(np.linalg.norm(atoms.get_forces(), axis=1).max()) if len(atoms) else 0.0
    if not has_full_cell(atoms):
        return force, None
    return force, float(np.abs(atoms.get_stress(voigt=True)).max() / units.GPa)


def _converged(atoms: Atoms, settings: RelaxSettings) -> bool:
    force, stress = _residuals(atoms)
    return force < settings.fmax and (settings.smax is None or stress is None or stress < settings.smax)


def _labeled_copy(atoms: Atoms) -> tuple[Atoms, float, np.ndarray, np.ndarray | None]:
    energy = float(atoms.get_potential_energy())
    forces = np.array(atoms.get_forces(), dtype=np.float64)
    stress = np.array(atoms.get_stress(voigt=True), dtype=np.float64) if has_full_cell(atoms) else None
    copy = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return copy, energy, forces, stress


def model_calculator(model_path: str, threads: int) -> Calculator:
    """The pesmith calculator of a model file, loaded once per process and file version (worker
    processes outlive a map, and a resumed step may write its model file again)."""
    stat = os.stat(model_path)
    return _loaded_calculator(model_path, stat.st_mtime_ns, stat.st_size, threads)


@lru_cache(maxsize=2)
def _loaded_calculator(model_path: str, mtime_ns: int, size: int, threads: int) -> Calculator:
    import torch

    from pesmith import load_calculator

    torch.set_num_threads(threads)
    return load_calculator(model_path)


def relax_with_model(model_path: str, settings: RelaxSettings, threads: int, atoms: Atoms) -> Relaxed:
    """GA fitness: relax ``atoms`` with the model of ``model_path``; failures as a reason."""

    def compute(structure: Atoms) -> Relaxed:
        return relax(structure, model_calculator(model_path, threads), settings)

    return relaxed_or_reason(lambda: model_calculator(model_path, threads), compute, atoms, settings.time_limit)


def relax_with_reference(reference: Reference, settings: RelaxSettings, frame_interval: int, atoms: Atoms) -> Relaxed:
    """Confirmation: relax ``atoms`` with the reference, keeping labeled frames every
    ``frame_interval`` steps when the reference is an ASE calculator (else the final structure only)."""
    return relaxed_or_reason(
        reference.prepare, lambda structure: _reference_relax(reference, settings, frame_interval, structure), atoms, settings.time_limit
    )


def relaxed_or_reason(prepare: Callable[[], object], compute: Callable[[Atoms], Relaxed], atoms: Atoms, time_limit: float | None) -> Relaxed:
    """``compute(atoms)`` after ``prepare()`` (in this worker, so a time-limited forked child
    inherits what it loaded), in a child killed after ``time_limit`` s if one is given; any
    failure, a crash of the model or reference included, becomes a result with a ``reason``."""
    started = time.perf_counter()
    try:
        prepare()
        result = compute(atoms) if time_limit is None else call_with_time_limit(compute, atoms, time_limit)
    except CalculationFailed as exc:
        return Relaxed(reason=str(exc), wall_time=time.perf_counter() - started)
    except Exception as exc:  # a crash must not end the run
        return Relaxed(reason=f"{type(exc).__name__}: {exc}", wall_time=time.perf_counter() - started)
    result.wall_time = time.perf_counter() - started
    return result


def _reference_relax(reference: Reference, settings: RelaxSettings, frame_interval: int, atoms: Atoms) -> Relaxed:
    make_calculator = getattr(reference, "make_calculator", None)
    if make_calculator is not None:
        return relax(atoms, make_calculator(), settings, frame_interval)
    if settings.relax == "none":
        energy, forces, stress = reference.label(atoms)
        return Relaxed(atoms=atoms.copy(), energy=energy, forces=forces, stress=stress)
    relaxed = reference.relax(atoms, fmax=settings.fmax, steps=settings.steps, cell=settings.relax == "cell")
    stress = relaxed.get_stress(voigt=True) if has_full_cell(relaxed) else None
    final = Atoms(relaxed.numbers, positions=relaxed.positions, cell=relaxed.cell, pbc=relaxed.pbc)
    return Relaxed(atoms=final, energy=float(relaxed.get_potential_energy()), forces=relaxed.get_forces(), stress=stress)
