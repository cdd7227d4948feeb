"""The contract of a reference (labeling) plugin: an electronic-structure method."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from ase import Atoms


class Reference(ABC):
    """Labels structures with energies (eV), forces (eV/Å) and stress (eV/Å^3).

    A setup problem (bad parameter, missing program) raises
    :class:`pesmith.errors.ReferenceSetupError` at construction; a calculation that fails for one
    structure (no SCF convergence, crash, time-out) raises
    :class:`pesmith.errors.LabelingFailed`, which callers record as a failed label.
    """

    @abstractmethod
    def label(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Return ``(energy_eV, forces_eV_per_A (n_atoms, 3), stress_eV_per_A3 (6,) or None)``."""

    @abstractmethod
    def relax(self, atoms: Atoms, fmax: float = 0.05, steps: int = 200, cell: bool = False) -> Atoms:
        """Return a copy of ``atoms`` relaxed until every force is below ``fmax`` (eV/Å)."""
