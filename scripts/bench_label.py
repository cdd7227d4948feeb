"""Speed-up of `pesmith label` with 2 worker processes over 1, on xTB single points.

Labels the same ``--n`` 16-atom Li-Si cells (zinc-blende LiSi, a = 5.9 Å scaled by 0.97-1.03,
positions rattled by 0.05 Å) with GFN1-xTB (1000 K) into fresh databases,
once per worker count, through the exact code path of `pesmith label` (config file, label
database, ``parallel_map``). OpenMP is limited to one thread per process so that N processes
use N cores. Prints a table and writes JSON. "sum of label times" adds up the seconds spent in
``Reference.label`` (the database's ``wall_time``): if it grows with the worker count, the cores
slow each other down (shared machine, shared caches); if the wall time does not shrink although
it stays flat, the overhead is in the map.

    OMP_NUM_THREADS=1 python scripts/bench_label.py [--n 16] [--workers 1 2] [--json bench_label.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import ase.db  # noqa: E402
import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from ase.build import bulk  # noqa: E402


def structures(n: int, seed: int = 0) -> list:
    """``n`` 16-atom LiSi cells: zinc-blende, scaled by 0.97-1.03, rattled by 0.05 Å."""
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(n):
        atoms = bulk("LiSi", "zincblende", a=5.9 * rng.uniform(0.97, 1.03), cubic=True).repeat((1, 1, 2))
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        cells.append(atoms)
    return cells


def run(folder: Path, workers: int) -> dict:
    from pesmith.cli import label_command
    from pesmith.registry import Registry

    config = folder / f"label_{workers}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "structures": "structures.xyz",
                "database": f"labels_{workers}.db",
                "reference": {"kind": "xtb", "electronic_temperature": 1000.0},
                "workers": workers,
                "progress": False,
            }
        )
    )
    started = time.perf_counter()
    summary = label_command(config, Registry(entry_points=False))
    wall = time.perf_counter() - started
    with ase.db.connect(str(folder / f"labels_{workers}.db")) as db:
        busy = sum(row.wall_time for row in db.select())  # seconds inside Reference.label, summed
    return {"workers": workers, "wall_time_s": wall, "label_time_sum_s": busy, "labeled": summary.n_labeled, "failed": summary.n_failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="number of structures")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=Path("bench_label.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ase.io.write(folder / "structures.xyz", structures(args.n), format="extxyz")
        results = [run(folder, workers) for workers in args.workers]
    base = results[0]["wall_time_s"]
    print(f"{'workers':>8}{'wall time (s)':>15}{'s/structure':>13}{'speed-up':>10}{'sum of label times (s)':>24}{'labeled':>9}{'failed':>8}")
    for r in results:
        r["speedup"] = base / r["wall_time_s"]
        print(
            f"{r['workers']:>8}{r['wall_time_s']:>15.2f}{r['wall_time_s'] / args.n:>13.3f}{r['speedup']:>10.2f}"
            f"{r['label_time_sum_s']:>24.2f}{r['labeled']:>9}{r['failed']:>8}"
        )
    report = {"n_structures": args.n, "reference": "xtb GFN1-xTB 1000 K", "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "results": results}
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
