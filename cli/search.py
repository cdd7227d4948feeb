"""``pesmith search``: run, resume or report on a structure search, and print its summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import EXIT_INTERRUPTED, EXIT_USER_ERROR, print_warning

if TYPE_CHECKING:  # the search (and torch with it) is imported when the verb runs, not `--help`
    from pesmith.search.loop import SearchResult


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``search`` verb to the ``pesmith`` parser's ``verbs``."""
    search = verbs.add_parser("search", help="GA delithiation search: model, reference confirmation, retraining, hull and voltage")
    search.add_argument("config", type=Path)
    search.add_argument("--resume", action="store_true", help="continue the run in the config's output folder from its checkpoint")
    search.add_argument("--status", action="store_true", help="print where the run stands and exit")
    search.add_argument("--workers", type=int, help="local worker processes (overrides the config; ignored under MPI)")
    search.set_defaults(run=run_search)


def search_command(config_path: Path, registry: Registry, resume: bool, workers: int | None) -> int:
    """``pesmith search``: run (or with ``resume`` continue) the search of ``config_path`` and print
    its summary. Ctrl-C ends it with one line on stderr (the checkpoint is kept, ``--resume``
    continues) and :data:`EXIT_INTERRUPTED`."""
    from pesmith.interrupt import RunInterrupted, interrupt_run
    from pesmith.parallel import parallel_map, stop_local_workers
    from pesmith.search.config import load_search_config
    from pesmith.search.loop import Search
    from pesmith.workflows import check_writable

    check_not_plain_mpi("search", config_path)
    config = load_search_config(config_path, registry, warn=print_warning)
    if workers is not None:
        config.workers = workers
    check_writable(config.output / "checkpoint.json", "search output")
    with interrupt_run():  # Ctrl-C anywhere in the run: the checkpoint is as a kill would leave it
        try:
            result = Search(config, registry, config_path, parallel_map, echo=lambda line: print(line, flush=True)).run(resume=resume)
            print_search_summary(result)
        except RunInterrupted:
            stop_local_workers()
            print(interrupted_search(config.output / "checkpoint.json", config_path), file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def interrupted_search(checkpoint: Path, config_path: Path) -> str:
    """The one line for a Ctrl-C'd ``pesmith search``: what was kept and how to go on."""
    if checkpoint.exists():
        return f"interrupted: {checkpoint} is kept; `pesmith search {config_path} --resume` continues the search"
    return f"interrupted before the search wrote its checkpoint: nothing to resume; `pesmith search {config_path}` starts it"


def check_not_plain_mpi(verb: str, config_path: Path) -> None:
    """Refuse a run started as several MPI ranks without ``mpi4py.futures``, where every rank
    would run its own ``pesmith verb`` in the same folder: rank 0 raises :class:`ConfigError`
    with the right command, the other ranks exit quietly with :data:`EXIT_USER_ERROR`."""
    from pesmith.parallel import plain_mpi_launch

    launch = plain_mpi_launch()
    if launch is None:
        return
    size, rank = launch
    if rank != 0:
        raise SystemExit(EXIT_USER_ERROR)
    raise ConfigError(
        f"`pesmith {verb}` was started as {size} MPI ranks without mpi4py.futures, so each rank would run its own {verb}"
        f" in the same folder; run `mpiexec -n {size} python -m mpi4py.futures -m pesmith {verb} {config_path}`"
        f" (rank 0 runs the {verb}, the other {size - 1} are its workers)"
    )


def print_search_summary(result: SearchResult) -> None:
    """Per-step table (GA, confirmations, the model's error on the new labels before retraining),
    hull compositions and voltages of a finished search."""
    print(f"\n{'step':>4} {'x':>13} {'evaluated':>9} {'dup %':>6} {'confirmed':>9} {'failed':>6} {'E err (meV/at)':>14} {'F err (eV/Å)':>12} {'E_ref (eV/at)':>13}  lowest from")
    for s in result.steps:
        dup = 100 * s.duplicates / max(1, s.duplicates + s.evaluated)
        e_err = f"{s.model_energy_rmse_meV_per_atom:.1f}" if s.model_energy_rmse_meV_per_atom is not None else "-"
        f_err = f"{s.model_force_rmse_eV_per_A:.3f}" if s.model_force_rmse_eV_per_A is not None else "-"
        e_ref = f"{s.lowest_reference_energy_per_atom:.4f}" if s.lowest_reference_energy_per_atom is not None else "-"
        print(f"{s.step + 1:>4} {s.x_from:>5.2f} -> {s.x_to:<5.2f} {s.evaluated:>9} {dup:>6.0f} {s.confirmed:>9} {s.failed_confirmations:>6} {e_err:>14} {f_err:>12} {e_ref:>13}  {s.lowest_origin or 'ga'}")
    for model in result.models:
        if model.get("holdout"):
            h = model["holdout"]
            print(f"model after step {model['step']}: holdout {h['energy_rmse_meV_per_atom']:.1f} meV/atom, {h['force_rmse_eV_per_A']:.3f} eV/Å")
    truth = [m for m in result.models if m.get("truth")]
    if truth and result.reference_truth:
        first, last = truth[0]["truth"], truth[-1]["truth"]
        print(
            f"force RMSE on holdout_truth ({last['n_structures']} structures): first model {first['force_rmse_eV_per_A']:.3f},"
            f" final model {last['force_rmse_eV_per_A']:.3f}, the reference itself {result.reference_truth['force_rmse_eV_per_A']:.3f} eV/Å"
        )
    on_hull = sorted((r for r in result.hull if r["on_hull"]), key=lambda r: r["li_fraction"])
    print("on the crystalline hull: " + ", ".join(f"{r['reduced_formula']} ({r['kind']}, E_f {r['formation_energy_eV_per_atom']:.3f} eV/atom)" for r in on_hull))
    if result.search_vs_baseline:
        print(f"\n{'x':>6} {'search E_f (eV/at)':>18} {'baseline E_f (eV/at)':>20} {'search - baseline (meV/at)':>26} {'relaxations':>11}  search's lowest by origin (E_f, eV/at)")
        for c in result.search_vs_baseline:
            search = f"{c['search_lowest_eV_per_atom']:.4f}" if c["search_lowest_eV_per_atom"] is not None else "-"
            gain = f"{c['search_minus_baseline_meV_per_atom']:+.1f}" if c["search_minus_baseline_meV_per_atom"] is not None else "-"
            origins = ", ".join(f"{origin} {e:.4f}" for origin, e in c["search_lowest_by_origin"].items()) or "-"
            print(f"{c['li_per_si']:>6.2f} {search:>18} {c['baseline_lowest_eV_per_atom']:>20.4f} {gain:>26} {c['search_structures']:>5} / {c['baseline_structures']:<4}  {origins}")
    for name, profile in (("crystalline", result.voltages), ("amorphous", result.amorphous_voltages)):
        if profile:
            print(f"{name} voltage profile: " + ", ".join(f"x {v['x_low']:.2f}-{v['x_high']:.2f} {v['voltage']:.3f} V" for v in profile))
    for name, path in result.files.items():
        print(f"wrote {path}")


def search_status(config_path: Path) -> None:
    """Print where the search of ``config_path`` stands, from its checkpoint; only the config's
    ``output`` is read, so no torch is imported (under a second instead of about 3 s)."""
    from pesmith.config import output_folder
    from pesmith.search.status import describe

    print(describe(output_folder(config_path) / "checkpoint.json"))


def run_search(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith search`` (or with ``--status`` report on it) for the parsed ``args``; return
    the exit code."""
    if args.status:
        search_status(args.config)
        return 0
    try:
        return search_command(args.config, registry, args.resume, args.workers)
    except KeyboardInterrupt:  # before the run started (the run itself raises RunInterrupted)
        print("interrupted before the search started: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
