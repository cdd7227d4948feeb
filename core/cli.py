"""Command line: ``pesmith <verb> ...``. Errors print one line and exit with code 2.

This is the composition root: the one core module that reaches into ``pesmith.search`` (the
parallel map for ``label``/``generate``, the hull), lazily inside the verbs that need it; the
library modules take such pieces as arguments (``tests/test_packaging.py`` checks the layers).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .atomic import write_text_atomic
from .config import load_train_config
from .data import read_dataset
from .errors import PesmithError
from .generate import generate, load_generate_config
from .labeling import LabelSummary, failed_rows, label_structures, load_label_config
from .model_file import load_potential
from .registry import Registry, default_registry
from .report import METRIC_UNITS
from .validation import predict_dataset

EXIT_USER_ERROR = 2
MAX_FAILURES_SHOWN = 10


def train_command(config_path: Path, registry: Registry) -> dict:
    from .workflows import train

    return train(load_train_config(config_path, registry), registry).report


def print_metrics(metrics: dict[str, dict]) -> None:
    names = list(metrics)
    print(f"{'metric':<28}{'unit':<10}" + "".join(f"{n:>12}" for n in names))
    for key in ("n_structures", *METRIC_UNITS):
        if not any(key in metrics[n] for n in names):
            continue
        unit = METRIC_UNITS.get(key, "")
        print(f"{key:<28}{unit:<10}" + "".join(f"{metrics[n].get(key, float('nan')):>12.4g}" for n in names))


def write_json(path: Path, content) -> None:
    """``--json`` output: ``content`` as indented JSON, written atomically (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(content, indent=2))


def label_command(config_path: Path, registry: Registry) -> LabelSummary:
    from pesmith.search.parallel import parallel_map  # the map shared with the search

    config = load_label_config(config_path, registry)
    return label_structures(config, registry, parallel_map, where=str(config_path))


def generate_command(config_path: Path, registry: Registry) -> LabelSummary:
    from pesmith.search.parallel import parallel_map

    config = load_generate_config(config_path, registry)
    return generate(config, registry, parallel_map, where=str(config_path))


def print_label_summary(summary: LabelSummary) -> None:
    print(
        f"{summary.n_structures} structures: {summary.n_labeled} labeled, {summary.n_failed} failed,"
        f" {summary.n_skipped} already in {summary.database} ({summary.wall_time:.1f} s)"
    )
    for row_id, formula, reason in failed_rows(summary.database)[:MAX_FAILURES_SHOWN]:
        print(f"  failed row {row_id} ({formula}): {reason.splitlines()[0] if reason else ''}")


def print_hull(entries: Sequence, element: str) -> None:
    """Table of :class:`pesmith.search.hull.HullEntry` rows, sorted by Li fraction (energies eV/atom)."""
    print(f"{'formula':<14}{'x_' + element:>8}{'E (eV/atom)':>14}{'E_f (eV/atom)':>15}{'above hull':>12}  on hull")
    for e in sorted(entries, key=lambda e: (e.x, e.formation_energy)):
        print(f"{e.formula:<14}{e.x:>8.3f}{e.energy_per_atom:>14.4f}{e.formation_energy:>15.4f}{e.e_above_hull:>12.4f}  {'yes' if e.on_hull else ''}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pesmith", description="Machine-learned interatomic potentials.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"pesmith {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", type=Path)
    evaluate = verbs.add_parser("evaluate", help="energy and force errors of a model on labeled data")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    label = verbs.add_parser("label", help="label structures with a reference into an ase.db (resumable)")
    label.add_argument("config", type=Path)
    generate = verbs.add_parser("generate", help="build and label an initial training set from crystals")
    generate.add_argument("config", type=Path)
    hull = verbs.add_parser("hull", help="formation energies (eV/atom) vs bcc Li and diamond Si, and the convex hull")
    hull.add_argument("data", type=Path, help="labeled structures (extxyz or ase.db from `pesmith label`)")
    hull.add_argument("--elements", nargs=2, default=["Li", "Si"], metavar=("A", "B"))
    hull.add_argument("--json", type=Path, help="also write the table to this JSON file")
    verbs.add_parser("plugins", help="list installed descriptor, model and reference plugins")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registry = default_registry()
    try:
        if args.verb == "train":
            report = train_command(args.config, registry)
            print_metrics(report["metrics"])
            print(f"wrote {report['model_file']} and its report")
        elif args.verb == "evaluate":
            potential, _ = load_potential(args.model, registry)
            metrics = predict_dataset(potential, read_dataset(args.data)).metrics()
            print_metrics({"value": metrics})
            if args.json:
                write_json(args.json, metrics)
        elif args.verb == "label":
            print_label_summary(label_command(args.config, registry))
        elif args.verb == "generate":
            print_label_summary(generate_command(args.config, registry))
        elif args.verb == "hull":
            from pesmith.search.hull import formation_energies

            dataset = read_dataset(args.data)
            entries = formation_energies(dataset.structures, dataset.energies, tuple(args.elements))
            print_hull(entries, args.elements[0])
            if args.json:
                write_json(args.json, [e.as_dict() for e in entries])
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
