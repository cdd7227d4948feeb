"""Held-out amorphous Li_x Si cells labeled by a reference, for the search's learning curve.

Random cells (``pesmith.simulate.packing.random_cell``) at compositions between and beyond the
quickstart path are melt-quenched with the reference itself, and the last frames of each quench
are labeled with it. The seed differs from every config's, so no frame is in a training set.

    python scripts/make_holdout.py --reference sevennet --model 7net-0 --cells 1 --frames 4 --output data/lisi_holdout/sevennet_amorphous.xyz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith import ase_files
from pesmith.labeling import build_reference
from pesmith.config import PluginSettings
from pesmith.registry import default_registry
from pesmith.search.amorphous import composition_counts, interpolated_volume_per_atom
from pesmith.simulate.md import MeltQuenchSettings, melt_quench
from pesmith.simulate.packing import random_cell

CRYSTALS = Path(__file__).resolve().parents[1] / "data" / "lisi_crystals"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="sevennet", help="reference kind")
    parser.add_argument("--model", help="the reference's model option (e.g. 7net-0, the quickstart's); default: the plugin's")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--compositions", type=float, nargs="+", default=[3.75, 3.4, 3.0, 2.6, 2.25, 1.9, 1.5])
    parser.add_argument("--atoms", type=int, default=22)
    parser.add_argument("--cells", type=int, default=2, help="cells per composition")
    parser.add_argument("--frames", type=int, default=3, help="last frames kept per cell")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    options = {"model": args.model} if args.model else {}
    reference = build_reference(PluginSettings(kind=args.reference, **options), default_registry(), "make_holdout")
    reference.prepare()
    crystals = [ase_files.read(CRYSTALS / f, index=-1) for f in ("Li_bcc.xyz", "Si_diamond.xyz", "Li13Si4.xyz", "Li15Si4.xyz", "Li12Si7.xyz")]
    settings = MeltQuenchSettings(melt_K=2000.0, melt_ps=0.2, quench_ps=0.4, final_K=300.0, timestep_fs=2.0, interval=20)
    frames = []
    started = time.perf_counter()
    for x in args.compositions:
        for _ in range(args.cells):
            counts = composition_counts(x, args.atoms)
            cell = random_cell(counts, interpolated_volume_per_atom(x, crystals), rng)
            for frame in melt_quench(cell, reference.make_calculator(), settings, rng)[-args.frames:]:
                energy, forces, stress = reference.label(frame)
                frame.info = {"config_type": f"amorphous x={x}", "method": args.reference}
                frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces, stress=stress)
                frames.append(frame)
        print(f"x = {x}: {len(frames)} frames so far, {time.perf_counter() - started:.0f} s", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    ase_files.write(args.output, frames, format="extxyz")
    forces = np.concatenate([f.get_forces() for f in frames])
    print(f"wrote {len(frames)} frames to {args.output}; RMS force {np.sqrt((forces**2).mean()):.3f} eV/Å")


if __name__ == "__main__":
    main()
