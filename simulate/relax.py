"""Relaxations with any ASE calculator: positions, or positions and cell with a stress criterion.

:func:`optimize` is the one FIRE loop; :func:`relax` (a converged result or
:class:`~pesmith.errors.SimulationFailed`) and :func:`relax_positions` (the last structure,
converged or not) are built on it, as is the relaxation of the built-in calculator references.
:func:`relaxed_or_reason` runs a relaxation in a worker and turns any failure into a
:class:`Relaxed` with a ``reason``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from pydantic import BaseModel, ConfigDict, Field

from pesmith.calculator import ExtrapolationWarning
from pesmith.errors import SimulationFailed
from pesmith.labeling import attempt
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


def optimize(atoms: Atoms, settings: RelaxSettings, on_step: Callable[[], None] | None = None, interval: int = 1) -> tuple[bool, int]:
    """FIRE on ``atoms`` in place (its calculator attached) until ``settings``' criteria hold.

    Parameters
    ----------
    atoms
        Moved in place: positions, and with ``settings.relax == "cell"`` the cell (Fréchet cell filter).
    settings
        ``fmax`` (eV/Å) and ``steps``; with ``relax: cell`` and ``smax`` (GPa) every stress
        component must also fall below ``smax``. ``relax: none`` runs no step.
    on_step
        Called every ``interval`` optimizer steps, the start (step 0) included.

    Returns
    -------
    tuple of (bool, int)
        Whether the criteria were met, and the FIRE steps taken.
    """
    if settings.relax == "none":
        return True, 0
    target = FrechetCellFilter(atoms) if settings.relax == "cell" else atoms
    optimizer = FIRE(target, logfile=None)
    if on_step is not None:
        optimizer.attach(on_step, interval=interval)
    if settings.relax == "cell" and settings.smax is not None:
        converged = False
        for _ in optimizer.irun(fmax=0.0, steps=settings.steps):  # the loop decides, on forces and stress
            if _converged(atoms, settings):
                converged = True
                break
    else:
        converged = optimizer.run(fmax=settings.fmax, steps=settings.steps)
    return bool(converged), optimizer.nsteps


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
    with warnings.catch_warnings(record=True) as caught:  # the model's extrapolation warning, recorded per structure
        warnings.simplefilter("always", ExtrapolationWarning)
        keep = (lambda: frames.append(_labeled_copy(work))) if frame_interval > 0 else None
        converged, steps = optimize(work, settings, keep, frame_interval)
        if not converged:
            stress_criterion = settings.relax == "cell" and settings.smax is not None
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


def relax_positions(atoms: Atoms, calculator: Calculator, settings: RelaxSettings) -> Atoms:
    """``atoms`` after a FIRE relaxation with ``calculator`` on ``settings``' criteria.

    The last structure is returned whether or not the criteria (``settings.fmax``, eV/Å, and
    ``smax``, GPa) were met within ``settings.steps``; ``info["relax_converged"]`` says which. No
    calculator is attached.

    Raises
    ------
    SimulationFailed
        The calculator failed.
    """
    work = atoms.copy()
    work.calc = calculator
    try:
        converged, _ = optimize(work, settings)
    except Exception as exc:
        raise SimulationFailed(f"relaxing {atoms.get_chemical_formula()}: {type(exc).__name__}: {exc}") from exc
    out = Atoms(work.numbers, positions=work.positions, cell=work.cell, pbc=work.pbc)
    out.info.update(atoms.info, relax_converged=converged)
    return out


def relaxed_or_reason(prepare: Callable[[], object], compute: Callable[[Atoms], Relaxed], atoms: Atoms, time_limit: float | None) -> Relaxed:
    """``compute(atoms)`` after ``prepare()`` (in this worker, so a time-limited forked child
    inherits what it loaded), in a child killed after ``time_limit`` s if one is given; any
    failure, a crash of the model or reference included, becomes a result with a ``reason``
    (:func:`pesmith.labeling.attempt`)."""
    done = attempt(compute, atoms, prepare, time_limit)
    if done.reason is not None:
        return Relaxed(reason=done.reason, wall_time=done.wall_time)
    done.value.wall_time = done.wall_time
    return done.value


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
