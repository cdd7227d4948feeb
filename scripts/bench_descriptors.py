"""Cost of ACSF, Chebyshev and SOAP features and feature derivatives: pesmith vs DScribe and featomic.

Every case runs in a fresh subprocess with OMP/MKL/OPENBLAS/RAYON_NUM_THREADS and torch's
thread count set to ``--threads``, on amorphous periodic Li15Si4-like cells
(:func:`pesmith.testing.amorphous_lisi`, 15.5 Å^3/atom) of ``--atoms`` atoms. A case is one
descriptor, implementation and mode:

features   pesmith: neighbor list + ``featurize`` under ``torch.no_grad``;
           DScribe: ``create``; featomic: ``compute``.
gradients  the features and the derivative of every feature of every atom with respect to the
           positions. pesmith: neighbor list + ``features_and_jacobian``, which returns
           ``(n_edges, F, 3)``, the derivatives with respect to each neighbor (as featomic's
           position gradients); DScribe: ``derivatives(method="auto")``, dense
           ``(n_atoms, n_atoms, 3, F)``, numerical here (DScribe has no analytical derivatives
           for ACSF, nor for periodic or weighted SOAP); featomic: ``compute(gradients=["positions"])``.
forces     pesmith only, NOT the quantity of the peers: features, a linear readout and one
           backward pass to forces (``pesmith.grad.forces_and_stress``), i.e. what MD needs.

Each call is timed after one warm-up call (the warm-up is the only call when it took longer than
``--slow`` seconds: warm-up effects are milliseconds). The table gives the median in µs per atom,
``ratio`` = pesmith time / peer time for the same descriptor, mode, size and threads (> 1: pesmith
is slower; < 1: faster) and the child's peak resident memory in MB (``ru_maxrss``, imports
included: a process that imports torch, as pesmith and featomic do, starts at about 270 MB;
DScribe's SOAP alone at about 170 MB).

Hyper-parameters are the same for all implementations where the peers allow:
ACSF (cutoff 6 Å, pesmith's default G2/G4 grids, handed to DScribe, which adds one G1 column per
species), SOAP (cutoff 5 Å, n_max 8, l_max 6, atom sigma 0.5 Å, GTO basis; DScribe with the
"poly" weighting that equals pesmith's cutoff weight; featomic with ``max_radial = n_max - 1``,
its own GTO basis, a 0.5 Å shifted-cosine smoothing instead of the polynomial weight, and
all n, n' pairs, so its feature count differs: compare per-feature costs with care).
Chebyshev (radial 6.5 Å / angular 5 Å, orders 11, aenet's) has no peer.

DScribe computes one system in one thread whatever the setting (``n_jobs`` parallelizes over
systems); it runs at 1 thread only and the 2-thread ratios use that time (marked ``*``). Its
numerical derivatives cost O(N^2): a case whose time, extrapolated from the next smaller size
(x N^2 for DScribe's derivatives, x N otherwise), exceeds ``--max-seconds`` is not run; the table
shows the estimate in brackets, and the JSON marks it ``"estimated": true``.

    python scripts/bench_descriptors.py [--atoms 64 512] [--threads 1 2] [--descriptors acsf soap]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SPECIES = ["Li", "Si"]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")
HYPERS: dict[str, dict[str, Any]] = {
    "acsf": {"cutoff": 6.0, "n_radial": 12, "r_min": 0.5, "n_angular": 4, "zetas": [1.0, 4.0, 16.0]},
    "chebyshev": {"radial_cutoff": 6.5, "angular_cutoff": 5.0, "radial_order": 11, "angular_order": 11,
                  "weights": {"Li": -1.0, "Si": 1.0}},
    "soap": {"cutoff": 5.0, "n_max": 8, "l_max": 6, "atom_sigma": 0.5, "cutoff_power": 1.0, "center_weight": 1.0},
}
FEATOMIC_SMOOTHING = 0.5  # Å, width of featomic's shifted-cosine cutoff smoothing
PEERS = {"acsf": ("dscribe",), "chebyshev": (), "soap": ("dscribe", "featomic")}
MODES = {"pesmith": ("features", "gradients", "forces"), "dscribe": ("features", "gradients"),
         "featomic": ("features", "gradients")}
Call = Callable[[], object]


def pesmith_call(name: str, mode: str, atoms) -> tuple[Call, int]:
    """The timed pesmith call of ``mode`` on ``atoms``, and the descriptor's feature count."""
    import torch

    from pesmith.grad import forces_and_stress
    from pesmith.plugins.descriptors.acsf import ACSF
    from pesmith.plugins.descriptors.chebyshev import Chebyshev
    from pesmith.plugins.descriptors.soap import SOAP
    from pesmith.structures import DTYPE, build_batch

    descriptor = {"acsf": ACSF, "chebyshev": Chebyshev, "soap": SOAP}[name](SPECIES, **HYPERS[name])
    readout = torch.linspace(-1.0, 1.0, descriptor.n_features, dtype=DTYPE)  # (F,) a fixed linear model

    @torch.no_grad()
    def features():
        return descriptor.featurize(build_batch([atoms], descriptor.cutoff))

    def gradients():
        batch = build_batch([atoms], descriptor.cutoff)
        return descriptor.features_and_jacobian(batch.numbers, batch.edge_index, batch.edge_vectors())

    def forces():
        batch = build_batch([atoms], descriptor.cutoff)
        vectors = batch.edge_vectors().detach().requires_grad_(True)  # (n_edges, 3)
        energy = (descriptor(batch.numbers, batch.edge_index, vectors) @ readout).sum().reshape(1)
        return forces_and_stress(energy, vectors, batch, stress=False)

    return {"features": features, "gradients": gradients, "forces": forces}[mode], descriptor.n_features


def dscribe_call(name: str, mode: str, atoms) -> tuple[Call, int]:
    """The timed DScribe call of ``mode`` (``create`` or ``derivatives``) and its feature count."""
    from dscribe.descriptors import ACSF, SOAP

    if name == "acsf":
        from pesmith.plugins.descriptors.acsf import ACSF as OurACSF

        ours = OurACSF(SPECIES, **HYPERS["acsf"])
        g45 = ours.g45.numpy()
        peer = ACSF(r_cut=ours.cutoff, g2_params=ours.g2.numpy(), g4_params=g45[: ours.n_g4], species=SPECIES,
                    periodic=True)
        options = {"attach": True}  # DScribe's ACSF requires it
    else:
        hypers = HYPERS["soap"]
        weighting = {"function": "poly", "r0": hypers["cutoff"], "c": 1.0, "m": hypers["cutoff_power"],
                     "w0": hypers["center_weight"]}
        peer = SOAP(species=SPECIES, r_cut=hypers["cutoff"], n_max=hypers["n_max"], l_max=hypers["l_max"],
                    sigma=hypers["atom_sigma"], rbf="gto", periodic=True, weighting=weighting)
        options = {}
    if mode == "features":
        return lambda: peer.create(atoms), peer.get_number_of_features()
    return lambda: peer.derivatives(atoms, method="auto", **options), peer.get_number_of_features()


def featomic_call(mode: str, atoms) -> tuple[Call, int]:
    """The timed featomic SoapPowerSpectrum call of ``mode`` and its feature count per atom."""
    from featomic import SoapPowerSpectrum
    from featomic.basis import Gto, TensorProduct
    from featomic.cutoff import Cutoff, ShiftedCosine
    from featomic.density import Gaussian

    hypers = HYPERS["soap"]
    calculator = SoapPowerSpectrum(
        cutoff=Cutoff(radius=hypers["cutoff"], smoothing=ShiftedCosine(width=FEATOMIC_SMOOTHING)),
        density=Gaussian(width=hypers["atom_sigma"], center_atom_weight=hypers["center_weight"]),
        basis=TensorProduct(max_angular=hypers["l_max"],
                            radial=Gto(max_radial=hypers["n_max"] - 1, radius=hypers["cutoff"])),
    )
    one = calculator.compute(atoms)  # a TensorMap with one block per (center, neighbor, neighbor) species
    dense = one.keys_to_samples("center_type").keys_to_properties(["neighbor_1_type", "neighbor_2_type"])
    gradients = ["positions"] if mode == "gradients" else []
    return lambda: calculator.compute(atoms, gradients=gradients), int(dense.block().values.shape[1])


def time_call(call: Call) -> tuple[float, float]:
    """Wall time and CPU time (all threads of this process) of one call, s."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_calls(call: Call, repeats: int, slow: float) -> list[tuple[float, float]]:
    """(wall, CPU) times (s) of ``repeats`` calls after a warm-up, or of the warm-up alone if it
    took more than ``slow`` s of wall time."""
    warm_up = time_call(call)
    if warm_up[0] > slow:
        return [warm_up]
    return [time_call(call) for _ in range(repeats)]


def child(case: dict[str, Any], structure: Path, repeats: int, slow: float) -> dict[str, Any]:
    """Run in a subprocess: time one case and report the times, feature count and peak memory."""
    from ase.io import read

    atoms = read(structure)
    if case["implementation"] == "pesmith":
        import torch

        torch.set_num_threads(case["threads"])
        call, n_features = pesmith_call(case["descriptor"], case["mode"], atoms)
    elif case["implementation"] == "dscribe":
        call, n_features = dscribe_call(case["descriptor"], case["mode"], atoms)
    else:
        call, n_features = featomic_call(case["mode"], atoms)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    measured = time_calls(call, repeats, slow)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = [wall for wall, _ in measured]
    cpu = statistics.median(cpu for _, cpu in measured)
    return {**case, "features": n_features, "times_s": times, "median_s": statistics.median(times),
            "best_s": min(times), "us_per_atom": 1e6 * statistics.median(times) / case["atoms"],
            "cpu_us_per_atom": 1e6 * cpu / case["atoms"], "baseline_mb": baseline_mb, "peak_mb": peak_mb,
            "estimated": False}


def write_structures(atom_counts: list[int], seed: int, folder: Path) -> None:
    """Run in a subprocess (so that the parent never imports torch, whose memory every child would
    inherit in its peak RSS): write one amorphous Li-Si cell per size to ``folder/lisi_<n>.traj``."""
    from ase.io import write

    from pesmith.testing import amorphous_lisi

    for n_atoms in atom_counts:
        write(folder / f"lisi_{n_atoms}.traj", amorphous_lisi(n_atoms, seed=seed))


def run_child(case: dict[str, Any], structure: Path, repeats: int, slow: float) -> dict[str, Any]:
    """Measure ``case`` in a fresh Python process with its thread count set in the environment."""
    env = {**os.environ, **{variable: str(case["threads"]) for variable in THREAD_VARIABLES}}
    command = [sys.executable, __file__, "--child", json.dumps(case), "--structure", str(structure),
               "--repeats", str(repeats), "--slow", str(slow)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def estimate(case: dict[str, Any], done: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Time of ``case`` extrapolated from the largest smaller size measured with the same settings:
    x N^2 for DScribe's numerical derivatives, x N otherwise. None if there is no such size."""
    same = [row for row in done if not row["estimated"] and row["atoms"] < case["atoms"]
            and all(row[k] == case[k] for k in ("descriptor", "implementation", "mode", "threads"))]
    if not same:
        return None
    smaller = max(same, key=lambda row: row["atoms"])
    power = 2 if (case["implementation"], case["mode"]) == ("dscribe", "gradients") else 1
    seconds = smaller["median_s"] * (case["atoms"] / smaller["atoms"]) ** power
    return {**case, "features": smaller["features"], "times_s": [], "median_s": seconds, "best_s": None,
            "us_per_atom": 1e6 * seconds / case["atoms"], "cpu_us_per_atom": None, "baseline_mb": None, "peak_mb": None, "estimated": True}


def cases(descriptors: list[str], atom_counts: list[int], thread_counts: list[int]) -> list[dict[str, Any]]:
    """Every (descriptor, implementation, mode, size, threads) to measure; DScribe at 1 thread only."""
    result = []
    for n_atoms in sorted(atom_counts):
        for name in descriptors:
            for implementation in ("pesmith", *PEERS[name]):
                for mode in MODES[implementation]:
                    for threads in thread_counts:
                        if implementation == "dscribe" and threads != 1:
                            continue
                        result.append({"descriptor": name, "implementation": implementation, "mode": mode,
                                       "atoms": n_atoms, "threads": threads})
    return result


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set ``ratio_to`` on pesmith rows: pesmith time / each peer's time for the same case (DScribe
    at 1 thread whatever pesmith's thread count)."""
    for row in rows:
        if row["implementation"] != "pesmith":
            continue
        row["ratio_to"] = {}
        for peer in row.get("peers", ()):
            threads = 1 if peer == "dscribe" else row["threads"]
            match = [other for other in rows if other["implementation"] == peer and other["threads"] == threads
                     and all(other[k] == row[k] for k in ("descriptor", "mode", "atoms"))]
            if match:
                row["ratio_to"][peer] = row["median_s"] / match[0]["median_s"]
                row.setdefault("ratio_estimated", {})[peer] = row["estimated"] or match[0]["estimated"]


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per case: µs per atom (median), ratio pesmith / peer, features and peak memory."""
    print("ratio = pesmith time / peer time for the same case: > 1 pesmith slower, < 1 pesmith faster.")
    print("[...] = not run, extrapolated from the smaller cell; * = DScribe at 1 thread (one system can't use more).")
    print("forces = pesmith features + one backward pass of a linear readout: NOT the peers' derivatives.")
    print("CPU µs/atom = process CPU time (all threads; spinning OpenMP threads count): a check on a busy machine.\n")
    header = f"{'descriptor':10} {'impl':9} {'mode':9} {'atoms':>5} {'thr':>3} {'F':>5} {'µs/atom':>11} " \
             f"{'vs dscribe':>11} {'vs featomic':>11} {'peak MB':>8} {'CPU µs/atom':>12}"
    print(header)
    print("-" * len(header))
    for row in rows:
        us = f"[{row['us_per_atom']:.0f}]" if row["estimated"] else f"{row['us_per_atom']:.1f}"
        ratios = []
        for peer in ("dscribe", "featomic"):
            value = row.get("ratio_to", {}).get(peer)
            star = "*" if peer == "dscribe" and row["threads"] != 1 else ""
            if value is None:
                ratios.append("")
            elif row.get("ratio_estimated", {}).get(peer):
                ratios.append(f"[{value:.3g}]{star}")
            else:
                ratios.append(f"{value:.3g}{star}")
        peak = f"{row['peak_mb']:.0f}" if row["peak_mb"] is not None else ""
        cpu = f"{row['cpu_us_per_atom']:.1f}" if row["cpu_us_per_atom"] is not None else ""
        print(f"{row['descriptor']:10} {row['implementation']:9} {row['mode']:9} {row['atoms']:>5} "
              f"{row['threads']:>3} {row['features']:>5} {us:>11} {ratios[0]:>11} {ratios[1]:>11} {peak:>8} {cpu:>12}")


def code_version() -> dict[str, Any]:
    """The pesmith commit measured and the tracked files modified in its working tree (read-only git)."""
    def git(*arguments: str) -> str:
        command = ["git", "--no-optional-locks", "-C", str(ROOT), *arguments]
        return subprocess.run(command, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "modified": git("status", "--porcelain", "--untracked-files=no")}


def machine_info() -> dict[str, Any]:
    """CPU count and versions of Python and of the libraries compared."""
    versions = {}
    for package in ("pesmith", "torch", "dscribe", "featomic", "metatensor-core", "vesin", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "versions": versions, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, nargs="+", default=[64, 512], help="cell sizes (atoms)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    parser.add_argument("--descriptors", nargs="+", choices=sorted(HYPERS), default=["acsf", "chebyshev", "soap"])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up")
    parser.add_argument("--slow", type=float, default=10.0,
                        help="seconds: a warm-up longer than this is the only call timed")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="do not run a case whose extrapolated time per call exceeds this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the amorphous cells")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "bench_descriptors.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--structure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write-structures", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.structure, args.repeats, args.slow)))
        return
    if args.write_structures:
        write_structures(args.atoms, args.seed, args.write_structures)
        return

    machine, code = machine_info(), code_version()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, __file__, "--write-structures", folder, "--seed", str(args.seed),
                        "--atoms", *map(str, args.atoms)], check=True)
        structures = {n_atoms: Path(folder) / f"lisi_{n_atoms}.traj" for n_atoms in args.atoms}
        for case in cases(args.descriptors, args.atoms, args.threads):
            guess = estimate(case, rows)
            if guess is not None and guess["median_s"] > args.max_seconds:
                row = guess
            else:
                row = run_child(case, structures[case["atoms"]], args.repeats, args.slow)
            row["peers"] = list(PEERS[case["descriptor"]]) if case["mode"] != "forces" else []
            rows.append(row)
            print(f"  {case['descriptor']} {case['implementation']} {case['mode']} {case['atoms']} atoms "
                  f"{case['threads']} thr: {row['median_s']:.3g} s{' (estimated)' if row['estimated'] else ''}",
                  file=sys.stderr, flush=True)
    add_ratios(rows)
    print_table(rows)
    if code_version() != code:
        print("\nWARNING: the pesmith code changed during the run; rows may mix versions", file=sys.stderr)
    before, after = machine["load_average"][0], os.getloadavg()[0]
    print(f"\n{machine['cpu_count']} CPUs; 1-minute load average {before:.1f} before, {after:.1f} after the run"
          " (above the CPU count, other processes share the cores and 2-thread timings suffer most)")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    machine["load_average_after"] = os.getloadavg()
    result = {"machine": machine, "code": code, "code_after": code_version(), "hyper_parameters": HYPERS, "featomic_smoothing_width": FEATOMIC_SMOOTHING,
              "species": SPECIES, "seed": args.seed, "repeats": args.repeats, "slow_s": args.slow,
              "max_seconds": args.max_seconds, "runs": rows}
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
