"""Plane-wave PBE with GPAW (pip install 'pesmith[gpaw]' after scripts/install_gpaw.sh).

With ``ranks > 1`` each structure runs as ``mpiexec -n ranks python -m
pesmith.plugins.references.gpaw IN OUT`` (GPAW built with MPI: ``GPAW_MPI=1
scripts/install_gpaw.sh``); rank 0 of that run writes the labels, which this process reads.

References
----------
J. J. Mortensen et al., "GPAW: An open Python package for electronic structure calculations",
J. Chem. Phys. 160, 092503 (2024), doi:10.1063/5.0182685. PBE: J. P. Perdew, K. Burke,
M. Ernzerhof, Phys. Rev. Lett. 77, 3865 (1996), doi:10.1103/PhysRevLett.77.3865.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from pesmith.atomic_io import write_text_atomic
from pesmith.errors import LabelingFailed, ReferenceSetupError
from pesmith.reference import package_version

from .base import CalculatorReference


class GPAWReference(CalculatorReference):
    """Plane-wave DFT (PBE) with GPAW; cutoff in eV, k-points per Å^-1, Fermi-Dirac smearing in eV.

    Parameters
    ----------
    cutoff
        Plane-wave cutoff, eV.
    kpoint_density
        k-points per reciprocal Å (ASE's ``kpts={"density": ...}``), Γ-centred.
    smearing
        Fermi-Dirac width, eV.
    xc
        Exchange-correlation functional.
    max_iterations
        SCF iterations before the structure counts as failed.
    ranks
        MPI ranks per structure (> 1 runs ``mpiexec``; needs GPAW built with MPI).
    """

    periodic = True

    def __init__(
        self,
        cutoff: float = 400.0,
        kpoint_density: float = 3.0,
        smearing: float = 0.1,
        xc: str = "PBE",
        max_iterations: int = 333,
        ranks: int = 1,
    ):
        try:
            import gpaw  # noqa: F401
        except ImportError as exc:
            raise ReferenceSetupError(
                f"gpaw is not installed: run scripts/install_gpaw.sh (Debian libxc/OpenBLAS/FFTW + pip) ({exc})"
            ) from exc
        if cutoff <= 0 or kpoint_density <= 0 or smearing < 0 or max_iterations < 1 or ranks < 1:
            raise ReferenceSetupError(
                "gpaw: cutoff (eV) and kpoint_density (1/Å) must be positive, smearing (eV) >= 0, max_iterations"
                f" and ranks >= 1; got {cutoff}, {kpoint_density}, {smearing}, {max_iterations}, {ranks}"
            )
        if ranks > 1 and shutil.which("mpiexec") is None:
            raise ReferenceSetupError(f"gpaw: ranks={ranks} needs mpiexec on PATH (GPAW_MPI=1 scripts/install_gpaw.sh)")
        self.cutoff = float(cutoff)
        self.kpoint_density = float(kpoint_density)
        self.smearing = float(smearing)
        self.xc = xc
        self.max_iterations = int(max_iterations)
        self.ranks = int(ranks)

    def make_calculator(self) -> Calculator:
        from gpaw import GPAW, PW, FermiDirac

        return GPAW(
            mode=PW(self.cutoff),
            xc=self.xc,
            kpts={"density": self.kpoint_density, "gamma": True},
            occupations=FermiDirac(self.smearing),
            maxiter=self.max_iterations,
            txt=None,
        )

    def label(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray | None]:
        if self.ranks == 1:
            return super().label(atoms)
        with tempfile.TemporaryDirectory(prefix="pesmith-gpaw-") as folder:
            given, result = Path(folder) / "in.json", Path(folder) / "out.json"
            given.write_text(json.dumps({"config": self.get_config() | {"ranks": 1}, "atoms": _atoms_to_dict(atoms)}))
            command = ["mpiexec", "-n", str(self.ranks), sys.executable, "-m", __name__, str(given), str(result)]
            run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "GPAW_MPI_BACKEND": "cgpaw"})
            if not result.is_file():
                tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
                raise LabelingFailed(f"{self._what(atoms)}: mpiexec exited with {run.returncode}: {' | '.join(tail)}")
            answer = json.loads(result.read_text())
        if "error" in answer:
            raise LabelingFailed(answer["error"])
        stress = answer["stress"]
        return answer["energy"], np.array(answer["forces"]), None if stress is None else np.array(stress)

    def get_config(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "kpoint_density": self.kpoint_density,
            "smearing": self.smearing,
            "xc": self.xc,
            "max_iterations": self.max_iterations,
            "ranks": self.ranks,
        }

    def code_version(self) -> str:
        return package_version("gpaw")


def _atoms_to_dict(atoms: Atoms) -> dict[str, Any]:
    return {"numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(), "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist()}


def main(given: str, result: str) -> None:
    """One MPI run: label the structure in ``given`` (JSON); rank 0 writes ``result`` (JSON)."""
    from gpaw.mpi import world

    request = json.loads(Path(given).read_text())
    atoms = Atoms(**request["atoms"])
    try:
        energy, forces, stress = GPAWReference(**request["config"]).label(atoms)
        answer = {"energy": energy, "forces": forces.tolist(), "stress": None if stress is None else stress.tolist()}
    except LabelingFailed as exc:
        answer = {"error": str(exc)}
    if world.rank == 0:  # every rank is rank 0 of its own world when GPAW was built without MPI
        write_text_atomic(Path(result), json.dumps(answer))


if __name__ == "__main__":
    main(*sys.argv[1:3])
