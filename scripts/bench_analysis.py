"""RDF and MSD of a long trajectory: pesmith.analysis against ase.geometry.rdf and MDAnalysis.

A synthetic trajectory (default 1,000 atoms, 10,000 frames, 0.06 atoms/Å^3, seed 0): 750 Si
vibrating about simple-cubic sites (0.1 Å) and 250 Li on random walks (0.05 Å per frame and
axis), frames wrapped into the cell. Every tool runs in its own process (its peak RSS is its
own), on the same positions:

- RDF, r_max 6 Å, 200 bins: pesmith (vesin neighbour list, reused between frames with a
  ``--skin`` margin, default 2 Å; 0 builds it every frame; ``--workers`` processes, default 2) on
  every frame; ``ase.geometry.rdf``
  and MDAnalysis ``InterRDF`` (self pairs excluded, so its g is N/(N - 1) times ours) on the
  first ``--peer-frames`` frames, which is as long as they take; ratios are per frame.
- MSD of Li with every time origin (FFT): pesmith from the wrapped frames (unwrapping included)
  and MDAnalysis ``EinsteinMSD(fft=True)`` (needs tidynamics) from the unwrapped positions.

The outputs are compared (max |difference|) where the tools compute the same quantity. Peak RSS
of pesmith's RDF worker processes (the largest one) is in the JSON as ``worker_peak_rss_mb``. Peak RSS
is each child's whole process: the synthetic positions it builds (24 bytes x atoms x frames, 240 MB
at the defaults) and, for pesmith's RDF, torch, which vesin imports when it is installed. Prints a
table (seconds, ms per frame, ratio to pesmith, peak RSS) and writes JSON::

    python scripts/bench_analysis.py                                  # 1,000 atoms x 10,000 frames
    python scripts/bench_analysis.py --frames 1000 --peer-frames 20   # a quick look

Needs MDAnalysis and tidynamics (``pip install MDAnalysis tidynamics``, both in the bench extra); without them those rows
are skipped with the reason.
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

R_MAX, N_BINS = 6.0, 200  # Å, bins
DENSITY = 0.06  # atoms / Å^3
FRAME_FS = 10.0  # fs between frames
TASKS = ("pesmith_rdf", "ase_rdf", "mdanalysis_rdf", "pesmith_msd", "mdanalysis_msd")


def synthetic(n_atoms: int, n_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unwrapped positions (n_frames, n_atoms, 3) float64 Å, atomic numbers, and the cubic cell."""
    rng = np.random.default_rng(seed)
    side = round(n_atoms ** (1 / 3))
    length = (n_atoms / DENSITY) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms] * (length / side)
    grid = np.concatenate([grid, rng.uniform(0, length, (n_atoms - len(grid), 3))])
    numbers = np.full(n_atoms, 14)
    numbers[::4] = 3
    li = numbers == 3
    positions = np.empty((n_frames, n_atoms, 3))
    walk = np.zeros((li.sum(), 3))
    for frame in range(n_frames):
        positions[frame] = grid + rng.normal(0.0, 0.1, grid.shape)
        positions[frame, li] = grid[li] + walk
        walk += rng.normal(0.0, 0.05, walk.shape)
    return positions, numbers, np.eye(3) * length


def frames(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, stop: int | None = None):
    """Wrapped ase.Atoms one at a time (what a file reader would give)."""
    from ase import Atoms

    inverse = np.linalg.inv(cell)
    for r in positions[:stop]:
        wrapped = (r @ inverse % 1.0) @ cell
        yield Atoms(numbers=numbers, positions=wrapped, cell=cell, pbc=True)


def universe(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, wrap: bool):
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    u = mda.Universe.empty(len(numbers), trajectory=False)
    u.add_TopologyAttr("name", ["Li" if z == 3 else "Si" for z in numbers])
    coordinates = (positions @ np.linalg.inv(cell) % 1.0) @ cell if wrap else positions
    dimensions = np.array([*np.diag(cell), 90.0, 90.0, 90.0])
    u.load_new(coordinates.astype(np.float32), format=MemoryReader, dimensions=dimensions, dt=FRAME_FS / 1000.0)
    return u


def run_task(task: str, args: argparse.Namespace) -> dict:
    """Build the input (not timed), run one tool (timed); returns seconds, frames and a result."""
    positions, numbers, cell = synthetic(args.atoms, args.frames, args.seed)
    peer = min(args.peer_frames, args.frames)
    if task == "pesmith_rdf":
        from pesmith.analysis.rdf import rdf

        start = time.perf_counter()
        result = rdf(frames(positions, numbers, cell), R_MAX, N_BINS, neighbors="vesin", skin=args.skin, workers=args.workers)
        seconds = time.perf_counter() - start
        check = rdf(frames(positions, numbers, cell, peer), R_MAX, N_BINS, neighbors="vesin", skin=args.skin).total
        return {"seconds": seconds, "frames": args.frames, "g": check.tolist(), "g_all_frames_peak": float(result.total.max())}
    if task == "ase_rdf":
        from ase.geometry.rdf import get_rdf

        images = list(frames(positions, numbers, cell, peer))
        start = time.perf_counter()
        g, _ = get_rdf(images, R_MAX, N_BINS)
        return {"seconds": time.perf_counter() - start, "frames": peer, "g": g.tolist()}
    if task == "mdanalysis_rdf":
        from MDAnalysis.analysis.rdf import InterRDF

        u = universe(positions[:peer], numbers, cell, wrap=True)
        start = time.perf_counter()
        analysis = InterRDF(u.atoms, u.atoms, nbins=N_BINS, range=(0.0, R_MAX), exclusion_block=(1, 1)).run()
        n = len(numbers)
        return {"seconds": time.perf_counter() - start, "frames": peer, "g": (analysis.results.rdf * (n - 1) / n).tolist()}
    if task == "pesmith_msd":
        from pesmith.analysis.diffusion import diffusion_coefficients

        start = time.perf_counter()
        result = diffusion_coefficients(frames(positions, numbers, cell), FRAME_FS, species=["Li"])["Li"]
        return {"seconds": time.perf_counter() - start, "frames": args.frames, "msd": result.msd.tolist(), "D": result.D}
    if task == "mdanalysis_msd":
        from MDAnalysis.analysis.msd import EinsteinMSD

        u = universe(positions, numbers, cell, wrap=False)
        start = time.perf_counter()
        analysis = EinsteinMSD(u, select="name Li", msd_type="xyz", fft=True).run()
        return {"seconds": time.perf_counter() - start, "frames": args.frames, "msd": analysis.results.timeseries.tolist()}
    raise ValueError(task)


def child(task: str, args: argparse.Namespace) -> None:
    out = run_task(task, args)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # the largest worker process, if any
    print(json.dumps(out))


def measure(task: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", task, "--atoms", str(args.atoms), "--frames", str(args.frames),
               "--peer-frames", str(args.peer_frames), "--seed", str(args.seed), "--skin", str(args.skin), "--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"skipped": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict) -> list[str]:
    lines = [f"{'task':<16}{'frames':>8}{'seconds':>10}{'ms/frame':>10}{'x pesmith':>11}{'peak RSS MB':>13}  check"]
    for task in TASKS:
        r = results[task]
        if "skipped" in r:
            lines.append(f"{task:<16}  skipped: {r['skipped']}")
            continue
        mine = results["pesmith_" + task.split("_")[1]]
        ratio = (r["seconds"] / r["frames"]) / (mine["seconds"] / mine["frames"])
        lines.append(f"{task:<16}{r['frames']:>8}{r['seconds']:>10.2f}{1000 * r['seconds'] / r['frames']:>10.3f}{ratio:>11.1f}"
                     f"{r['peak_rss_mb']:>13.0f}  {r.get('check', '')}")
    return lines


def compare(results: dict) -> None:
    """Max |difference| to pesmith where both computed the same quantity."""
    ours = results["pesmith_rdf"]
    for task in ("ase_rdf", "mdanalysis_rdf"):
        if "g" in results[task] and "g" in ours:
            # bin 0 and bin edges differ in convention ((a, b] here and in ASE, [a, b) in MDAnalysis)
            results[task]["check"] = f"max |g - g_pesmith| = {np.max(np.abs(np.array(results[task]['g']) - ours['g'])):.2e}"
    if "msd" in results["mdanalysis_msd"] and "msd" in results["pesmith_msd"]:
        a, b = np.array(results["mdanalysis_msd"]["msd"]), np.array(results["pesmith_msd"]["msd"])
        results["mdanalysis_msd"]["check"] = f"max |MSD rel diff| = {np.max(np.abs(a[1:] - b[1:]) / b[1:]):.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--peer-frames", type=int, default=200, help="frames for ASE's and MDAnalysis' RDF (ratios are per frame)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skin", type=float, default=2.0, help="Å, margin of pesmith's reused pair list (0: built every frame)")
    parser.add_argument("--workers", type=int, default=2, help="processes of pesmith's RDF (blocks of 500 frames)")
    parser.add_argument("--json", default="bench_analysis.json")
    parser.add_argument("--child", choices=TASKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    args.peer_frames = min(args.peer_frames, args.frames)
    results = {}
    for task in TASKS:
        results[task] = measure(task, args)
        print(f"{task}: {results[task].get('seconds', results[task].get('skipped'))}", file=sys.stderr, flush=True)
    compare(results)
    print(f"{args.atoms} atoms, {args.frames} frames ({args.peer_frames} for the peers' RDF), r_max {R_MAX} Å, {N_BINS} bins, skin {args.skin} Å, {args.workers} workers for pesmith's RDF")
    print("\n".join(table(results)))
    slim = {task: {k: v for k, v in r.items() if k not in ("g", "msd")} for task, r in results.items()}
    Path(args.json).write_text(json.dumps({"atoms": args.atoms, "frames": args.frames, "peer_frames": args.peer_frames,
                                           "seed": args.seed, "skin": args.skin, "workers": args.workers, "r_max": R_MAX, "n_bins": N_BINS, "results": slim}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
