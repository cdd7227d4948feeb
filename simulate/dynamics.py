"""Molecular dynamics with any ASE calculator: NVE (velocity Verlet) or NVT (Langevin, Bussi),
writing a trajectory and a log as it goes, and continuing a run from what it wrote.

The trajectory (extxyz, a frame every ``interval`` steps with positions, momenta, energy and
forces, ``info["md_step"]``) and the log (CSV: step, time in fs, temperature in K, potential,
kinetic and total energy in eV) are appended and flushed frame by frame, so a killed run leaves
every finished frame readable. :func:`run_md` with ``resume=True`` starts from the last frame of
the trajectory (its positions, cell and momenta) and runs the steps that are left; the random
stream of a thermostat is not restored, so a resumed stochastic run is a valid continuation, not
the same numbers as one run through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pesmith import ase_files
from pesmith.errors import ConfigError, DataError, SimulationFailed

from .frames import labeled_frame

Ensemble = Literal["nve", "langevin", "bussi"]
LOG_COLUMNS = "step,time_fs,temperature_K,epot_eV,ekin_eV,etot_eV"


class MDSettings(BaseModel):
    """One MD run: ensemble, time step, length, temperatures and output interval."""

    model_config = ConfigDict(extra="forbid")

    ensemble: Ensemble = "langevin"
    timestep_fs: float = Field(1.0, gt=0, le=10, description="fs")
    steps: int = Field(1000, ge=1, description="MD steps in all (a resumed run counts the steps already done)")
    temperature_K: float = Field(300.0, ge=0, description="K: initial velocities (Maxwell-Boltzmann) and the thermostat's target")
    final_K: float | None = Field(None, ge=0, description="K; langevin only: the target ramps linearly from temperature_K to final_K")
    friction: float = Field(0.01, gt=0, le=1, description="1/fs, Langevin")
    taut_fs: float = Field(100.0, gt=0, description="fs, Bussi thermostat time constant")
    interval: int = Field(10, ge=1, description="steps between trajectory frames and log lines")
    seed: int = Field(0, description="seed of the initial velocities and the thermostat noise")

    @model_validator(mode="after")
    def _ramp_needs_langevin(self) -> "MDSettings":
        if self.final_K is not None and self.ensemble != "langevin":
            raise ValueError(f"final_K (a temperature ramp) needs ensemble langevin, not {self.ensemble}")
        return self

    def target_K(self, step: int) -> float:
        """Thermostat temperature (K) at ``step``."""
        if self.final_K is None:
            return self.temperature_K
        return self.temperature_K + (self.final_K - self.temperature_K) * step / self.steps


@dataclass
class MDRun:
    """What a run did: steps done (in all), frames written, mean temperature (K) over its log lines
    after the first fifth of the run."""

    steps: int
    frames: int
    mean_temperature_K: float


def run_md(atoms: Atoms, calculator: Calculator, settings: MDSettings, trajectory: Path, log: Path, resume: bool = False) -> MDRun:
    """Run ``settings.steps`` MD steps of ``atoms`` with ``calculator``; frames to ``trajectory``,
    lines to ``log`` (both created, or with ``resume`` continued from their last frame).

    Raises
    ------
    ConfigError
        ``trajectory`` exists and ``resume`` is not set (nothing is overwritten), or ``resume``
        without a trajectory to continue.
    SimulationFailed
        The positions became non-finite (lower ``timestep_fs``).
    """
    from ase.md.bussi import Bussi
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet
    from ase.parallel import DummyMPI

    rng = np.random.default_rng(settings.seed)
    if resume:
        work, done = _last_frame(trajectory)
    else:
        if trajectory.exists():
            raise ConfigError(f"{trajectory} exists: pass --resume to continue it, or choose another output")
        work, done = atoms.copy(), 0
        thermalize_momenta(work, temperature_K=settings.temperature_K, rng=rng, comm=DummyMPI())
        trajectory.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(LOG_COLUMNS + "\n")
    work.calc = calculator
    dt = settings.timestep_fs * units.fs
    if settings.ensemble == "nve":
        dynamics = VelocityVerlet(work, dt)
    elif settings.ensemble == "langevin":
        dynamics = Langevin(work, dt, temperature_K=settings.target_K(done), friction=settings.friction / units.fs, fixcm=False, rng=rng, comm=DummyMPI())
    else:
        dynamics = Bussi(work, dt, temperature_K=settings.temperature_K, taut=settings.taut_fs * units.fs, rng=rng)
    frames = 0

    def after_step() -> None:
        nonlocal frames
        step = done + dynamics.nsteps
        if settings.ensemble == "langevin":
            dynamics.set_temperature(temperature_K=settings.target_K(step))
        if dynamics.nsteps == 0 or step % settings.interval:
            return
        if not np.isfinite(work.positions).all():
            raise SimulationFailed(f"MD of {work.get_chemical_formula()} diverged before step {step}; lower timestep_fs")
        _append(trajectory, log, work, step, settings.timestep_fs)
        frames += 1

    dynamics.attach(after_step, interval=1)
    dynamics.run(max(0, settings.steps - done))
    temperatures = np.loadtxt(log, delimiter=",", skiprows=1, ndmin=2)
    late = temperatures[temperatures[:, 0] > settings.steps / 5, 2] if len(temperatures) else np.zeros(0)
    return MDRun(done + dynamics.nsteps, frames, float(late.mean()) if len(late) else float("nan"))


def _append(trajectory: Path, log: Path, atoms: Atoms, step: int, timestep_fs: float) -> None:
    """One frame and one log line, flushed."""
    epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
    frame = labeled_frame(atoms, epot, atoms.get_forces())
    frame.info["md_step"] = step
    ase_files.write(trajectory, frame, format="extxyz", append=True)
    with open(log, "a") as handle:
        handle.write(f"{step},{step * timestep_fs:.6g},{atoms.get_temperature():.6g},{epot:.10g},{ekin:.10g},{epot + ekin:.10g}\n")


def _last_frame(trajectory: Path) -> tuple[Atoms, int]:
    """The last complete frame of ``trajectory`` (positions, cell, momenta) and its step."""
    if not trajectory.is_file():
        raise ConfigError(f"--resume: {trajectory} does not exist; start the run without --resume")
    try:
        frames = ase_files.read(trajectory, index=":", format="extxyz")
    except Exception as exc:  # a frame cut short by a kill
        raise DataError(f"{trajectory}: its last frame is incomplete ({type(exc).__name__}); delete that frame's lines and resume") from exc
    last = frames[-1]
    atoms = Atoms(last.numbers, positions=last.positions, cell=last.cell, pbc=last.pbc, momenta=last.get_momenta())
    return atoms, int(last.info["md_step"])
