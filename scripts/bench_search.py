"""pesmith's GA against the ASE genetic algorithm (ase-ga) on a delithiation problem it can enumerate.

The problem: remove ``n_remove`` Li from an amorphous Li15Si4-like periodic cell
(``pesmith.testing.amorphous_lisi``); the cheap model is a Morse single point of the structure
with the Li removed. Every arrangement is enumerated for the global minimum; both GAs draw
energies from the same cache, but each run counts the evaluations it asked for (an evaluation
is a genome a GA asked for; ase-ga's duplicates are counted, and shown apart). For each GA and
seed: found the global minimum or not, evaluations until it was first found (a pesmith
generation counts whole), total evaluations. pesmith runs with its default ``GASettings`` and
is also scored at its own stopping rule (no knowledge of the minimum); ase-ga, which has no
stopping rule, runs until it finds the minimum or spends the budget (see
``scripts/search_peer.py`` for how ase-ga sees the problem).

The timing section runs pesmith's GA with a model of fixed cost (Morse + ``--relax-steps`` FIRE
steps) through ``pesmith.parallel.parallel_map`` with 1 and 2 workers and splits the wall time
into GA bookkeeping, model and map overhead.

    OMP_NUM_THREADS=1 python scripts/bench_search.py [--seeds 20] [--problems small large]
        [--budget-fraction 0.5] [--workers 1 2] [--relax-steps 10] [--json bench_search.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# parallel_map's forkserver preloads the module of the mapped function (search_peer) only if it
# can import it, and it does not get this process's sys.path (Python 3.11): without this, every
# pool's workers import torch and pesmith anew (measured 11 s per pool of 2 on the loaded machine)
SCRIPTS = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SCRIPTS, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, SCRIPTS)

import numpy as np  # noqa: E402

from search_peer import (  # noqa: E402
    EnergyCache,
    RunResult,
    enumerate_all,
    relaxed_energy,
    run_ase_ga,
    run_pesmith,
)

from pesmith.search.delithiation import DelithiationProblem  # noqa: E402
from pesmith.search.ga import GASettings, GeneticSearch, Outcome  # noqa: E402
from pesmith.testing import amorphous_lisi  # noqa: E402

PROBLEMS = {  # name: (atoms in the cell, Li removed)
    "small": (19, 4),  # Li15Si4, C(15, 4) = 1365 arrangements
    "large": (38, 3),  # Li30Si8, C(30, 3) = 4060 arrangements
}
SUCCESS_LEVELS = (0.5, 0.9)


def make_problem(name: str) -> DelithiationProblem:
    n_atoms, n_remove = PROBLEMS[name]
    return DelithiationProblem(amorphous_lisi(n_atoms, volume_per_atom=17.0, seed=1), n_remove)


def evaluations_at_success(runs: list[RunResult], level: float) -> int | None:
    """Evaluations after which ``level`` of the seeds had found the minimum (None: never within the budget)."""
    needed = sorted(r.evaluations_to_minimum for r in runs if r.found)
    k = math.ceil(level * len(runs))
    return needed[k - 1] if len(needed) >= k else None


def summarise(runs: list[RunResult], n_arrangements: int) -> dict:
    found = [r.evaluations_to_minimum for r in runs if r.found]
    quarter = n_arrangements / 4
    summary = {
        "seeds": len(runs),
        "found": sum(r.found for r in runs),
        "found_within_quarter": sum(1 for e in found if e < quarter),
        "median_to_minimum": float(np.median(found)) if found else None,
        "mean_to_minimum": float(np.mean(found)) if found else None,
        "median_distinct_to_minimum": float(np.median([r.distinct_to_minimum for r in runs if r.found])) if found else None,
        "at_success": {str(level): evaluations_at_success(runs, level) for level in SUCCESS_LEVELS},
        "mean_evaluations": float(np.mean([r.evaluations for r in runs])),
        "mean_distinct": float(np.mean([r.distinct for r in runs])),
        "duplicate_fraction": 1 - sum(r.distinct for r in runs) / sum(r.evaluations for r in runs),
        "seconds_per_evaluation": sum(r.seconds for r in runs) / sum(r.evaluations for r in runs),
    }
    for rule in ("own_stop", "patience_stop"):
        if getattr(runs[0], f"{rule}_evaluations") is None:
            continue
        used = [getattr(r, f"{rule}_evaluations") for r in runs]
        hits = [getattr(r, f"{rule}_found") for r in runs]
        summary[rule] = {
            "found": sum(hits),
            "median_evaluations": float(np.median(used)),
            "mean_evaluations": float(np.mean(used)),
            "max_evaluations": int(max(used)),
            "found_below_quarter": sum(1 for hit, n_used in zip(hits, used) if hit and n_used < quarter),
        }
    return summary


def compare(name: str, seeds: int, budget_fraction: float) -> dict:
    problem = make_problem(name)
    cache = EnergyCache(problem)
    enumeration = enumerate_all(cache)
    n = enumeration.n_arrangements
    budget = int(budget_fraction * n)
    print(f"\n[{name}] {problem.structure.get_chemical_formula()}, remove {problem.n_remove} of {problem.n_li} Li: "
          f"{n} arrangements, minimum {enumeration.minimum:.4f} eV ({enumeration.n_at_minimum} arrangement(s)), "
          f"spread {enumeration.spread:.3f} eV, enumeration {enumeration.seconds:.1f} s; budget {budget} evaluations", flush=True)
    runs = {"pesmith": [], "ase-ga": []}
    for seed in range(seeds):
        runs["pesmith"].append(run_pesmith(problem, cache, enumeration.minimum, seed, budget))
        runs["ase-ga"].append(run_ase_ga(problem, cache, enumeration.minimum, seed, budget))
        print(f"  seed {seed:2d}: " + "   ".join(
            f"{ga} {'found' if r[-1].found else 'MISSED'} at {r[-1].evaluations_to_minimum} of {r[-1].evaluations} ({r[-1].distinct} distinct)"
            for ga, r in runs.items()), flush=True)
    summaries = {ga: summarise(r, n) for ga, r in runs.items()}
    print_table(summaries, n, budget)
    return {
        "problem": {"name": name, "formula": problem.structure.get_chemical_formula(), "n_li": problem.n_li, "n_remove": problem.n_remove},
        "enumeration": vars(enumeration),
        "budget": budget,
        "settings": {"pesmith": GASettings().model_dump(), "ase-ga": "ga_optimize tutorial: population 20, mutation probability 0.3, "
                     "CutAndSplicePairing + PermutationMutation(probability=0.33), InteratomicDistanceComparator defaults, blmin 0.7 covalent radii"},
        "summary": summaries,
        "runs": {ga: [r.as_dict() for r in rs] for ga, rs in runs.items()},
    }


def print_table(summaries: dict, n: int, budget: int) -> None:
    def fmt(value, digits=0):
        return "-" if value is None else f"{value:.{digits}f}"

    levels = "".join(f"{f'evals at {int(100 * level)}%':>15}" for level in SUCCESS_LEVELS)
    print(f"  {'GA':<10}{'found':>8}{'< n/4':>7}{'median to min':>15}{'mean to min':>13}{levels}{'90% / n':>9}{'mean evals':>12}{'distinct to min':>17}{'duplicates':>12}{'ms/eval (GA)':>14}")
    for ga, s in summaries.items():
        at90 = s["at_success"]["0.9"]
        row = "".join(f"{fmt(s['at_success'][str(level)]):>15}" for level in SUCCESS_LEVELS)
        print(f"  {ga:<10}{s['found']:>5}/{s['seeds']:<2}{s['found_within_quarter']:>7}{fmt(s['median_to_minimum']):>15}{fmt(s['mean_to_minimum'], 1):>13}"
              f"{row}{fmt(None if at90 is None else at90 / n, 3):>9}{s['mean_evaluations']:>12.1f}{fmt(s['median_distinct_to_minimum']):>17}{100 * s['duplicate_fraction']:>11.1f}%"
              f"{1e3 * s['seconds_per_evaluation']:>14.2f}")
    for rule, label in (("own_stop", "its own stopping rule"), ("patience_stop", "patience counted from the last fall")):
        own = summaries["pesmith"][rule]
        print(f"  pesmith at {label}: found {own['found']}/{summaries['pesmith']['seeds']}, "
              f"{own['found_below_quarter']} with fewer than n/4 = {n / 4:.0f} evaluations; evaluations median {own['median_evaluations']:.0f}, "
              f"mean {own['mean_evaluations']:.1f}, max {own['max_evaluations']} ({own['max_evaluations'] / n:.3f} of enumeration)")
    for level in SUCCESS_LEVELS:
        ours, theirs = (summaries[ga]["at_success"][str(level)] for ga in ("pesmith", "ase-ga"))
        ratio = f"{ours / theirs:.2f}" if ours and theirs else f"- (ase-ga: not within {budget})" if ours else "-"
        print(f"  at {int(100 * level)}% success: pesmith {fmt(ours)} / ase-ga {fmt(theirs)} evaluations, ratio {ratio}")
    print("  ('to min': evaluations up to the one that found the minimum, a pesmith generation counted whole; 'distinct to min': median of"
          " the distinct genomes among them; ms/eval: GA time per evaluation, model excluded)")


def timed_ga(problem: DelithiationProblem, workers: int, seed: int, steps: int) -> dict:
    """pesmith's GA with the relaxed-Morse model mapped over ``workers`` by ``parallel_map``."""
    from pesmith.parallel import parallel_map

    model = functools.partial(relaxed_energy, steps=steps)
    clock = {"evaluate": 0.0, "model": 0.0, "maps": 0}

    def evaluate(genomes):
        started = time.perf_counter()
        energies = [0.0] * len(genomes)
        for index, (energy, seconds) in parallel_map(model, [problem.apply(g) for g in genomes], workers=workers):
            energies[index] = energy
            clock["model"] += seconds
        clock["evaluate"] += time.perf_counter() - started
        clock["maps"] += 1
        return [Outcome(e) for e in energies]

    load_before = os.getloadavg()
    started = time.perf_counter()
    state = GeneticSearch(problem, GASettings(), evaluate, np.random.default_rng(seed)).run()
    wall = time.perf_counter() - started
    n_eval = len(state.evaluations)
    return {
        "workers": workers,
        "evaluations": n_eval,
        "generations": state.generation,
        "best_energy": state.best()[0].energy,
        "evaluated_keys": list(state.evaluations),
        "wall_s": wall,
        "evaluations_per_s": n_eval / wall,
        "ga_bookkeeping_s": wall - clock["evaluate"],
        "model_s_summed": clock["model"],
        "model_ms_per_evaluation": 1e3 * clock["model"] / n_eval,
        "map_overhead_s": clock["evaluate"] - clock["model"] / workers,
        "maps": clock["maps"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def timing(worker_counts: list[int], steps: int, seed: int = 0) -> dict:
    from pesmith.parallel import parallel_map

    problem = make_problem("small")
    warm_start = time.perf_counter()  # start the forkserver (imports torch and pesmith once)
    list(parallel_map(functools.partial(relaxed_energy, steps=1), [problem.structure] * 2, workers=max(worker_counts)))
    warm_up = time.perf_counter() - warm_start
    runs = [timed_ga(problem, workers, seed, steps) for workers in worker_counts]
    base = runs[0]
    print(f"\n[timing] pesmith GA (defaults, seed {seed}) on the small problem, Morse + {steps} FIRE steps per evaluation, "
          f"through parallel_map (forkserver warm-up {warm_up:.1f} s, not counted)")
    print(f"  {'workers':>8}{'evals':>7}{'wall (s)':>10}{'evals/s':>9}{'speed-up':>10}{'GA (s)':>8}{'model (s, summed)':>19}{'ms/model':>10}{'map overhead (s)':>18}{'load before/after':>20}")
    for r in runs:
        r["speed_up"] = base["wall_s"] / r["wall_s"]
        r["same_run_as_1_worker"] = r["evaluated_keys"] == base["evaluated_keys"] and r["best_energy"] == base["best_energy"]
        print(f"  {r['workers']:>8}{r['evaluations']:>7}{r['wall_s']:>10.2f}{r['evaluations_per_s']:>9.1f}{r['speed_up']:>10.2f}{r['ga_bookkeeping_s']:>8.2f}"
              f"{r['model_s_summed']:>19.2f}{r['model_ms_per_evaluation']:>10.1f}{r['map_overhead_s']:>18.2f}"
              f"{r['load_average_before'][0]:>10.2f}/{r['load_average_after'][0]:.2f}")
    print("  (map overhead = time in the map minus summed model time / workers: pool start, pickling, imbalance;"
          f" same run with every worker count: {all(r['same_run_as_1_worker'] for r in runs)})")
    for r in runs:
        del r["evaluated_keys"]
    return {"relax_steps": steps, "seed": seed, "warm_up_s": warm_up, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--problems", nargs="*", choices=sorted(PROBLEMS), default=["small"])
    parser.add_argument("--budget-fraction", type=float, default=0.5, help="evaluations allowed per run, as a fraction of the arrangements")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts of the timing section (none: skip it)")
    parser.add_argument("--relax-steps", type=int, default=10, help="FIRE steps of the timing model")
    parser.add_argument("--json", type=Path, default=Path("bench_search.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    result = {
        "command": " ".join(sys.argv),
        "load_average_start": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "comparisons": [compare(name, args.seeds, args.budget_fraction) for name in args.problems],
    }
    if args.workers:
        result["timing"] = timing(args.workers, args.relax_steps)
    result["load_average_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {result['peak_rss_mib']:.0f} MiB (this process; the map workers are children of the forkserver); "
          f"load average {result['load_average_start'][0]:.2f} at start, {result['load_average_end'][0]:.2f} at end "
          f"({result['cpu_count']} cores); {result['wall_s']:.0f} s")
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
