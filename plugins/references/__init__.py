"""Built-in reference (labeling) plugins: ASE calculators behind the :class:`pesmith.reference.Reference`
contract, registered by name: the registry imports a module only when its class is first used."""

from __future__ import annotations

from typing import Callable

from pesmith import hookimpl


@hookimpl
def pesmith_register_references(register: Callable[..., None]) -> None:
    register("ase", "pesmith.plugins.references.ase_calculator:AseReference",
             "Any ASE calculator by import path and keyword arguments (no code needed).")
    register("chgnet", "pesmith.plugins.references.chgnet:CHGNetReference",
             "CHGNet universal potential (PBE-like energies; pip install 'pesmith[chgnet]').")
    register("gpaw", "pesmith.plugins.references.gpaw:GPAWReference",
             "Plane-wave DFT (PBE) with GPAW; cutoff in eV, k-points per Å^-1, Fermi-Dirac smearing in eV.")
    register("morse", "pesmith.plugins.references.morse:Morse",
             "Morse pair potentials for Li–Si: an analytic reference for tests (not physical).")
    register("sevennet", "pesmith.plugins.references.sevennet:SevenNetReference",
             "SevenNet universal potential (PBE-like energies; pip install 'pesmith[sevennet]').")
    register("xtb", "pesmith.plugins.references.xtb:XTB",
             "GFN1-xTB (tblite), periodic, Γ point; electronic temperature in K. Li and Si cells only (docs/references.md).")
