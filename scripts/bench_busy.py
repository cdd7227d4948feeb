"""Training beside other CPU-bound processes: seconds per epoch idle and under load.

The quickstart's potential (Chebyshev 6.0/4.5 Å, 15 x 15 tanh network, force and stress
terms) is trained on a fixed subset of mlearn Li + Si for a few epochs, in its own process,
once per thread setting and per number of CPU-bound processes (``while True: pass``) running
beside it. On a machine with C cores and L busy processes a run that degrades gracefully slows
by about max(1, (L + threads) / C), not by 30x (the spin-waiting of OpenMP threads that never
get a core)::

    python scripts/bench_busy.py                       # 1 thread, 2 passive, 2 spinning; load 0, 1, 2
    python scripts/bench_busy.py --settings 1 --loads 0 1

A setting is ``threads[:policy]`` (policy ``passive``, pesmith's default, or ``active``).
Prints a table of s/epoch and the ratio to the same setting idle; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = [ROOT / "data" / "mlearn" / "Li_train.xyz", ROOT / "data" / "mlearn" / "Si_train.xyz"]
DESCRIPTOR = {"kind": "chebyshev", "radial_cutoff": 6.0, "angular_cutoff": 4.5, "radial_order": 10, "angular_order": 4,
              "weights": {"Li": -1, "Si": 1}}  # configs/quickstart.yaml
BUSY = "while True: pass"


def child(args: argparse.Namespace) -> None:
    """Featurize the subset, then time ``args.epochs`` Adam epochs on ``args.threads`` threads."""
    import numpy as np
    import torch

    from pesmith.data import read_dataset, reference_energies
    from pesmith.features import featurize_dataset, plan_for
    from pesmith.loss import evaluate
    from pesmith.model import standardization
    from pesmith.potential import Potential
    from pesmith.registry import Registry
    from pesmith.training import AdamSettings, take_step

    torch.set_num_threads(args.threads)
    dataset = read_dataset(DATA)
    dataset = dataset.subset(np.random.default_rng(0).permutation(len(dataset))[: args.structures])
    train_set, validation = dataset.split(0.1, 0)
    registry = Registry(entry_points=False)
    options = dict(DESCRIPTOR)
    descriptor = registry.get("descriptor", options.pop("kind"))(species=["Li", "Si"], **options)
    model = registry.get("model", "nn")(species=descriptor.species, n_features=descriptor.n_features, hidden=[15, 15])
    potential = Potential(descriptor, model)
    settings = AdamSettings(force_weight=0.1, stress_weight=5.0, batch_size=8, feature_storage="memory", progress=False)
    potential.set_reference(reference_energies(train_set, potential.species))
    plan, edges = plan_for(descriptor, [train_set, validation], settings, None)
    sets = [featurize_dataset(descriptor, d, potential.reference, plan, None, e) for d, e in zip([train_set, validation], edges)]
    mean, scale = standardization(sets[0].features, sets[0].numbers, model.species)
    model.feature_mean.copy_(mean)
    model.feature_scale.copy_(scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    epoch_times = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for parts in sets[0].minibatches(settings.batch_size, generator):
            take_step(model, optimizer, parts, settings)
        evaluate(model, sets[1], settings)
        epoch_times.append(time.perf_counter() - started)
    print(json.dumps({
        "s_per_epoch": float(np.median(epoch_times)), "epochs_timed": len(epoch_times),
        "n_structures": len(dataset), "n_atoms": dataset.n_atoms,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }))


def measure(setting: str, load: int, args: argparse.Namespace) -> dict:
    """One child run of ``setting`` with ``load`` busy processes beside it."""
    threads, _, policy = setting.partition(":")
    environment = dict(os.environ, OMP_WAIT_POLICY=(policy or "passive").upper(), OMP_NUM_THREADS=threads)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
    try:
        command = [sys.executable, __file__, "--child", "--threads", threads, "--epochs", str(args.epochs),
                   "--structures", str(args.structures)]
        process = subprocess.run(command, capture_output=True, text=True, env=environment)
    finally:
        for worker in busy:
            worker.kill()
            worker.wait()
    if process.returncode != 0:
        raise SystemExit(f"bench_busy: {setting} with load {load} failed:\n{process.stderr}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    return {"setting": setting, "threads": int(threads), "policy": policy or "passive", "load": load, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["1", "2:passive", "2:active"])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="CPU-bound processes beside the run")
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed per run (median reported)")
    parser.add_argument("--structures", type=int, default=80, help="mlearn Li + Si structures trained on")
    parser.add_argument("--json", type=Path, default=ROOT / "bench_busy.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cores = os.cpu_count()
    print(f"{cores} cores; {args.structures} structures, median of {args.epochs} epochs")
    print(f"{'setting':<12}{'busy':>6}{'s/epoch':>10}{'x idle':>9}{'expected':>10}{'peak RSS GB':>13}")
    results, idle = [], {}
    for setting in args.settings:
        for load in args.loads:
            result = measure(setting, load, args)
            if load == 0:
                idle[setting] = result["s_per_epoch"]
            result["ratio_to_idle"] = result["s_per_epoch"] / idle[setting] if setting in idle else None
            result["expected_ratio"] = max(1.0, (load + result["threads"]) / cores)
            results.append(result)
            ratio = f"{result['ratio_to_idle']:.2f}" if result["ratio_to_idle"] else "-"
            print(f"{setting:<12}{load:>6}{result['s_per_epoch']:>10.3f}{ratio:>9}{result['expected_ratio']:>10.2f}"
                  f"{result['peak_rss_gb']:>13.2f}")
            args.json.write_text(json.dumps({"cores": cores, "runs": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
