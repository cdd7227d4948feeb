"""Benchmark full periodic neighbor lists: vesin vs matscipy vs ase.

Every library is asked for a FULL neighbor list (both i->j and j->i) as
``(i, j, S)``, where ``S`` is the integer cell shift such that
``r_ij = pos[j] - pos[i] + S @ cell`` and ``|r_ij| < cutoff``.

Two things are measured:

1. Correctness: the set of ``(i, j, S0, S1, S2)`` tuples from each library is
   compared with ase's (the reference) on
   (a) a small triclinic periodic Li-Si cell, smaller than twice the cutoff,
       so that many periodic images, including self-images, appear;
   (b) a ~1000-atom random periodic Li-Si cell (0.06 atoms/A^3);
   (c) a molecule without periodicity (zero cell);
   (d) a slab with pbc = (True, True, False).
2. Speed: median wall time (``time.perf_counter``, after one warm-up call) of
   cases (a), (b) and a 64-atom periodic cell, cutoff 6.0 A.  The results are
   printed as a table and written as JSON.

Standalone: needs only numpy, ase, matscipy and vesin.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import numpy as np
import vesin
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list
from matscipy.neighbours import neighbour_list as matscipy_neighbour_list

CUTOFF = 6.0
DENSITY = 0.06  # atoms / A^3
D_MIN = 1.8  # minimum interatomic distance, A


def random_positions(n: int, cell: np.ndarray, pbc, rng: np.random.Generator) -> np.ndarray:
    """Random-sequential-addition positions in ``cell`` with all distances >= D_MIN.

    Distances are checked against the 27 nearest images along periodic directions.
    """
    images = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    images = images[np.all((images == 0) | np.asarray(pbc), axis=1)] @ cell
    pos = np.empty((0, 3))
    for _ in range(200 * n):
        trial = rng.random(3) @ cell
        if len(pos) == 0 or np.min(np.linalg.norm(pos[:, None] + images[None] - trial, axis=-1)) >= D_MIN:
            pos = np.vstack([pos, trial])
            if len(pos) == n:
                return pos
    raise RuntimeError(f"could not place {n} atoms with d_min={D_MIN}")


def li_si(n: int, cell: np.ndarray, pbc, rng: np.random.Generator) -> Atoms:
    symbols = rng.choice(["Li", "Si"], size=n, p=[0.7, 0.3])
    return Atoms(symbols=list(symbols), positions=random_positions(n, cell, pbc, rng), cell=cell, pbc=pbc)


def bulk(n: int, seed: int) -> Atoms:
    """Cubic periodic cell of ``n`` atoms at DENSITY."""
    length = (n / DENSITY) ** (1 / 3)
    return li_si(n, np.eye(3) * length, True, np.random.default_rng(seed))


def build_cases(seed: int) -> dict[str, Atoms]:
    rng = np.random.default_rng(seed)
    triclinic = np.array([[4.6, 0.0, 0.0], [1.3, 4.3, 0.0], [0.9, -1.1, 4.9]])  # all < 2 * CUTOFF
    molecule = li_si(20, np.eye(3) * 7.0, False, rng)
    molecule.positions -= molecule.positions.mean(axis=0)  # centred at the origin, outside any box
    molecule.set_cell(np.zeros((3, 3)))
    slab = li_si(30, np.array([[7.0, 0.0, 0.0], [2.5, 6.5, 0.0], [0.0, 0.0, 9.0]]), (True, True, False), rng)
    slab.cell[2] = [0.0, 0.0, 25.0]  # vacuum along the non-periodic direction
    return {
        "a_small_triclinic": li_si(10, triclinic, True, rng),
        "b_bulk_1000": bulk(1000, seed + 1),
        "c_molecule": molecule,
        "d_slab_mixed_pbc": slab,
    }


def run_ase(atoms: Atoms, cutoff: float):
    return ase_neighbor_list("ijS", atoms, cutoff)


def run_matscipy(atoms: Atoms, cutoff: float):
    return matscipy_neighbour_list("ijS", atoms, cutoff)


def run_vesin(atoms: Atoms, cutoff: float):
    # Zero box + periodic=False works for molecules; a (3,) bool array handles mixed pbc.
    nl = vesin.NeighborList(cutoff=cutoff, full_list=True)
    return nl.compute(points=atoms.positions, box=atoms.cell.array, periodic=atoms.pbc, quantities="ijS")


LIBRARIES: dict[str, Callable] = {"vesin": run_vesin, "matscipy": run_matscipy, "ase": run_ase}


def pair_set(i, j, S) -> set[tuple[int, ...]]:
    return set(map(tuple, np.column_stack([i, j, S]).astype(np.int64).tolist()))


def check_correctness(cases: dict[str, Atoms], cutoff: float) -> dict:
    results = {}
    for name, atoms in cases.items():
        reference = pair_set(*run_ase(atoms, cutoff))
        results[name] = {}
        for lib, fn in LIBRARIES.items():
            try:
                i, j, S = fn(atoms, cutoff)
                found = pair_set(i, j, S)
                entry = {"pairs": len(i), "unique": len(found), "equal": found == reference and len(i) == len(found)}
            except Exception as exc:  # report, don't crash: a failure is a result
                entry = {"pairs": None, "equal": False, "error": f"{type(exc).__name__}: {exc}"}
            results[name][lib] = entry
    return results


def time_call(fn: Callable, atoms: Atoms, cutoff: float, repeats: int) -> tuple[float, int]:
    n_pairs = len(fn(atoms, cutoff)[0])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(atoms, cutoff)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), n_pairs


def benchmark(cases: dict[str, Atoms], cutoff: float, repeats: int) -> list[dict]:
    rows = []
    for name, atoms in cases.items():
        timings = {lib: time_call(fn, atoms, cutoff, repeats) for lib, fn in LIBRARIES.items()}
        for lib, (ms, n_pairs) in timings.items():
            rows.append({"case": name, "n_atoms": len(atoms), "library": lib, "pairs": n_pairs,
                         "median_ms": ms, "ratio_to_ase": ms / timings["ase"][0]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="bench_neighbors.json", help="output JSON path")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per library and case")
    parser.add_argument("--cutoff", type=float, default=CUTOFF, help="cutoff radius in A")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cases = build_cases(args.seed)
    correctness = check_correctness(cases, args.cutoff)
    print(f"Correctness vs ase (cutoff {args.cutoff} A): set of (i, j, S) tuples")
    for name, libs in correctness.items():
        print(f"  {name} ({len(cases[name])} atoms)")
        for lib, entry in libs.items():
            status = "equal" if entry["equal"] else "DIFFERENT"
            detail = entry.get("error", f"{entry['pairs']} pairs")
            print(f"    {lib:9s} {status:9s} {detail}")

    speed_cases = {"a_small_triclinic": cases["a_small_triclinic"], "bulk_64": bulk(64, args.seed + 2),
                   "b_bulk_1000": cases["b_bulk_1000"]}
    rows = benchmark(speed_cases, args.cutoff, args.repeats)
    print(f"\nSpeed (median of {args.repeats} after warm-up, cutoff {args.cutoff} A)")
    print(f"{'case':20s} {'library':9s} {'pairs':>8s} {'median ms':>10s} {'vs ase':>7s}")
    for row in rows:
        print(f"{row['case']:20s} {row['library']:9s} {row['pairs']:8d} "
              f"{row['median_ms']:10.3f} {row['ratio_to_ase']:7.3f}")

    with open(args.json, "w") as fh:
        json.dump({"cutoff": args.cutoff, "repeats": args.repeats, "seed": args.seed,
                   "correctness": correctness, "timings": rows}, fh, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
