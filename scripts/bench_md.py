"""MD throughput of the NN calculator on a 1,000-atom amorphous Li-Si cell (descriptor from ``--config``).

Runs ASE VelocityVerlet (1 fs) with 1 and with 2 torch threads, each in a fresh subprocess,
and prints atom-steps per second, the ratio to the aim (6,000 atom-steps/s per core, what
aenet's NN reaches in LAMMPS for a-LiSi) and where the time of one force call goes:
neighbor list, descriptor forward, network forward, backward (forces and stress).

    python scripts/bench_md.py [--model si_li.pt | --config configs/si_nn_acsf.yaml] [--steps 20]

Without ``--model`` the potential has random weights: the cost does not depend on them. The
descriptor and network then use the hyper-parameters of ``--config`` for Li and Si.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AIM_PER_CORE = 6000.0
ROOT = Path(__file__).resolve().parents[1]


def build_potential(model_path: str | None, config_path: str):
    import yaml

    from pesmith.model_file import load_potential
    from pesmith.potential import Potential
    from pesmith.registry import Registry

    if model_path:
        return load_potential(model_path)[0]
    config = yaml.safe_load(Path(config_path).read_text())
    registry = Registry(entry_points=False)
    options = {k: v for k, v in config["descriptor"].items() if k not in ("kind", "species")}
    descriptor = registry.get("descriptor", config["descriptor"]["kind"])(["Li", "Si"], **options)
    model = registry.get("model", config["model"]["kind"])(
        descriptor.species, descriptor.n_features, **{k: v for k, v in config["model"].items() if k != "kind"}
    )
    return Potential(descriptor, model, {"Li": -1.9, "Si": -5.4})


def worker(threads: int, steps: int, model_path: str | None, config_path: str) -> dict:
    """Run in a subprocess: time MD steps and the parts of one force call."""
    import torch
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from pesmith.calculator import PesmithCalculator
    from pesmith.grad import forces_and_stress
    from pesmith.structures import build_batch
    from pesmith.testing import amorphous_lisi

    torch.set_num_threads(threads)
    potential = build_potential(model_path, config_path)
    atoms = amorphous_lisi(1000)
    atoms.calc = PesmithCalculator(potential)
    atoms.set_momenta(np.random.default_rng(1).normal(0, 0.05, (len(atoms), 3)))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(3)  # warm-up
    started = time.perf_counter()
    dynamics.run(steps)
    md_seconds = time.perf_counter() - started

    parts = {"neighbor_list": 0.0, "descriptor_forward": 0.0, "network_forward": 0.0, "backward": 0.0}
    repeats = 5
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = build_batch([atoms], potential.descriptor.cutoff)
        t1 = time.perf_counter()
        vectors = batch.edge_vectors().detach().requires_grad_(True)
        features = potential.descriptor(batch.numbers, batch.edge_index, vectors)
        t2 = time.perf_counter()
        energy = potential.model(features, batch.numbers).sum().reshape(1)
        t3 = time.perf_counter()
        forces_and_stress(energy, vectors, batch, stress=True)
        t4 = time.perf_counter()
        for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key] += seconds / repeats
    return {
        "threads": threads,
        "atoms": len(atoms),
        "edges": int(batch.edge_index.shape[1]),
        "steps": steps,
        "atom_steps_per_s": len(atoms) * steps / md_seconds,
        "profile_ms": {k: 1000 * v for k, v in parts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model file from `pesmith train` (default: random Li-Si weights)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "si_nn_acsf.yaml"),
                        help="training config whose descriptor and model settings to use")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("bench_md.json"))
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.model, args.config)))
        return
    rows = []
    for threads in (1, 2):
        command = [sys.executable, __file__, "--worker", str(threads), "--steps", str(args.steps), "--config", args.config]
        if args.model:
            command += ["--model", args.model]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        row["ratio_to_aim_per_core"] = row["atom_steps_per_s"] / (AIM_PER_CORE * threads)
        rows.append(row)
    print(f"{'threads':>7} {'atom-steps/s':>13} {'vs aim/core':>11}   profile of one force call (ms)")
    for row in rows:
        profile = ", ".join(f"{k} {v:.1f}" for k, v in row["profile_ms"].items())
        print(f"{row['threads']:>7} {row['atom_steps_per_s']:>13.0f} {row['ratio_to_aim_per_core']:>11.2f}   {profile}")
    print(f"speed-up 2 vs 1 thread: {rows[1]['atom_steps_per_s'] / rows[0]['atom_steps_per_s']:.2f}")
    result = {"config": args.config, "model": args.model, "aim_atom_steps_per_s_per_core": AIM_PER_CORE, "runs": rows}
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
