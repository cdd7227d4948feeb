"""Can pesmith's GAP fit 1,000 structures of up to 64 atoms with 2b + SOAP and 2,000 sparse points
on a 2-core, 24 GiB machine? (the GAP issue's capacity point)

Makes ``--structures`` silicon cells of 8, 16, 32 and 64 atoms (diamond supercells, each strained
by up to ``--strain`` and rattled by 0.03-0.15 Å, so that energies, forces and stresses vary),
labels them with pesmith's Morse reference (a cheap analytic pair potential: the fit's cost does
not depend on what the labels mean), and runs ``pesmith train`` on them in a child process with
the terms of ``configs/si_gap.yaml`` (distance_2b + SOAP) and ``--n-sparse`` CUR points, energies,
forces and virials. Prints and writes to JSON: atoms, force rows, featurization and fit time (s),
where the feature derivatives were kept (memory or float32 disk cache, ``--memory-gb`` budget),
the peak resident memory of the training process (GB) and the training errors::

    python scripts/gap_scale.py --structures 1000 --n-sparse 2000 --memory-gb 12

Measured (2026-12-07, 2 threads, machine shared with two niced jobs): 1,000 structures, 30,000
atoms, n_sparse 2000: 494 s wall (featurization 108 s, fit 343 s), peak RSS 11.6 GiB (12.4 GB) with the
derivatives in memory (12 GB budget); training errors 0.32 meV/atom, 0.011 eV/Å.

This is a capacity check, not a benchmark against gap_fit (``scripts/bench_gap.py`` is): gap_fit
needed ~500 s and 7.4 GB for 193 Si structures at n_sparse 1000, so a run at this size would
take hours.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUPERCELLS = ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2))  # 8, 16, 32, 64 atoms


def structures(n: int, strain: float, seed: int) -> list:
    """``n`` labeled Si cells (Morse energies, forces, stress), cycling over :data:`SUPERCELLS`."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    from pesmith.plugins.references.morse import MorseCalculator

    rng = np.random.default_rng(seed)
    calculator = MorseCalculator()
    frames = []
    for k in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(SUPERCELLS[k % len(SUPERCELLS)])
        deformation = np.eye(3) + rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell @ (deformation + deformation.T) / 2, scale_atoms=True)
        atoms.rattle(stdev=rng.uniform(0.03, 0.15), seed=int(rng.integers(2**31)))
        atoms.calc = calculator
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        atoms.info["config_type"] = f"diamond_{len(atoms)}"
        frames.append(atoms)
    return frames


def train_config(data: Path, output: Path, n_sparse: int, memory_gb: float) -> dict:
    """The terms of configs/si_gap.yaml with ``n_sparse`` CUR points, virials fitted."""
    return {
        "data": {"train": str(data), "validation_fraction": 0.0, "seed": 0},
        "terms": [
            {"descriptor": {"kind": "distance_2b", "cutoff": 5.0, "theta": 0.5, "cutoff_transition_width": 0.5},
             "model": {"kind": "gap", "kernel": "linear", "delta": 10.0}, "training": {"sparse_method": "basis"}},
            {"descriptor": {"kind": "soap", "cutoff": 5.0, "n_max": 8, "l_max": 6, "atom_sigma": 0.5},
             "model": {"kind": "gap", "kernel": "dot_product", "zeta": 4, "delta": 1.0}},
        ],
        "training": {"n_sparse": n_sparse, "sparse_method": "cur", "sigma_energy": 0.002, "sigma_force": 0.1,
                     "sigma_virial": 0.05, "jitter": 1e-8, "seed": 0, "threads": 2, "memory_gb": memory_gb, "progress": False},
        "output": str(output),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=1000)
    parser.add_argument("--n-sparse", type=int, default=2000)
    parser.add_argument("--memory-gb", type=float, default=12.0, help="training.memory_gb of the fit (features and derivatives)")
    parser.add_argument("--strain", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "gap_scale.json")
    args = parser.parse_args()

    import ase.io
    import yaml

    with tempfile.TemporaryDirectory(prefix="gap_scale_", dir=ROOT / "results") as tmp:
        workdir = Path(tmp)
        frames = structures(args.structures, args.strain, args.seed)
        ase.io.write(workdir / "train.xyz", frames, format="extxyz")
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(train_config(workdir / "train.xyz", workdir / "gap.pt", args.n_sparse, args.memory_gb)))
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("pesmith")), "train", str(config)], check=True)
        wall = time.perf_counter() - started
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # KB on Linux; GB = 1e9 bytes
        report = json.loads((workdir / "gap_report.json").read_text())
    n_atoms = sum(len(a) for a in frames)
    result = {
        "structures": args.structures,
        "atoms": n_atoms,
        "force_rows": 3 * n_atoms,
        "n_sparse_per_term": args.n_sparse,
        "memory_gb_budget": args.memory_gb,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "observations": report["training"]["n_observations"],
        "features": report["training"]["features"],
        "fit_s": report["training"]["fit_s"],
        "train_wall_s": report["training"]["wall_time_s"],
        "fit_peak_rss_gb": report["training"]["peak_rss_gb"],
        "sparse": [term["n_sparse"] for term in report["training"]["terms"]],
        "train_metrics": report["metrics"]["train"],
    }
    print(f"{args.structures} structures, {n_atoms} atoms ({3 * n_atoms} force rows), n_sparse {args.n_sparse}:"
          f" {wall:.0f} s wall, peak RSS {peak_gb:.2f} GB (budget {args.memory_gb} GB)")
    print(f"featurization {result['features']['featurization_s']:.0f} s, fit {result['fit_s']:.0f} s; derivatives kept in"
          f" {', '.join(term['storage'] for term in result['features']['terms'])}; sparse points {result['sparse']}")
    metrics = result["train_metrics"]
    print(f"training errors: {metrics['energy_rmse_meV_per_atom']:.2f} meV/atom, {metrics['force_rmse_eV_per_A']:.4f} eV/Å")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
