"""Langevin MD on a temperature schedule with any ASE calculator (NVT: the cell does not change).

:func:`melt_quench` follows any :class:`TemperatureSchedule` step by step; a melt-quench
(:class:`MeltQuenchSettings`: hold at ``melt_K``, cool linearly to ``final_K``) is the usual one,
a constant temperature another. Every random draw comes from the ``numpy.random.Generator``
passed in.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pesmith.errors import CalculationFailed, SimulationFailed

from .packing import min_image_distance


class TemperatureSchedule(Protocol):
    """What :func:`melt_quench` needs of a run: its length, step, friction, snapshot interval
    and the thermostat temperature at each step."""

    timestep_fs: float  # fs
    friction: float  # 1/fs, Langevin friction
    interval: int  # MD steps between snapshots

    @property
    def n_steps(self) -> int:
        """MD steps in all."""

    def target_K(self, step: int) -> float:
        """Thermostat temperature (K) for MD step ``step`` (1-based; 0 is the start, where the
        momenta are drawn)."""


class MeltQuenchSettings(BaseModel):
    """Langevin melt-quench: hold at ``melt_K`` for ``melt_ps``, then cool linearly to ``final_K``
    over ``quench_ps``; a snapshot every ``interval`` steps. NVT: the cell does not change."""

    model_config = ConfigDict(extra="forbid")

    melt_K: float = Field(2500.0, gt=0, le=10000, description="K, temperature of the melt")
    melt_ps: float = Field(1.0, ge=0, le=1000, description="ps held at melt_K")
    quench_ps: float = Field(2.0, gt=0, le=1000, description="ps of the linear cooling to final_K")
    final_K: float = Field(300.0, gt=0, le=10000, description="K at the end of the quench")
    timestep_fs: float = Field(1.0, ge=0.01, le=5, description="fs")
    friction: float = Field(0.02, gt=0, le=1, description="1/fs, Langevin friction")
    interval: int = Field(50, ge=1, description="MD steps between snapshots")

    @model_validator(mode="after")
    def _consistent(self) -> "MeltQuenchSettings":
        if self.final_K > self.melt_K:
            raise ValueError(f"final_K ({self.final_K}) must not exceed melt_K ({self.melt_K})")
        if self.interval > self.n_steps:
            raise ValueError(f"interval ({self.interval}) is longer than the whole run ({self.n_steps} steps): no snapshot")
        return self

    @property
    def n_melt(self) -> int:
        """MD steps of the hold at ``melt_K``."""
        return round(self.melt_ps * 1000.0 / self.timestep_fs)

    @property
    def n_steps(self) -> int:
        """MD steps in all (hold and quench)."""
        return self.n_melt + max(1, round(self.quench_ps * 1000.0 / self.timestep_fs))

    @property
    def n_snapshots(self) -> int:
        """Snapshots :func:`melt_quench` returns."""
        return self.n_steps // self.interval

    def target_K(self, step: int) -> float:
        """Thermostat temperature (K) for MD step ``step`` (1-based)."""
        if step <= self.n_melt:
            return self.melt_K
        progress = (step - self.n_melt) / (self.n_steps - self.n_melt)
        return self.melt_K + (self.final_K - self.melt_K) * min(progress, 1.0)


def melt_quench(
    atoms: Atoms, calculator: Calculator, settings: TemperatureSchedule, rng: np.random.Generator, min_distance: float | None = None
) -> list[Atoms]:
    """Langevin MD of ``atoms`` driven by ``calculator`` on the temperature schedule ``settings``
    (a melt-quench, :class:`MeltQuenchSettings`, or another); snapshots every ``settings.interval`` steps.

    Momenta start from a Maxwell-Boltzmann distribution at ``settings.target_K(0)`` (``melt_K``);
    the Langevin thermostat (ASE, no centre-of-mass constraint) follows ``settings.target_K`` step by step.
    The volume is that of ``atoms`` throughout (NVT). With ``min_distance`` (Å) the run stops at
    the first step where two atoms (periodic images included) are closer than that.

    Returns
    -------
    list of Atoms
        ``settings.n_snapshots`` frames in time order (fewer if stopped by ``min_distance``):
        numbers, positions, cell, ``pbc``, no calculator; ``info`` holds ``md_step``,
        ``target_K`` and ``temperature_K`` (kinetic, K).

    Raises
    ------
    SimulationFailed
        The calculator failed or the positions became non-finite (lower ``timestep_fs``).
    """
    from ase.md.langevin import Langevin
    from ase.parallel import DummyMPI
    from ase.md.velocitydistribution import thermalize_momenta

    work = atoms.copy()
    work.calc = calculator
    thermalize_momenta(work, temperature_K=settings.target_K(0), rng=rng, comm=DummyMPI())
    # comm: ASE broadcasts random momenta and forces over MPI's world by default, which hangs in a worker rank
    dynamics = Langevin(
        work, settings.timestep_fs * units.fs, temperature_K=settings.target_K(0),
        friction=settings.friction / units.fs, fixcm=False, rng=rng, comm=DummyMPI(),
    )
    frames: list[Atoms] = []

    def after_step() -> None:
        step = dynamics.nsteps
        if min_distance is not None and step > 0 and min_image_distance(work.positions, work.cell.array, min_distance) < min_distance:
            raise _TooClose
        if step > 0 and step % settings.interval == 0:
            if not np.isfinite(work.positions).all():
                raise SimulationFailed(f"melt-quench of {work.get_chemical_formula()} diverged before step {step}; lower timestep_fs")
            frame = Atoms(work.numbers, positions=work.positions, cell=work.cell, pbc=work.pbc)
            frame.info.update(md_step=step, target_K=settings.target_K(step), temperature_K=float(work.get_temperature()))
            frames.append(frame)
        dynamics.set_temperature(temperature_K=settings.target_K(step + 1))

    dynamics.attach(after_step, interval=1)
    try:
        dynamics.run(settings.n_steps)
    except _TooClose:
        pass
    except CalculationFailed:
        raise
    except Exception as exc:
        raise SimulationFailed(f"melt-quench of {work.get_chemical_formula()}: {type(exc).__name__}: {exc}") from exc
    return frames


class _TooClose(Exception):
    """Two atoms came closer than melt_quench's ``min_distance``."""
