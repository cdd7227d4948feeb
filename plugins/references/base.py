"""Shared machinery of the built-in references: label with an ASE calculator, and relax with it
through :func:`pesmith.simulate.relax.optimize`."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith.errors import LabelingFailed, SimulationFailed
from pesmith.reference import Reference
from pesmith.structures import has_full_cell


class CalculatorReference(Reference):
    """A reference that labels with a fresh ASE calculator from :meth:`make_calculator`.

    Energies in eV, forces in eV/Å, stress in eV/Å^3 (ASE Voigt order and sign), computed only
    for structures with a full 3D periodic cell. Any exception of the calculator (no SCF
    convergence, a crashed program) and any non-finite result become :class:`LabelingFailed`
    (:class:`SimulationFailed` in :meth:`relax`).
    """

    @abstractmethod
    def make_calculator(self) -> Calculator:
        """A new ASE calculator with this reference's parameters."""

    def label(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray | None]:
        work = atoms.copy()
        work.calc = self.make_calculator()
        try:
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces(), dtype=np.float64)
            stress = np.array(work.get_stress(voigt=True), dtype=np.float64) if has_full_cell(work) else None
        except Exception as exc:
            raise LabelingFailed(f"{self._what(atoms)}: {type(exc).__name__}: {exc}") from exc
        if not (np.isfinite(energy) and np.isfinite(forces).all() and (stress is None or np.isfinite(stress).all())):
            raise LabelingFailed(f"{self._what(atoms)}: non-finite energy, forces or stress")
        return energy, forces, stress

    def relax(self, atoms: Atoms, fmax: float = 0.05, steps: int = 200, cell: bool = False) -> Atoms:
        """FIRE relaxation of positions (and the cell with ``cell=True``, Fréchet cell filter).

        Returns a copy carrying its final energy, forces and stress; raises
        :class:`SimulationFailed` if the calculator fails or ``fmax`` (eV/Å) is not reached in
        ``steps`` steps.
        """
        from pesmith.simulate.relax import RelaxSettings, optimize  # here: `pesmith plugins` need not import it

        work = atoms.copy()
        work.calc = self.make_calculator()
        try:
            converged, _ = optimize(work, RelaxSettings(relax="cell" if cell else "positions", fmax=fmax, steps=steps))
            results = {"energy": work.get_potential_energy(), "forces": work.get_forces()}
            if has_full_cell(work):
                results["stress"] = work.get_stress(voigt=True)
        except Exception as exc:
            raise SimulationFailed(f"relaxing {self._what(atoms)}: {type(exc).__name__}: {exc}") from exc
        if not converged:
            raise SimulationFailed(f"relaxing {self._what(atoms)}: fmax {fmax} eV/Å not reached in {steps} steps")
        work.calc = SinglePointCalculator(work, **results)
        return work

    def _what(self, atoms: Atoms) -> str:
        return f"{type(self).__name__} on {atoms.get_chemical_formula()} ({len(atoms)} atoms)"
