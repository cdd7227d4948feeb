"""Does the initial set cover amorphous Li_x Si? Train on it without and with amorphous cells.

1. Two initial sets from ``configs/generate_lisi.yaml`` with the same reference: as shipped but
   without its ``amorphous:`` section ("crystals"), and as shipped ("crystals+amorphous"), each
   through ``pesmith generate``.
2. A held-out set: amorphous cells at compositions the training set does not have, with another
   seed, melt-quenched and labeled by the same reference (pesmith.search.initial_set).
3. The same small NN (``TRAIN``: the Chebyshev setup of configs/lisi_nn_chebyshev.yaml, lower
   orders and fewer epochs, 1 thread) trained on each set with ``pesmith train``, and
   ``pesmith evaluate`` of both models on the held-out set.

Writes ``docs/measurements/amorphous_coverage_<reference>.json`` (errors, the RMS of the
reference forces and the spread of the reference energies on the held-out frames, wall times
and the load average). Every step runs with ``OMP_NUM_THREADS=1``, one at a time.

    python scripts/amorphous_coverage.py [--reference chgnet] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PESMITH = Path(sys.executable).with_name("pesmith")
# Held-out compositions: between and beside the training ones (3.75 3.25 2.33 1.71 1.0 0.5 0.0).
HOLDOUT_COMPOSITIONS = [3.5, 3.0, 2.6, 2.0, 1.4, 1.2, 0.8, 0.65, 0.3, 0.15]
HOLDOUT_SEED = 1000
# configs/lisi_nn_chebyshev.yaml made small: orders 11 -> 6, 300 -> 80 epochs.
TRAIN = {
    "descriptor": {"kind": "chebyshev", "radial_cutoff": 6.0, "angular_cutoff": 4.5, "radial_order": 6,
                   "angular_order": 6, "weights": {"Li": -1, "Si": 1}},
    "model": {"kind": "nn", "hidden": [15, 15], "activation": "tanh"},
    "training": {"epochs": 80, "force_weight": 0.1, "batch_size": 8, "learning_rate": 3.0e-3, "lr_patience": 10,
                 "patience": 40, "min_learning_rate": 1.0e-5, "seed": 0, "threads": 1, "progress": False},
}


def run(*argv: str) -> float:
    """Run a pesmith command (one thread); return its wall time (s)."""
    started = time.perf_counter()
    subprocess.run([str(PESMITH), *argv], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started


def generate_config(reference: dict, output: Path, amorphous: bool, workers: int) -> dict:
    """configs/generate_lisi.yaml with absolute crystal paths, ``reference`` and ``output``."""
    config = yaml.safe_load((ROOT / "configs" / "generate_lisi.yaml").read_text())
    config["crystals"] = [str((ROOT / "configs" / p).resolve()) for p in config["crystals"]]
    config.update(reference=reference, output=str(output), workers=workers, progress=False)
    if not amorphous:
        config.pop("amorphous")
    return config


def holdout_set(reference: dict, folder: Path, workers: int) -> tuple[Path, float]:
    """Melt-quench and label the held-out amorphous cells; return the database and the wall time."""
    from pesmith.labeling import LabelConfig, label_structures
    from pesmith.parallel import parallel_map
    from pesmith.registry import default_registry
    from pesmith.search.initial_set import amorphous_structures, load_generate_config
    from pesmith import ase_files

    started = time.perf_counter()
    config = generate_config(reference, folder / "holdout.db", True, workers)
    config["seed"] = HOLDOUT_SEED
    config["amorphous"].update(compositions=HOLDOUT_COMPOSITIONS, snapshots=3)
    path = folder / "holdout_generate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    registry = default_registry()
    generate = load_generate_config(path, registry)
    frames = amorphous_structures(generate, registry, parallel_map, str(path))
    structures = folder / "holdout_structures.xyz"
    ase_files.write(structures, frames, format="extxyz")
    label = LabelConfig(structures=structures, database=generate.output, reference=generate.reference,
                        workers=workers, progress=False)
    summary = label_structures(label, registry, parallel_map, where=str(path))
    if summary.n_failed:
        raise SystemExit(f"{summary.n_failed} held-out frames failed to label: {summary.failures}")
    return generate.output, time.perf_counter() - started


def reference_spread(database: Path) -> dict:
    """RMS of the reference force components (eV/Å) and standard deviation of the reference
    energies per atom (meV/atom) on the held-out frames."""
    from pesmith.data import read_dataset

    data = read_dataset(database)
    forces = np.concatenate(data.forces)
    per_atom = data.energies / np.array([len(a) for a in data.structures])
    return {
        "n_structures": len(data),
        "n_atoms": int(forces.shape[0]),
        "force_rms_eV_per_A": float(np.sqrt(np.mean(forces**2))),
        "energy_std_meV_per_atom": float(1000 * np.std(per_atom)),
        "formulas": sorted({a.get_chemical_formula(mode="metal") for a in data.structures}),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default="chgnet", help="reference kind (default chgnet)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "results" / "amorphous_coverage")
    parser.add_argument("--out", type=Path, help="JSON (default docs/measurements/amorphous_coverage_<reference>.json)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "docs" / "measurements" / f"amorphous_coverage_{args.reference}.json"
    reference = {"kind": args.reference}
    args.work.mkdir(parents=True, exist_ok=True)

    holdout, holdout_time = holdout_set(reference, args.work, args.workers)
    result = {
        "reference": reference,
        "generate_config": "configs/generate_lisi.yaml",
        "train_config": TRAIN,
        "holdout": {"compositions_x": HOLDOUT_COMPOSITIONS, "seed": HOLDOUT_SEED, "wall_time_s": holdout_time,
                    **reference_spread(holdout)},
        "sets": {},
    }
    for name, amorphous in (("crystals", False), ("crystals+amorphous", True)):
        folder = args.work / name.replace("+", "_")
        folder.mkdir(exist_ok=True)
        database = folder / "lisi.db"
        config = folder / "generate.yaml"
        config.write_text(yaml.safe_dump(generate_config(reference, database, amorphous, args.workers), sort_keys=False))
        generate_time = run("generate", str(config))
        train = folder / "train.yaml"
        train.write_text(yaml.safe_dump({
            "data": {"train": str(database), "validation_fraction": 0.1, "seed": 0}, **TRAIN,
            "output": str(folder / "model.pt"),
        }, sort_keys=False))
        train_time = run("train", str(train), "--overwrite")
        metrics_path = folder / "holdout_metrics.json"
        run("evaluate", str(folder / "model.pt"), str(holdout), "--json", str(metrics_path))
        report = json.loads((folder / "model_report.json").read_text())
        result["sets"][name] = {
            "n_structures": reference_spread(database)["n_structures"],
            "generate_wall_time_s": generate_time,
            "train_wall_time_s": train_time,
            "validation": report["metrics"].get("validation"),
            "holdout": json.loads(metrics_path.read_text()),
        }
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
