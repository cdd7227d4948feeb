"""Does a finished search's screen predict what the reference relaxation finds?

``anneal.screen`` ranks a step's annealed pool by one reference single point per member at the
model-relaxed geometry, and only the lowest ``confirm.candidates`` are relaxed with the
reference. This script relaxes *every* screened member of a finished run with the reference, on
the run's own ``confirm`` criteria, and reports per screen (``start screen``, ``step k screen``)
the single-point and relaxed energies (eV/atom), the relaxation gain, the Spearman rank
correlation between single point and relaxed energy, and where the members the screen sent to the
reference rank among all of them. A correlation near 0 means the screen chose at random. With
``--after-steps 20 40`` it also gives the correlation between the energy after that many FIRE
steps of the reference relaxation and the relaxed energy: what a short reference pre-relaxation
of every member would rank (its cost: that many force evaluations per member).

    OMP_NUM_THREADS=1 python scripts/screen_check.py configs/quickstart.yaml [--screens "step 1 screen"] [--workers 2]

Nothing of the run is changed: the members come from ``<output>/reference.db`` (read only) and the
relaxations are not labeled anywhere. Writes ``<output>/screen_check.json``. The cost is one
reference relaxation per screened member (for the quickstart, 27 members of 11-19 atoms: about
12 minutes on 2 cores with SevenNet-0).
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.db import connect  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from pesmith.labeling import build_reference  # noqa: E402
from pesmith.parallel import parallel_map  # noqa: E402
from pesmith.registry import default_registry  # noqa: E402
from pesmith.search.config import load_search_config  # noqa: E402
from pesmith.search.relaxation import relax_with_reference  # noqa: E402
from pesmith.simulate.relax import Relaxed  # noqa: E402


def screened_members(database: Path, screen: str) -> list[tuple[int, Atoms, float]]:
    """``(source_index, structure, single-point energy eV)`` of each successful label of ``screen``."""
    members = []
    for row in connect(database).select(source=screen):
        if row.get("status") == "ok" and "energy" in row:
            atoms = row.toatoms()
            members.append((int(row.source_index), Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc), float(row.energy)))
    return sorted(members, key=lambda member: member[0])


def summarise(screen: str, members: list[tuple[int, Atoms, float]], relaxed: dict[int, float | None], picked: int) -> dict:
    """The table of one screen: per member E/atom before and after, and the rank statistics."""
    rows = []
    for index, atoms, single_point in members:
        energy = relaxed[index]
        rows.append({
            "member": index,
            "atoms": len(atoms),
            "single_point_eV_per_atom": single_point / len(atoms),
            "relaxed_eV_per_atom": None if energy is None else energy / len(atoms),
        })
    done = [r for r in rows if r["relaxed_eV_per_atom"] is not None]
    rho = _spearman([r["single_point_eV_per_atom"] for r in done], [r["relaxed_eV_per_atom"] for r in done])
    by_screen = sorted(done, key=lambda r: r["single_point_eV_per_atom"])
    by_relaxed = sorted(done, key=lambda r: r["relaxed_eV_per_atom"])
    chosen = [r["member"] for r in by_screen[:picked]]
    return {
        "screen": screen,
        "members": rows,
        "relaxed": len(done),
        "spearman": rho,
        "screen_picks": chosen,
        "screen_picks_relaxed_ranks": [1 + [r["member"] for r in by_relaxed].index(m) for m in chosen],
        "best_relaxed_eV_per_atom": by_relaxed[0]["relaxed_eV_per_atom"] if by_relaxed else None,
        "best_of_picks_eV_per_atom": min((r["relaxed_eV_per_atom"] for r in by_screen[:picked]), default=None),
    }


def _spearman(a: list[float], b: list[float]) -> float | None:
    return float(spearmanr(a, b)[0]) if len(a) > 2 else None


def ranks_after_steps(paths: dict[int, np.ndarray], steps: list[int]) -> dict[int, float | None]:
    """Spearman rho between each member's energy after ``n`` FIRE steps (its last if it
    converged sooner) and its relaxed energy, per ``n`` of ``steps``; ``paths`` holds each relaxed
    member's energies (eV/atom) from the start to the end of its relaxation."""
    final = [float(path[-1]) for path in paths.values()]
    return {n: _spearman([float(path[min(n, len(path) - 1)]) for path in paths.values()], final) for n in steps}


def energy_path(single_point: float, relaxed: Relaxed) -> np.ndarray:
    """The energy (eV) after 0, 1, ..., ``relaxed.steps`` FIRE steps: the single point, every
    step's frame (``frame_interval`` 1), the relaxed energy last."""
    frames = [energy for _, energy, _, _ in relaxed.frames]
    return np.array(([single_point] + frames)[: relaxed.steps] + [relaxed.energy])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="the search config whose run finished")
    parser.add_argument("--screens", nargs="*", help="sources to check (default: every '... screen' in reference.db)")
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--after-steps", type=int, nargs="*", default=[], help="also rank by the energy after these many FIRE steps")
    args = parser.parse_args()
    registry = default_registry()
    config = load_search_config(args.config, registry)
    database = config.output / "reference.db"
    if not database.exists():
        raise SystemExit(f"{database}: no reference.db; run `pesmith search {args.config}` first")
    screens = args.screens or sorted({row.source for row in connect(database).select() if str(row.get("source", "")).endswith(" screen")})
    reference = build_reference(config.reference, registry, str(args.config))
    frames = 1 if args.after_steps else 0  # every step's energy, for --after-steps
    task = partial(relax_with_reference, reference, config.confirm, frames)  # the run's own confirmation criteria
    report = []
    for screen in screens:
        members = screened_members(database, screen)
        results = dict(parallel_map(task, [atoms for _, atoms, _ in members], workers=args.workers, progress=True, description=screen))
        relaxed = {members[i][0]: (results[i].energy if results[i].ok else None) for i in range(len(members))}
        picked = 1 if screen == "start screen" else config.confirm.candidates
        summary = summarise(screen, members, relaxed, picked)
        if args.after_steps:
            paths = {members[i][0]: energy_path(members[i][2], results[i]) / len(members[i][1]) for i in range(len(members)) if results[i].ok}
            summary["spearman_after_steps"] = ranks_after_steps(paths, args.after_steps)
            summary["relaxation_steps"] = {index: len(path) - 1 for index, path in paths.items()}
        report.append(summary)
        rho = "-" if summary["spearman"] is None else f"{summary['spearman']:.2f}"
        print(f"\n{screen}: {summary['relaxed']} of {len(members)} relaxed, Spearman rho (single point vs relaxed) {rho};"
              f" the screen's picks rank {summary['screen_picks_relaxed_ranks']} after relaxation")
        print(f"{'member':>6} {'atoms':>5} {'single point':>13} {'relaxed':>10} {'gain':>8}   (eV/atom)")
        for row in summary["members"]:
            after = row["relaxed_eV_per_atom"]
            gain = "-" if after is None else f"{row['single_point_eV_per_atom'] - after:8.4f}"
            relaxed_text = "failed" if after is None else f"{after:.4f}"
            print(f"{row['member']:>6} {row['atoms']:>5} {row['single_point_eV_per_atom']:13.4f} {relaxed_text:>10} {gain:>8}")
        for n, value in summary.get("spearman_after_steps", {}).items():
            print(f"  after {n} reference FIRE steps: Spearman rho {'-' if value is None else f'{value:.2f}'}")
    out = config.output / "screen_check.json"
    out.write_text(json.dumps(report, indent=1))
    rhos = [s["spearman"] for s in report if s["spearman"] is not None]
    print(f"\nmean Spearman rho over {len(rhos)} screens: {np.mean(rhos):.2f}" if rhos else "\nno screen with 3 relaxed members")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
