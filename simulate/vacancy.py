"""Vacancy formation energies with any ASE calculator.

E_f = E[bulk with the site removed, relaxed] - E[bulk, relaxed] + mu, in eV, where mu (eV/atom)
is the chemical potential of the removed element: a number, or by default the energy per atom
of ASE's reference crystal of the element (:func:`ase.build.bulk`: bcc for Li, fcc for Al)
relaxed, cell and positions, with the same calculator. Bulk and defect are relaxed at the
bulk's fixed cell, positions only (:func:`pesmith.simulate.relax.relax`); the supercell must be
large enough that a vacancy does not meet its periodic images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from pesmith.errors import DataError, SimulationFailed
from pesmith.structures import neighbor_pairs

from .relax import Relaxed, RelaxSettings, relax


@dataclass
class Vacancy:
    """One vacancy: the removed ``site`` (index in the bulk), its ``element``, the number of
    sites of the cell equivalent to it, E_f and its terms (eV; ``chemical_potential`` eV/atom),
    and the relaxation of the defect cell (FIRE steps, largest force in eV/Å)."""

    site: int
    element: str
    multiplicity: int
    formation_energy: float
    defect_energy: float
    bulk_energy: float
    chemical_potential: float
    steps: int
    max_force: float


def vacancy_formation(
    bulk: Atoms,
    calculator: Calculator,
    sites: Sequence[int] | None = None,
    element: str = "Li",
    chemical_potential: float | None = None,
    settings: RelaxSettings | None = None,
) -> list[Vacancy]:
    """Formation energy of a vacancy at each of ``sites`` of ``bulk`` (default: one site of each
    class of equivalent ``element`` sites, :func:`equivalent_sites`).

    ``chemical_potential`` is mu of ``element`` in eV/atom; ``None`` relaxes ASE's reference
    crystal of ``element`` with ``calculator`` (:func:`reference_chemical_potential`).
    ``settings`` (default: FIRE to 0.01 eV/Å in 1000 steps) apply to every relaxation; their
    ``relax`` kind is ignored (bulk and defect: positions, reference crystal: cell).

    Raises
    ------
    DataError
        ``bulk`` has no ``element`` atom, or a site is out of range or of another element.
    SimulationFailed
        A relaxation did not converge, or the calculator failed (the message says which).
    """
    settings = settings or RelaxSettings(fmax=0.01, steps=1000)
    classes = equivalent_sites(bulk, element)
    sites = [members[0] for members in classes] if sites is None else list(sites)
    for site in sites:
        if not -len(bulk) <= site < len(bulk) or bulk[site].symbol != element:
            found = "out of range" if not -len(bulk) <= site < len(bulk) else f"a {bulk[site].symbol} atom"
            raise DataError(f"site {site} of {bulk.get_chemical_formula()} is {found}, not {element}; give indices of {element} atoms (0-based)")
    positions = settings.model_copy(update={"relax": "positions"})
    mu = reference_chemical_potential(element, calculator, settings) if chemical_potential is None else float(chemical_potential)
    relaxed = _relaxed(bulk, calculator, positions, f"the bulk {bulk.get_chemical_formula()}")
    out = []
    for site in sites:
        site = site % len(bulk)
        defect = relaxed.atoms.copy()
        del defect[site]
        result = _relaxed(defect, calculator, positions, f"the vacancy at site {site}")
        out.append(Vacancy(
            site=site, element=element, multiplicity=next(len(members) for members in classes if site in members),
            formation_energy=result.energy - relaxed.energy + mu, defect_energy=result.energy, bulk_energy=relaxed.energy,
            chemical_potential=mu, steps=result.steps, max_force=result.max_force,
        ))
    return out


def reference_chemical_potential(element: str, calculator: Calculator, settings: RelaxSettings) -> float:
    """Energy per atom (eV) of ASE's reference crystal of ``element`` (:func:`ase.build.bulk`, bcc
    for Li) with its cell and positions relaxed by ``calculator`` (``settings.fmax``, ``steps``)."""
    from ase.build import bulk

    crystal = bulk(element)
    result = _relaxed(crystal, calculator, settings.model_copy(update={"relax": "cell"}), f"the reference crystal of {element}")
    return result.energy / len(crystal)


def equivalent_sites(atoms: Atoms, element: str, cutoff: float = 6.0, tolerance: float = 0.01) -> list[list[int]]:
    """The ``element`` sites of ``atoms`` in classes of equivalent sites, in index order.

    Two sites are equivalent when their neighbour shells up to ``cutoff`` (Å) match: the same
    number of neighbours of each species, at distances equal within ``tolerance`` (Å).
    Symmetry-equivalent sites always are; inequivalent sites whose shells agree to 6 Å are rare.

    Raises
    ------
    DataError
        ``atoms`` has no ``element`` atom.
    """
    indices = np.flatnonzero(atoms.symbols == element)
    if not len(indices):
        raise DataError(f"{atoms.get_chemical_formula()} has no {element} atom: a {element} vacancy needs a structure with {element}")
    centers, neighbors, shifts = neighbor_pairs(atoms, cutoff)
    distances = np.linalg.norm(atoms.positions[neighbors] - atoms.positions[centers] + shifts @ atoms.cell.array, axis=1)
    species = np.unique(atoms.numbers)
    classes: list[list[int]] = []
    shells: list[list[np.ndarray]] = []
    for site in indices:
        mine = centers == site
        shell = [np.sort(distances[mine & (atoms.numbers[neighbors] == z)]) for z in species]
        match = next((k for k, other in enumerate(shells) if all(len(a) == len(b) and np.allclose(a, b, atol=tolerance) for a, b in zip(shell, other))), None)
        if match is None:
            classes.append([int(site)])
            shells.append(shell)
        else:
            classes[match].append(int(site))
    return classes


def _relaxed(atoms: Atoms, calculator: Calculator, settings: RelaxSettings, what: str) -> Relaxed:
    """:func:`relax`, any failure (not converged, the calculator failed) a :class:`SimulationFailed`
    that names ``what`` was relaxed."""
    try:
        return relax(atoms, calculator, settings)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, SimulationFailed) else f"{type(exc).__name__}: {exc}"
        raise SimulationFailed(f"relaxing {what}: {reason}") from exc
