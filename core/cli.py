"""Command line: ``pesmith <verb> ...``. Errors print one line and exit with code 2.

This is the composition root: the one core module that reaches into ``pesmith.search`` (the
hull, the generated initial set), lazily inside the verbs that need it, and that hands the parallel map to labeling; the
library modules take such pieces as arguments (``tests/test_packaging.py`` checks the layers).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import __version__
from .errors import ConfigError, PesmithError
from .registry import Registry, default_registry
from .threads import prefer_passive_waiting

if TYPE_CHECKING:  # the verbs import these (and torch with them) when they run, not `--help`
    from .labeling import LabelSummary

EXIT_ALL_FAILED = 1  # `label`/`generate`: every structure of the run failed
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2)
ARGUMENT_PATHS = "relative paths resolve against the current folder"


def train_command(config_path: Path, registry: Registry, overwrite: bool = False) -> dict:
    """``pesmith train``: fit the potential of ``config_path`` and write it with its report;
    with ``overwrite`` an earlier run's outputs are replaced, otherwise they stop the run
    (:func:`pesmith.workflows.train` owns that rule and the check that the output is writable)."""
    from .config import load_train_config
    from .workflows import train

    config = load_train_config(config_path, registry)
    return train(
        config, registry, warn=lambda message: print(f"warning: {message}", file=sys.stderr), overwrite=overwrite, where=str(config_path)
    ).report


def saved_after_interrupt(report: dict) -> str:
    """What an interrupted ``pesmith train`` wrote, for its one line on stderr."""
    training = report["training"]
    kept = f" (best epoch {training['best_epoch']} of {training['epochs_run']} run)" if "best_epoch" in training else ""
    metrics = "" if report["metrics"] else ", without metrics"
    return f"wrote {report['model_file']}{kept} and its report{metrics}"


def print_metrics(metrics: dict[str, dict]) -> None:
    from .report import METRIC_UNITS

    names = list(metrics)
    print(f"{'metric':<28}{'unit':<10}" + "".join(f"{n:>12}" for n in names))
    for key in ("n_structures", *METRIC_UNITS):
        if not any(key in metrics[n] for n in names):
            continue
        unit = METRIC_UNITS.get(key, "")
        print(f"{key:<28}{unit:<10}" + "".join(f"{metrics[n].get(key, float('nan')):>12.4g}" for n in names))


def write_json(path: Path, content) -> None:
    """``--json`` output: ``content`` as indented JSON, written atomically (folders created)."""
    from .atomic_io import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(content, indent=2))


def evaluate_command(
    model_path: Path, data_path: Path, json_path: Path | None, registry: Registry, progress: bool = True
) -> None:
    """``pesmith evaluate``: print (and with ``json_path`` write) the model's errors on the data;
    with ``progress`` a bar on stderr while the structures are predicted."""
    from .data import check_structure_file, read_dataset
    from .model_file import load_potential
    from .validation import predict_dataset
    from .workflows import check_writable

    check_structure_file(data_path, "DATA argument", paths=ARGUMENT_PATHS)
    if json_path:
        check_writable(json_path, "--json")
    potential, _ = load_potential(model_path, registry)
    dataset = read_dataset(data_path)
    metrics = predict_dataset(potential, dataset, progress=progress, description=f"evaluating {data_path.name}").metrics()
    print_metrics({"value": metrics})
    if json_path:
        write_json(json_path, metrics)


def parse_references(text: str | None, elements: tuple[str, str]) -> dict[str, float]:
    """``--references Li=-1.90,Si=-5.42`` as ``{"Li": -1.9, "Si": -5.42}`` (eV/atom); ``None`` gives ``{}``.

    Raises
    ------
    ConfigError
        If a pair is not ``ELEMENT=NUMBER`` or names an element outside ``elements``.
    """
    if not text:
        return {}
    references: dict[str, float] = {}
    for pair in text.split(","):
        element, _, value = pair.partition("=")
        try:
            references[element.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--references {text!r}: expected ELEMENT=ENERGY pairs (eV/atom) separated by commas,"
                f" e.g. {elements[0]}=-1.90,{elements[1]}=-5.42"
            ) from None
    unknown = sorted(set(references) - set(elements))
    if unknown:
        raise ConfigError(f"--references names {unknown}, not among --elements {' '.join(elements)}")
    return references


def hull_command(
    data_path: Path, elements: tuple[str, str], json_path: Path | None, references: dict[str, float] | None = None
) -> None:
    """``pesmith hull``: print (and with ``json_path`` write) formation energies and the hull;
    ``references`` (eV/atom) replace the lowest-energy pure structures as elemental references."""
    from pesmith.search.hull import formation_energies

    from .data import check_structure_file, read_dataset
    from .workflows import check_writable

    check_structure_file(data_path, "DATA argument", paths=ARGUMENT_PATHS)
    if json_path:
        check_writable(json_path, "--json")
    dataset = read_dataset(data_path)
    entries = formation_energies(dataset.structures, dataset.energies, elements, references)
    print_hull(entries, elements[0])
    if json_path:
        write_json(json_path, [e.as_dict() for e in entries])


def label_command(config_path: Path, registry: Registry) -> LabelSummary:
    from .labeling import label_structures, load_label_config
    from .parallel import parallel_map

    config = load_label_config(config_path, registry)
    return label_structures(config, registry, parallel_map, where=str(config_path))


def generate_command(config_path: Path, registry: Registry) -> LabelSummary:
    from pesmith.search.initial_set import generate, load_generate_config
    from .parallel import parallel_map

    config = load_generate_config(config_path, registry)
    return generate(config, registry, parallel_map, where=str(config_path))


def print_label_summary(summary: LabelSummary) -> int:
    """Print the counts and one line per distinct failure reason; return the exit code."""
    print(
        f"{summary.n_structures} structures: {summary.n_labeled} labeled, {summary.n_failed} failed,"
        f" {summary.n_skipped} already in {summary.database} ({summary.wall_time:.1f} s)"
        + (f"; {summary.n_busy} being labeled by another run" if summary.n_busy else "")
    )
    for reason, count in summary.failures.items():
        print(f"  {count} failed: {reason}")
    if summary.all_failed:
        print(
            f"error: all {summary.n_failed} structures failed (reasons above, rows in {summary.database});"
            " fix the reference settings and rerun with retry_failed: true",
            file=sys.stderr,
        )
        return EXIT_ALL_FAILED
    return 0


def search_command(config_path: Path, registry: Registry, resume: bool, workers: int | None) -> int:
    """``pesmith search``: run (or with ``resume`` continue) the search of ``config_path`` and print
    its summary. Ctrl-C ends it with one line on stderr (the checkpoint is kept, ``--resume``
    continues) and :data:`EXIT_INTERRUPTED`."""
    from pesmith.parallel import parallel_map, stop_local_workers
    from pesmith.search.config import load_search_config
    from pesmith.search.loop import Search

    from .interrupt import RunInterrupted, interrupt_run
    from .workflows import check_writable

    check_not_plain_mpi("search", config_path)
    config = load_search_config(config_path, registry, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    if workers is not None:
        config.workers = workers
    check_writable(config.output / "checkpoint.json", "search output")
    with interrupt_run():  # Ctrl-C anywhere in the run: the checkpoint is as a kill would leave it
        try:
            result = Search(config, registry, config_path, parallel_map, echo=lambda line: print(line, flush=True)).run(resume=resume)
            print_search_summary(result)
        except RunInterrupted:
            stop_local_workers()
            print(interrupted_search(config.output / 'checkpoint.json', config_path), file=sys.stderr)
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
    from .parallel import plain_mpi_launch

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


def print_search_summary(result) -> None:
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


def search_status(config_path: Path, registry: Registry) -> None:
    """Print where the search of ``config_path`` stands, from its checkpoint."""
    from pesmith.search.config import load_search_config
    from pesmith.search.status import describe

    config = load_search_config(config_path, registry)
    print(describe(config.output / "checkpoint.json"))


def print_hull(entries: Sequence, element: str) -> None:
    """Table of :class:`pesmith.search.hull.HullEntry` rows, sorted by Li fraction (energies eV/atom)."""
    print(f"{'formula':<14}{'x_' + element:>8}{'E (eV/atom)':>14}{'E_f (eV/atom)':>15}{'above hull':>12}  on hull")
    for e in sorted(entries, key=lambda e: (e.x, e.formation_energy)):
        print(f"{e.formula:<14}{e.x:>8.3f}{e.energy_per_atom:>14.4f}{e.formation_energy:>15.4f}{e.e_above_hull:>12.4f}  {'yes' if e.on_hull else ''}")


def main(argv: Sequence[str] | None = None) -> int:
    prefer_passive_waiting()  # before any verb imports torch
    parser = argparse.ArgumentParser(prog="pesmith", description="Machine-learned interatomic potentials.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"pesmith {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", type=Path)
    train.add_argument("--overwrite", action="store_true", help="replace the model and report of an earlier run")
    evaluate = verbs.add_parser("evaluate", help="energy and force errors of a model on labeled data")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    label = verbs.add_parser("label", help="label structures with a reference into an ase.db (resumable)")
    label.add_argument("config", type=Path)
    generate = verbs.add_parser("generate", help="build and label an initial training set from crystals")
    generate.add_argument("config", type=Path)
    hull = verbs.add_parser("hull", help="formation energies (eV/atom) vs bcc Li and diamond Si, and the convex hull")
    hull.add_argument("data", type=Path, help="labeled structures (extxyz or ase.db from `pesmith label`)")
    hull.add_argument("--elements", nargs=2, default=["Li", "Si"], metavar=("A", "B"))
    hull.add_argument("--json", type=Path, help="also write the table to this JSON file")
    hull.add_argument(
        "--references",
        metavar="A=E,B=E",
        help="energies per atom (eV/atom) of the pure elements, e.g. Li=-1.90,Si=-5.42 (default: the lowest"
        " energy per atom among the pure structures in DATA)",
    )
    search = verbs.add_parser("search", help="GA delithiation search: model, reference confirmation, retraining, hull and voltage")
    search.add_argument("config", type=Path)
    search.add_argument("--resume", action="store_true", help="continue the run in the config's output folder from its checkpoint")
    search.add_argument("--status", action="store_true", help="print where the run stands and exit")
    search.add_argument("--workers", type=int, help="local worker processes (overrides the config; ignored under MPI)")
    verbs.add_parser("plugins", help="list installed descriptor, model and reference plugins")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registry = default_registry()
    try:
        if args.verb == "train":
            from .model import STOP_REASON

            try:
                report = train_command(args.config, registry, args.overwrite)
            except KeyboardInterrupt:
                print("interrupted before the fit had a model to keep: nothing was written", file=sys.stderr)
                return EXIT_INTERRUPTED
            if report["metrics"]:
                print_metrics(report["metrics"])
            if "interrupted" in report:
                print(f"interrupted {report['interrupted']}: {saved_after_interrupt(report)}", file=sys.stderr)
                return EXIT_INTERRUPTED
            if STOP_REASON in report["training"]:
                print(f"training stopped: {report['training'][STOP_REASON]}")
            print(f"wrote {report['model_file']} and its report")
        elif args.verb == "evaluate":
            try:
                evaluate_command(args.model, args.data, args.json, registry, progress=not args.no_progress)
            except KeyboardInterrupt:
                print("interrupted before the evaluation finished", file=sys.stderr)
                return EXIT_INTERRUPTED
        elif args.verb == "label":
            return print_label_summary(label_command(args.config, registry))
        elif args.verb == "generate":
            return print_label_summary(generate_command(args.config, registry))
        elif args.verb == "hull":
            elements = tuple(args.elements)
            hull_command(args.data, elements, args.json, parse_references(args.references, elements))
        elif args.verb == "search":
            if args.status:
                search_status(args.config, registry)
            else:
                try:
                    return search_command(args.config, registry, args.resume, args.workers)
                except KeyboardInterrupt:  # before the run started (the run itself raises RunInterrupted)
                    print("interrupted before the search started: nothing was written", file=sys.stderr)
                    return EXIT_INTERRUPTED
        elif args.verb == "plugins":
            print(f"{'kind':<12}{'name':<16}{'package':<20}description")
            for info in registry.plugins():
                print(f"{info.kind:<12}{info.name:<16}{info.provider:<20}{info.description}")
            for failure in registry.failures:
                print(f"failed to load plugin {failure.name}: {failure.reason}", file=sys.stderr)
    except PesmithError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
