"""Training within a memory budget: peak RSS, featurization time and seconds per epoch.

For the ACSF, Chebyshev and SOAP network setups on mlearn Li + Si (455 structures, ~26,000
atoms) and on a 10x larger set (every structure 10 times, rattled by 0.02 Å and strained by up
to 1 %, with its original labels: right sizes, not new physics), each run in its own process so
that its peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss`` at its end) is its own::

    python scripts/bench_training.py                                  # the table of the Scale issue
    python scripts/bench_training.py --runs chebyshev:1:memory chebyshev:1:disk --epochs 3

A run is ``descriptor:scale:storage[:memory_gb]`` (storage: auto, memory, disk, recompute).
``--max-steps`` times that many minibatches and extrapolates the epoch (for runs where one
epoch takes too long); the JSON says which runs were extrapolated. Prints a table, writes JSON.
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

ROOT = Path(__file__).resolve().parents[1]
DATA = [ROOT / "data" / "mlearn" / "Li_train.xyz", ROOT / "data" / "mlearn" / "Si_train.xyz"]
DESCRIPTORS = {  # the shipped configs' descriptors, and SOAP as a new user writes it (cutoff 5, defaults)
    "acsf": {"kind": "acsf", "cutoff": 6.0, "angular_cutoff": 6.0, "n_radial": 16, "r_min": 1.5, "n_angular": 5, "zetas": [1, 2, 4, 16]},
    "chebyshev": {"kind": "chebyshev", "radial_cutoff": 6.5, "angular_cutoff": 5.0, "radial_order": 11, "angular_order": 11, "weights": {"Li": -1, "Si": 1}},
    "soap": {"kind": "soap", "cutoff": 5.0},
}
DEFAULT_RUNS = [
    "acsf:1:memory", "acsf:1:disk", "chebyshev:1:memory", "chebyshev:1:disk", "soap:1:auto:6",
    "chebyshev:10:auto:8", "acsf:10:auto:8", "soap:10:auto:8",
]


def child(args: argparse.Namespace) -> None:
    """One run, in this process: featurize within the budget, then time epochs."""
    import numpy as np
    import torch

    from pesmith.data import read_dataset, reference_energies
    from pesmith.features import featurize_dataset, plan_for
    from pesmith.loss import evaluate
    from pesmith.potential import Potential
    from pesmith.registry import Registry
    from pesmith.training import AdamSettings, take_step

    torch.set_num_threads(args.threads)
    name, scale, storage, memory_gb = parse_run(args.child)
    dataset = read_dataset(DATA)
    if scale > 1:
        dataset = enlarged(dataset, scale)
    train_set, validation = dataset.split(0.1, 0)
    registry = Registry(entry_points=False)
    options = dict(DESCRIPTORS[name])
    descriptor = registry.get("descriptor", options.pop("kind"))(species=["Li", "Si"], **options)
    model = registry.get("model", "nn")(species=descriptor.species, n_features=descriptor.n_features, hidden=[15, 15])
    potential = Potential(descriptor, model)
    settings = AdamSettings(force_weight=0.1, batch_size=8, feature_storage=storage, memory_gb=memory_gb, progress=False)
    potential.set_reference(reference_energies(train_set, potential.species))
    with tempfile.TemporaryDirectory(prefix=".bench_features_", dir=args.cache_dir) as cache:
        plan, edges = plan_for(descriptor, [train_set, validation], settings, Path(cache))
        started = time.perf_counter()
        sets = [
            featurize_dataset(descriptor, d, potential.reference, plan, Path(cache) / f"j{k}.f32", e)
            for k, (d, e) in enumerate(zip([train_set, validation], edges))
        ]
        featurization = time.perf_counter() - started
        from pesmith.model import standardization

        mean, scale_ = standardization(sets[0].features, sets[0].numbers, model.species)
        model.feature_mean.copy_(mean)
        model.feature_scale.copy_(scale_)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        n_batches = -(-sets[0].n_structures // settings.batch_size)
        epoch_times, steps = [], 0
        for _ in range(args.epochs):
            started = time.perf_counter()
            for parts in sets[0].minibatches(settings.batch_size, generator):
                take_step(model, optimizer, parts, settings)
                steps += 1
                if args.max_steps and steps >= args.max_steps:
                    break
            train_time = time.perf_counter() - started
            started = time.perf_counter()
            metrics = evaluate(model, sets[1], settings)
            validation_time = time.perf_counter() - started
            done = steps if args.max_steps else n_batches
            epoch_times.append(train_time * n_batches / done + validation_time)
            if args.max_steps:
                break
    print(json.dumps({
        "run": args.child, "descriptor": name, "scale": scale, "n_structures": len(dataset), "n_atoms": dataset.n_atoms,
        "plan": plan.as_dict(), "featurization_s": featurization, "s_per_epoch": float(np.median(epoch_times)),
        "epochs_timed": len(epoch_times), "extrapolated_from_steps": steps if args.max_steps else None,
        "validation": metrics, "threads": args.threads,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }))


def enlarged(dataset, factor: int):
    """``dataset`` repeated ``factor`` times, each copy rattled (0.02 Å) and strained (<= 1 %)."""
    import numpy as np

    from pesmith.data import Dataset

    rng = np.random.default_rng(0)
    structures, energies, forces, stresses = [], [], [], []
    for copy_index in range(factor):
        for atoms, energy, force, stress in zip(dataset.structures, dataset.energies, dataset.forces, dataset.stresses):
            atoms = atoms.copy()
            if copy_index:
                atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.01, 0.01, (3, 3))), scale_atoms=True)
                atoms.positions += rng.normal(0, 0.02, atoms.positions.shape)
            structures.append(atoms)
            energies.append(energy)
            forces.append(force)
            stresses.append(stress)
    return Dataset(structures, np.array(energies), forces, stresses, source=f"{dataset.source} x{factor}")


def parse_run(run: str) -> tuple[str, int, str, float | None]:
    parts = run.split(":")
    return parts[0], int(parts[1]), parts[2], float(parts[3]) if len(parts) > 3 else None


def measure(run: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", run, "--epochs", str(args.epochs), "--threads", str(args.threads),
               "--cache-dir", str(args.cache_dir)] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        error = process.stderr.strip().splitlines()[-1] if process.stderr.strip() else f"exit {process.returncode}"
        return {"run": run, "error": error, "wall_s": wall}
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per run (median reported)")
    parser.add_argument("--max-steps", type=int, default=0, help="time this many minibatches and extrapolate the epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "results")
    parser.add_argument("--json", type=Path, default=ROOT / "bench_training.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args)
        return
    results = []
    print(f"{'run':<24}{'atoms':>9}{'storage':>10}{'J f64 GB':>10}{'featurize s':>13}{'s/epoch':>10}{'peak RSS GB':>13}")
    for run in args.runs:
        result = measure(run, args)
        results.append(result)
        if "error" in result:
            print(f"{run:<24} failed: {result['error']}")
        else:
            mark = "*" if result["extrapolated_from_steps"] else ""
            print(f"{run:<24}{result['n_atoms']:>9}{result['plan']['storage']:>10}{result['plan']['jacobian_gb']:>10.2f}"
                  f"{result['featurization_s']:>13.1f}{result['s_per_epoch']:>9.1f}{mark:1}{result['peak_rss_gb']:>13.2f}")
        args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json} (* = epoch extrapolated from --max-steps minibatches)")


if __name__ == "__main__":
    main()
