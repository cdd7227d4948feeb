"""``pesmith train``: fit a potential from a YAML config; print its metrics and why it stopped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pesmith.registry import Registry

from .common import EXIT_INTERRUPTED, print_warning
from .evaluate import print_metrics


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``train`` verb to the ``pesmith`` parser's ``verbs``."""
    train = verbs.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", type=Path)
    train.add_argument("--overwrite", action="store_true", help="replace the model and report of an earlier run")
    train.set_defaults(run=run_train)


def train_command(config_path: Path, registry: Registry, overwrite: bool = False) -> dict[str, Any]:
    """``pesmith train``: fit the potential of ``config_path`` and write it with its report;
    with ``overwrite`` an earlier run's outputs are replaced, otherwise they stop the run
    (:func:`pesmith.workflows.train` owns that rule and the check that the output is writable)."""
    from pesmith.config import load_train_config
    from pesmith.workflows import train

    config = load_train_config(config_path, registry)
    return train(config, registry, warn=print_warning, overwrite=overwrite, where=str(config_path)).report


def saved_after_interrupt(report: dict[str, Any]) -> str:
    """What an interrupted ``pesmith train`` wrote, for its one line on stderr."""
    training = report["training"]
    kept = f" (best epoch {training['best_epoch']} of {training['epochs_run']} run)" if "best_epoch" in training else ""
    metrics = "" if report["metrics"] else ", without metrics"
    return f"wrote {report['model_file']}{kept} and its report{metrics}"


def run_train(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith train`` for the parsed ``args``; return the exit code."""
    from pesmith.model import STOP_REASON

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
    return 0
