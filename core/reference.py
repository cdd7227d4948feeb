"""The contract of a reference (labeling) plugin: an electronic-structure method."""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from .errors import ReferenceSetupError


class Reference(ABC):
    """Labels structures with energies (eV), forces (eV/Å) and stress (eV/Å^3).

    A setup problem (bad parameter, missing program) raises
    :class:`pesmith.errors.ReferenceSetupError` at construction; a calculation that fails for one
    structure (no SCF convergence, crash, time-out) raises
    :class:`pesmith.errors.LabelingFailed`, which callers record as a failed label.

    ``periodic = True`` declares that the method needs a full 3D cell and ``pbc=True``
    (plane waves, periodic tight binding); labeling checks the input structures before starting.

    A reference that wraps an ASE calculator overrides the optional :meth:`make_calculator`; the
    MD and relaxations of :mod:`pesmith.simulate` (melt-quenches of ``pesmith generate``, the
    search's reference relaxations, MD driven by the reference) then drive that calculator
    directly. :meth:`has_calculator` says whether it does, on the class or an instance.
    """

    periodic: bool = False

    @abstractmethod
    def label(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Return ``(energy_eV, forces_eV_per_A (n_atoms, 3), stress_eV_per_A3 (6,) or None)``."""

    @abstractmethod
    def relax(self, atoms: Atoms, fmax: float = 0.05, steps: int = 200, cell: bool = False) -> Atoms:
        """Return a copy of ``atoms`` relaxed until every force is below ``fmax`` (eV/Å)."""

    def make_calculator(self) -> Calculator:
        """A new ASE calculator with this reference's parameters (energy in eV, forces in eV/Å,
        stress in eV/Å^3). Optional: the default raises.

        Raises
        ------
        ReferenceSetupError
            This reference has no ASE calculator (:meth:`has_calculator` is False).
        """
        raise ReferenceSetupError(
            f"{type(self).__name__} has no ASE calculator (it does not override Reference.make_calculator);"
            " MD and relaxations that drive a calculator need a reference that has one (e.g. chgnet, sevennet, morse)"
        )

    @classmethod
    def has_calculator(cls) -> bool:
        """Whether :meth:`make_calculator` gives an ASE calculator (the class overrides it)."""
        return cls.make_calculator is not Reference.make_calculator

    def prepare(self) -> None:
        """Load what labeling needs once per process (e.g. model weights), before structures are
        forked off into time-limited child processes; the default does nothing."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that reproduce this reference (recorded as provenance)."""
        return {}

    def code_version(self) -> str:
        """Name and version of the program behind the labels, e.g. ``"tblite 0.8.0"``."""
        return package_version(type(self).__module__)


def package_version(module: str) -> str:
    """``"<top-level package> <installed version>"`` of a module name, e.g. ``"tblite 0.8.0"``."""
    package = module.split(".")[0]
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{package} (version unknown)"
