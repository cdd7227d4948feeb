"""Amorphous cells: random periodic packings and melt-quench MD with any ASE calculator.

:func:`random_cell` packs atoms into a cube without jamming: uniform random positions, then the
overlaps below ``min_distance`` are removed by minimizing a soft-sphere energy (L-BFGS), which
works up to packing fractions far beyond where random sequential addition stalls (about 0.38,
i.e. 2.1 Å at 12 Å^3/atom; :func:`pesmith.testing.random_positions` already crawls at 15.5).
:func:`melt_quench` heats such a cell with Langevin dynamics, holds it at ``melt_K``, cools it
linearly to ``final_K`` and returns snapshots. The volume stays fixed (NVT at the density the
cell was made with); there is no barostat.

Every random draw comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.neighborlist import primitive_neighbor_list
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import minimize

from pesmith.errors import CalculationFailed, ConfigError, SimulationFailed

# Packing fraction pi d^3 / (6 v) of spheres of diameter d at v Å^3/atom: no disordered packing
# is denser than random close packing (about 0.64; fcc, the densest of all, is 0.7405).
RANDOM_CLOSE_PACKING = 0.64
PUSH_MARGIN = 0.03  # overlaps are removed up to (1 + PUSH_MARGIN) * min_distance


def packing_fraction(volume_per_atom: float, min_distance: float) -> float:
    """Fraction of the volume filled by spheres of diameter ``min_distance`` (Å) at
    ``volume_per_atom`` (Å^3)."""
    return math.pi * min_distance**3 / (6.0 * volume_per_atom)


def random_cell(
    symbols_counts: dict[str, int],
    volume_per_atom: float,
    rng: np.random.Generator,
    min_distance: float = 2.0,
    max_attempts: int = 5,
) -> Atoms:
    """A random periodic packing in a cubic cell, no two atoms closer than ``min_distance``.

    Parameters
    ----------
    symbols_counts
        Atoms per element, e.g. ``{"Li": 15, "Si": 4}``; elements are shuffled over the sites.
    volume_per_atom
        Å^3 per atom; the cube edge is ``(n_atoms * volume_per_atom) ** (1/3)`` Å.
    rng
        Source of every random number (positions, element order).
    min_distance
        Å, between any two atoms including periodic images.
    max_attempts
        Fresh random starts before giving up; each is one bounded L-BFGS minimization.

    Returns
    -------
    Atoms
        Positions wrapped into the cell, ``pbc=True``, no calculator.

    Raises
    ------
    ConfigError
        Counts or volume invalid, a packing fraction above random close packing (such a packing
        cannot be disordered), or no packing found in ``max_attempts`` starts.
    """
    symbols = [s for s, n in symbols_counts.items() for _ in range(int(n))]
    if not symbols or any(int(n) < 0 for n in symbols_counts.values()):
        raise ConfigError(f"random_cell: atom counts must be >= 0 with at least one atom, got {symbols_counts}")
    if not (volume_per_atom > 0 and min_distance > 0):
        raise ConfigError(f"random_cell: volume_per_atom ({volume_per_atom} Å^3) and min_distance ({min_distance} Å) must be > 0")
    fraction = packing_fraction(volume_per_atom, min_distance)
    if fraction > RANDOM_CLOSE_PACKING:
        densest = math.pi * min_distance**3 / (6.0 * RANDOM_CLOSE_PACKING)
        raise ConfigError(
            f"random_cell: min_distance {min_distance} Å at {volume_per_atom} Å^3/atom fills {fraction:.2f} of the"
            f" volume, beyond random close packing ({RANDOM_CLOSE_PACKING}); raise volume_per_atom to at least"
            f" {densest:.1f} Å^3 or lower min_distance"
        )
    n_atoms = len(symbols)
    cell = np.eye(3) * (n_atoms * volume_per_atom) ** (1.0 / 3.0)
    target = min_distance * (1.0 + PUSH_MARGIN)
    closest = 0.0
    for _ in range(max_attempts):
        start = rng.uniform(0.0, 1.0, (n_atoms, 3)) @ cell
        positions = push_apart(start, cell, target)
        closest = min_image_distance(positions, cell, min_distance)
        if closest >= min_distance:
            atoms = Atoms(list(rng.permutation(symbols)), positions=positions, cell=cell, pbc=True)
            atoms.wrap()
            return atoms
    raise ConfigError(
        f"random_cell: no packing of {n_atoms} atoms at {volume_per_atom} Å^3/atom with min_distance {min_distance} Å"
        f" in {max_attempts} attempts (closest pair {closest:.2f} Å, packing fraction {fraction:.2f});"
        " raise volume_per_atom or lower min_distance"
    )


def push_apart(positions: np.ndarray, cell: np.ndarray, distance: float, max_iterations: int = 2000) -> np.ndarray:
    """Positions ``(n, 3)`` (Å) moved to a minimum of ``sum_pairs max(0, distance - r)^2``:
    every pair closer than ``distance`` (Å, periodic images included) pushed apart."""
    pbc = np.array([True, True, True])

    def energy_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = flat.reshape(-1, 3)
        i, vectors = primitive_neighbor_list("iD", pbc, cell, x, distance, self_interaction=False)
        r = np.linalg.norm(vectors, axis=1)  # (n_pairs,), each pair twice
        overlap = distance - r
        gradient = np.zeros_like(x)
        np.add.at(gradient, i, (2.0 * overlap / np.maximum(r, 1e-12))[:, None] * vectors)  # (n, 3)
        return 0.5 * float(np.sum(overlap**2)), gradient.ravel()

    result = minimize(
        energy_and_gradient, positions.ravel(), jac=True, method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": 1e-10, "ftol": 1e-16},
    )
    return result.x.reshape(-1, 3)


def min_image_distance(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> float:
    """Shortest distance (Å) between two atoms or an atom and an image, or ``cutoff`` if none
    is closer than ``cutoff``."""
    d = primitive_neighbor_list("d", np.array([True] * 3), cell, positions, cutoff, self_interaction=False)
    return float(d.min()) if len(d) else float(cutoff)


def composition_counts(x: float, n_atoms: int, elements: tuple[str, str] = ("Li", "Si")) -> dict[str, int]:
    """Atoms per element of a cell of about ``n_atoms`` atoms of composition A_x B (``x`` = n_A / n_B).

    Every size within 25 % of ``n_atoms`` is tried; the one whose ratio is nearest ``x`` wins,
    ties going to the size nearest ``n_atoms`` (x = 3.75 and 32 atoms gives Li30Si8).

    Raises
    ------
    ConfigError
        ``x`` < 0 or not finite, or so large that no cell of that size has one B atom.
    """
    a, b = elements
    if not (np.isfinite(x) and x >= 0):
        raise ConfigError(f"composition x = {x} (n_{a} / n_{b}) must be a finite number >= 0")
    best: tuple[tuple[float, int], dict[str, int]] | None = None
    for n in range(max(1, n_atoms - n_atoms // 4), n_atoms + n_atoms // 4 + 1):
        n_b = round(n / (1.0 + x))
        if n_b < 1:
            continue
        key = (round(abs((n - n_b) / n_b - x), 9), abs(n - n_atoms))
        if best is None or key < best[0]:
            best = (key, {a: n - n_b, b: n_b})
    if best is None:
        raise ConfigError(f"composition x = {x}: a cell of about {n_atoms} atoms has no {b} atom; raise the atoms per cell")
    return best[1]


def interpolated_volume_per_atom(x: float, crystals: list[Atoms], elements: tuple[str, str] = ("Li", "Si")) -> float:
    """Å^3 per atom at composition A_x B, linear in the A fraction ``x / (1 + x)`` between the
    crystals made only of A and B (averaged per composition; constant beyond the outermost).

    Raises
    ------
    ConfigError
        No crystal consists of A and B only.
    """
    points: dict[float, list[float]] = {}
    for crystal in crystals:
        symbols = crystal.get_chemical_symbols()
        if not symbols or not set(symbols) <= set(elements):
            continue
        fraction = round(symbols.count(elements[0]) / len(symbols), 6)
        points.setdefault(fraction, []).append(crystal.get_volume() / len(crystal))
    if not points:
        raise ConfigError(f"no crystal of {elements[0]} and {elements[1]} only to interpolate the volume per atom from; give volume_per_atom (Å^3)")
    fractions = sorted(points)
    return float(np.interp(x / (1.0 + x), fractions, [np.mean(points[f]) for f in fractions]))


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
    atoms: Atoms, calculator: Calculator, settings: MeltQuenchSettings, rng: np.random.Generator, min_distance: float | None = None
) -> list[Atoms]:
    """Melt-quench MD of ``atoms`` driven by ``calculator``; snapshots every ``settings.interval`` steps.

    Momenta start from a Maxwell-Boltzmann distribution at ``melt_K``; the Langevin thermostat
    (ASE, no centre-of-mass constraint) follows :meth:`MeltQuenchSettings.target_K` step by step.
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
    thermalize_momenta(work, temperature_K=settings.melt_K, rng=rng, comm=DummyMPI())
    # comm: ASE broadcasts random momenta and forces over MPI's world by default, which hangs in a worker rank
    dynamics = Langevin(
        work, settings.timestep_fs * units.fs, temperature_K=settings.melt_K,
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


def relax_positions(atoms: Atoms, calculator: Calculator, fmax: float = 0.1, steps: int = 100) -> Atoms:
    """``atoms`` after a FIRE relaxation of the positions (cell fixed) with ``calculator``.

    The last structure is returned whether or not every force fell below ``fmax`` (eV/Å) within
    ``steps``; ``info["relax_converged"]`` says which. No calculator is attached.

    Raises
    ------
    SimulationFailed
        The calculator failed.
    """
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calculator
    try:
        converged = FIRE(work, logfile=None).run(fmax=fmax, steps=steps)
    except Exception as exc:
        raise SimulationFailed(f"relaxing {atoms.get_chemical_formula()}: {type(exc).__name__}: {exc}") from exc
    out = Atoms(work.numbers, positions=work.positions, cell=work.cell, pbc=work.pbc)
    out.info.update(atoms.info, relax_converged=bool(converged))
    return out
