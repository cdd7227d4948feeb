"""``pesmith train``: fit a potential from a YAML config; print its metrics and why it stopped."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pesmith.registry import Registry

from .common import EXIT_INTERRUPTED, EXIT_USER_ERROR, print_warning
from .evaluate import print_metrics


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``train`` verb to the ``pesmith`` parser's ``verbs``."""
    train = verbs.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", type=Path)
    train.add_argument("--overwrite", action="store_true", help="replace the model and report of an earlier run")
    train.add_argument(
        "--committee", type=int, metavar="K", help="fit K networks of the config's nn model (seeds and training subsamples differ) into one committee model"
    )
    train.set_defaults(run=run_train)


def train_command(config_path: Path, registry: Registry, overwrite: bool = False, committee: int | None = None) -> dict[str, Any]:
    """``pesmith train``: fit the potential of ``config_path`` and write it with its report;
    with ``overwrite`` an earlier run's outputs are replaced, otherwise they stop the run
    (:func:`pesmith.workflows.train` owns that rule and the check that the output is writable).
    With ``committee`` K, the config's ``nn`` model becomes a ``committee`` of K such networks."""
    from pesmith.config import load_train_config
    from pesmith.workflows import train

    config = load_train_config(config_path, registry)
    if committee is not None:
        config = as_committee(config, committee, registry, config_path)
    return train(config, registry, warn=print_warning, overwrite=overwrite, where=str(config_path)).report


def as_committee(config, members: int, registry: Registry, config_path: Path):
    """``config`` with its ``nn`` model replaced by a ``committee`` of ``members`` networks of the
    same architecture, its training settings checked against the committee's."""
    from pesmith.config import PluginSettings, validate_section
    from pesmith.errors import ConfigError

    if config.model.kind != "nn":
        raise ConfigError(f"{config_path}: --committee needs model kind 'nn' (it fits several nn networks), got {config.model.kind!r}")
    model = PluginSettings(kind="committee", **config.model.options, members=members)
    schema = registry.get("model", "committee").settings_schema
    training = validate_section(config_path, "training", config.training.model_dump(exclude_unset=True), schema)
    return config.model_copy(update={"model": model, "training": training})


def saved_after_interrupt(report: dict[str, Any]) -> str:
    """What an interrupted ``pesmith train`` wrote, for its one line on stderr."""
    training = report["training"]
    kept = f" (best epoch {training['best_epoch']} of {training['epochs_run']} run)" if "best_epoch" in training else ""
    metrics = "" if report["metrics"] else ", without metrics"
    return f"wrote {report['model_file']}{kept} and its report{metrics}"


def run_train(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith train`` for the parsed ``args``; return the exit code.

    Under ``mpiexec -n K`` or ``torchrun`` the ranks train together
    (:func:`pesmith.distributed.process_group`); rank 0 alone prints, and the other ranks leave
    an error to rank 0's one line (exit code :data:`EXIT_USER_ERROR` on every rank)."""
    from pesmith.distributed import process_group
    from pesmith.errors import PesmithError
    from pesmith.model import STOP_REASON

    with process_group() as ranks:
        if ranks is not None and not ranks.is_root:
            logging.getLogger("pesmith").setLevel(logging.ERROR)  # rank 0 logs the run
            try:
                train_command(args.config, registry, args.overwrite, args.committee)
            except PesmithError:
                return EXIT_USER_ERROR
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
            return 0
        try:
            report = train_command(args.config, registry, args.overwrite, args.committee)
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
