"""``pesmith evaluate``: a model's energy and force errors on labeled data, as a table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pesmith.registry import Registry

from .common import ARGUMENT_PATHS, EXIT_INTERRUPTED, write_json


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` verb to the ``pesmith`` parser's ``verbs``."""
    evaluate = verbs.add_parser("evaluate", help="energy and force errors of a model on labeled data")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    evaluate.set_defaults(run=run_evaluate)


def print_metrics(metrics: dict[str, dict]) -> None:
    """Table of metrics (rows, with units) by set (columns), e.g. ``{"train": {...}, "validation": {...}}``."""
    from pesmith.report import METRIC_UNITS

    names = list(metrics)
    width = max(12, *(len(n) + 2 for n in names))
    print(f"{'metric':<28}{'unit':<10}" + "".join(f"{n:>{width}}" for n in names))
    for key in ("n_structures", *METRIC_UNITS):
        if not any(key in metrics[n] for n in names):
            continue
        unit = METRIC_UNITS.get(key, "")
        print(f"{key:<28}{unit:<10}" + "".join(f"{metrics[n].get(key, float('nan')):>{width}.4g}" for n in names))


def evaluate_command(
    model_path: Path, data_path: Path, json_path: Path | None, registry: Registry, progress: bool = True
) -> None:
    """``pesmith evaluate``: print (and with ``json_path`` write) the model's errors on the data;
    with ``progress`` a bar on stderr while the structures are predicted."""
    from pesmith.data import check_structure_file, read_dataset
    from pesmith.model_file import load_potential
    from pesmith.validation import predict_dataset
    from pesmith.workflows import check_writable

    check_structure_file(data_path, "DATA argument", paths=ARGUMENT_PATHS)
    if json_path:
        check_writable(json_path, "--json")
    potential, _ = load_potential(model_path, registry)
    dataset = read_dataset(data_path)
    metrics = predict_dataset(potential, dataset, progress=progress, description=f"evaluating {data_path.name}").metrics()
    print_metrics({"value": metrics})
    if json_path:
        write_json(json_path, metrics)


def run_evaluate(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith evaluate`` for the parsed ``args``; return the exit code."""
    try:
        evaluate_command(args.model, args.data, args.json, registry, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted before the evaluation finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
