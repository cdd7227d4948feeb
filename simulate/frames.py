"""Labeled frames: a structure with the energy, forces and stress computed on it, held as ASE
holds results (a ``SinglePointCalculator``), ready to write to extxyz or an ase.db."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator


def labeled_frame(atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None = None) -> Atoms:
    """A new :class:`~ase.Atoms` with the numbers, positions (Å), cell, pbc and, when ``atoms`` has
    them, momenta of ``atoms``, its results the ``energy`` (eV), ``forces`` ((n_atoms, 3) eV/Å)
    and, if given, ``stress`` (Voigt, eV/Å^3). ``info`` and other arrays are not copied."""
    frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc, momenta=atoms.arrays.get("momenta"))
    results = {"energy": energy, "forces": forces} if stress is None else {"energy": energy, "forces": forces, "stress": stress}
    frame.calc = SinglePointCalculator(frame, **results)
    return frame
