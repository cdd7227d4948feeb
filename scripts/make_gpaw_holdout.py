"""Amorphous Li_x Si cells labeled with GPAW PBE, as frames a search can score its reference on.

Reads the labels `scripts/amorphous_vs_gpaw.py gpaw` wrote (docs/measurements/amorphous_gpaw.json:
six random packings of 16-20 atoms at x = 1.0, 1.86 and 3.75 Li per Si, and the same six relaxed
with CHGNet; PBE, 400 eV, k-point density 3.0 per Å^-1, Fermi-Dirac 0.1 eV) and writes the twelve
amorphous cells with their GPAW energy (eV) and forces (eV/Å) as extended XYZ. The elemental
crystals of that JSON are left out (their forces vanish by symmetry).

    python scripts/make_gpaw_holdout.py docs/measurements/amorphous_gpaw.json data/lisi_holdout/gpaw_amorphous.xyz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith import ase_files


def gpaw_frames(labels: dict[str, dict]) -> list[Atoms]:
    """The labeled amorphous cells (names starting with ``random_``) of an amorphous_gpaw.json."""
    frames = []
    for name, label in labels.items():
        if not name.startswith("random_"):
            continue
        atoms = Atoms(numbers=label["numbers"], positions=label["positions"], cell=label["cell"], pbc=True)
        n_li = int(np.sum(atoms.numbers == 3))
        n_si = len(atoms) - n_li
        atoms.info["config_type"] = f"{'relaxed' if 'relaxed' in name else 'random'} x={n_li / n_si:.2f}"
        atoms.info["method"] = "gpaw"
        atoms.info["name"] = name
        atoms.calc = SinglePointCalculator(atoms, energy=float(label["energy"]), forces=np.array(label["forces"], dtype=float))
        frames.append(atoms)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path, help="the JSON written by `scripts/amorphous_vs_gpaw.py gpaw`")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    frames = gpaw_frames(json.loads(args.labels.read_text())["labels"])
    ase_files.write(args.output, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {args.output}")


if __name__ == "__main__":
    main()
