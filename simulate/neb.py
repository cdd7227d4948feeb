"""Climbing-image nudged elastic band (ASE's :class:`ase.mep.NEB`, improved tangent) with any
ASE calculator or a pesmith model file: the minimum-energy path and barrier between two
structures of the same atoms.

The endpoints are optionally relaxed first (:func:`pesmith.simulate.relax.relax`, positions
only, their constraints kept), the images in between interpolated linearly (or with IDPP) and
the band relaxed with FIRE, climbing image on from the start. After every FIRE step the band is
written, atomically, to an extxyz file (one frame per image: positions, energy, forces,
``info["neb_step"]``), so a killed run leaves the last complete band; :func:`run_neb` with
``resume=True`` continues from its images (FIRE's velocities start again from zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import find_mic
from pydantic import BaseModel, ConfigDict, Field

from pesmith import ase_files
from pesmith.atomic_io import atomic_path
from pesmith.errors import ConfigError, DataError, SimulationFailed

from .relax import RelaxSettings, relax


class NEBSettings(BaseModel):
    """One band: images, convergence, springs, interpolation and endpoint relaxation."""

    model_config = ConfigDict(extra="forbid")

    images: int = Field(5, ge=1, description="images between the two endpoints")
    fmax: float = Field(0.05, gt=0, description="eV/Å: converged when every NEB force (climbing image included) is below it; also the endpoints' criterion")
    steps: int = Field(500, ge=1, description="FIRE steps of the band in all (a resumed run counts those done); also the endpoints' limit")
    spring: float = Field(0.1, gt=0, description="eV/Å^2, spring constant between neighbouring images")
    idpp: bool = Field(False, description="interpolate with the image-dependent pair potential instead of a straight line")
    relax_endpoints: bool = Field(True, description="relax both endpoints (positions) before the band")


@dataclass
class NEBResult:
    """A relaxed band: energies (eV) and reaction coordinate (Å, cumulative distance along the
    band) of every image, endpoints included; the barriers (eV) from each end to the highest
    image; whether every NEB force fell below ``fmax`` (eV/Å); and the band file."""

    energies: np.ndarray
    reaction_coordinate: np.ndarray
    barrier_forward: float
    barrier_backward: float
    converged: bool
    steps: int
    max_force: float
    climbing_image: int
    band: Path


def run_neb(
    initial: Atoms,
    final: Atoms,
    calculator: Calculator | str | Path,
    settings: NEBSettings,
    band: Path,
    resume: bool = False,
    names: tuple[str, str] = ("initial structure", "final structure"),
) -> NEBResult:
    """Relax a climbing-image band from ``initial`` to ``final`` with ``calculator`` (an ASE
    calculator, or the path of a pesmith model file); the band goes to ``band`` (extxyz).

    Constraints of ``initial`` (``FixAtoms`` of a slab's lower layers, ...) apply to every
    image. ``names`` name the endpoints in error messages (e.g. their files).

    Raises
    ------
    DataError
        The endpoints differ in atom count, species order, cell or periodicity, or ``band`` (with
        ``resume``) holds other atoms.
    ConfigError
        ``band`` exists and ``resume`` is not set (nothing is overwritten), or ``resume`` without
        a band, or with a band of another number of images.
    SimulationFailed
        An endpoint relaxation did not converge in ``settings.steps`` steps, or the calculator
        failed (the message says where).
    """
    from ase.mep import NEB
    from ase.optimize import FIRE

    check_endpoints(initial, final, names)
    if isinstance(calculator, (str, Path)):
        from pesmith.calculator import PesmithCalculator

        calculator = PesmithCalculator.from_file(calculator)
    if resume:
        images, done = _read_band(band, initial, settings.images)
    else:
        if band.exists():
            raise ConfigError(f"{band} exists: pass --resume to continue its band, or choose another output")
        ends = [_endpoint(atoms, initial, calculator, settings, name) for atoms, name in zip((initial, final), names)]
        images = [ends[0], *(_image(initial) for _ in range(settings.images)), ends[1]]
        done = 0
    for image in images[1:-1]:
        image.calc = _ImageCalculator(calculator)
    neb = NEB(images, k=settings.spring, climb=True, method="improvedtangent")
    if not resume:
        neb.interpolate(method="idpp" if settings.idpp else "linear", mic=bool(initial.pbc.any()), apply_constraint=False)
    band.parent.mkdir(parents=True, exist_ok=True)
    optimizer = FIRE(neb, logfile=None)
    max_force = np.inf

    def after_step() -> None:
        nonlocal max_force
        max_force = float(np.linalg.norm(neb.get_forces(), axis=1).max())  # the images' results are cached
        _write_band(band, images, neb, done + optimizer.nsteps)

    optimizer.attach(after_step, interval=1)  # also called at the start, before the first step
    try:
        converged = bool(optimizer.run(fmax=settings.fmax, steps=max(0, settings.steps - done)))
    except Exception as exc:  # the calculator failed (an element it has no parameters for, a crash)
        raise SimulationFailed(f"the band at step {done + optimizer.nsteps}: {_reason(exc)}") from exc
    energies = np.array(neb.energies, dtype=float)
    top = int(np.argmax(energies))
    return NEBResult(
        energies=energies,
        reaction_coordinate=reaction_coordinate(images),
        barrier_forward=float(energies[top] - energies[0]),
        barrier_backward=float(energies[top] - energies[-1]),
        converged=converged,
        steps=done + optimizer.nsteps,
        max_force=max_force,
        climbing_image=top,
        band=band,
    )


def check_endpoints(initial: Atoms, final: Atoms, names: tuple[str, str] = ("initial structure", "final structure")) -> None:
    """Raise :class:`DataError` unless ``initial`` and ``final`` hold the same atoms in the same
    order, in the same cell with the same periodicity; ``names`` name them in the message."""
    first, second = names
    if len(initial) != len(final):
        raise DataError(f"{first} has {len(initial)} atoms and {second} {len(final)}: the endpoints of a band hold the same atoms; make the two structures match")
    differ = np.flatnonzero(initial.numbers != final.numbers)
    if len(differ):
        i = int(differ[0])
        raise DataError(
            f"{first} and {second} order their species differently (atom {i} is {initial[i].symbol} in one, {final[i].symbol} in the other);"
            " write both with the atoms in the same order"
        )
    if (initial.pbc != final.pbc).any() or not np.allclose(initial.cell.array[initial.pbc], final.cell.array[final.pbc], atol=1e-6):
        raise DataError(f"{first} and {second} have different cells or periodicity: a band needs one cell; give both endpoints the same cell")


def reaction_coordinate(images: list[Atoms]) -> np.ndarray:
    """Cumulative distance (Å) along the band: the norm of each image's displacement from the
    previous one over all atoms (minimum image in periodic directions), starting at 0."""
    steps = [np.linalg.norm(find_mic(b.positions - a.positions, a.cell, a.pbc)[0]) for a, b in zip(images[:-1], images[1:])]
    return np.concatenate([[0.0], np.cumsum(steps)])


class _ImageCalculator(Calculator):
    """One image's view of a calculator shared by the band: each image keeps its own results, so
    the band's repeated force calls per FIRE step cost one evaluation per image."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, calculator: Calculator):
        super().__init__()
        self.calculator = calculator

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy = float(self.calculator.get_potential_energy(self.atoms))
        self.results = {"energy": energy, "free_energy": energy, "forces": np.array(self.calculator.get_forces(self.atoms))}


def _image(template: Atoms) -> Atoms:
    """A copy of ``template`` (constraints kept) without a calculator."""
    image = template.copy()
    image.calc = None
    return image


def _endpoint(atoms: Atoms, template: Atoms, calculator: Calculator, settings: NEBSettings, name: str) -> Atoms:
    """``atoms`` with ``template``'s constraints, relaxed if ``settings.relax_endpoints``, its
    energy and forces frozen on it."""
    endpoint = _image(template)
    endpoint.set_positions(atoms.positions, apply_constraint=False)
    if settings.relax_endpoints:
        try:
            result = relax(endpoint, calculator, RelaxSettings(relax="positions", fmax=settings.fmax, steps=settings.steps))
        except Exception as exc:  # not converged, or the calculator failed
            raise SimulationFailed(f"relaxing the {name}: {_reason(exc)}") from exc
        endpoint.set_positions(result.atoms.positions, apply_constraint=False)
        energy, forces = result.energy, result.forces
    else:
        try:
            energy, forces = calculator.get_potential_energy(endpoint), calculator.get_forces(endpoint)
        except Exception as exc:
            raise SimulationFailed(f"the {name}: {_reason(exc)}") from exc
    endpoint.calc = SinglePointCalculator(endpoint, energy=float(energy), forces=np.array(forces))
    return endpoint


def _reason(exc: Exception) -> str:
    """The message of a :class:`SimulationFailed`, else the exception's type and message."""
    return str(exc) if isinstance(exc, SimulationFailed) else f"{type(exc).__name__}: {exc}"


def _write_band(band: Path, images: list[Atoms], neb, step: int) -> None:
    """Every image with its energy (eV) and forces (eV/Å; unconstrained for the images between
    the endpoints), ``info["neb_step"]``, written to ``band`` through a temporary file and a rename."""
    forces = neb.real_forces.copy()  # zero for the endpoints, whose forces are frozen on them
    forces[0], forces[-1] = images[0].get_forces(apply_constraint=False), images[-1].get_forces(apply_constraint=False)
    frames = []
    for image, energy, force in zip(images, neb.energies, forces):
        frame = Atoms(image.numbers, positions=image.positions, cell=image.cell, pbc=image.pbc)
        frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=force)
        frame.info["neb_step"] = step
        frames.append(frame)
    with atomic_path(band) as temporary:
        ase_files.write(temporary, frames, format="extxyz")


def _read_band(band: Path, template: Atoms, images: int) -> tuple[list[Atoms], int]:
    """The images of ``band`` with ``template``'s constraints (endpoints with their stored energy
    and forces frozen on them) and the FIRE steps already done."""
    if not band.is_file():
        raise ConfigError(f"--resume: {band} does not exist; start the band without --resume")
    try:
        frames = ase_files.read(band, index=":", format="extxyz")
    except Exception as exc:
        raise DataError(f"{band}: cannot read the band ({type(exc).__name__}: {exc}); delete it and start again without --resume") from exc
    if len(frames) != images + 2:
        raise ConfigError(f"{band} holds {len(frames) - 2} images between its endpoints, not {images}: resume with --images {len(frames) - 2}")
    if any(len(frame) != len(template) or (frame.numbers != template.numbers).any() for frame in frames):
        raise DataError(f"{band} holds other atoms than the endpoints: it is the band of another system; choose another output")
    out = []
    for index, frame in enumerate(frames):
        image = _image(template)
        image.set_positions(frame.positions, apply_constraint=False)
        if index in (0, len(frames) - 1):
            image.calc = SinglePointCalculator(image, energy=frame.get_potential_energy(), forces=frame.get_forces())
        out.append(image)
    return out, int(frames[0].info["neb_step"])
