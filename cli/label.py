"""``pesmith label`` and ``pesmith generate``: label structures with a reference into an ase.db,
resumably, and print the counts and failure reasons."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pesmith.registry import Registry

from .common import EXIT_ALL_FAILED

if TYPE_CHECKING:  # the verbs import these (and torch with them) when they run, not `--help`
    from pesmith.labeling import LabelSummary


def add_parsers(verbs: argparse._SubParsersAction) -> None:
    """Add the ``label`` and ``generate`` verbs to the ``pesmith`` parser's ``verbs``."""
    label = verbs.add_parser("label", help="label structures with a reference into an ase.db (resumable)")
    label.add_argument("config", type=Path)
    label.set_defaults(run=run_label)
    generate = verbs.add_parser("generate", help="build and label an initial training set from crystals")
    generate.add_argument("config", type=Path)
    generate.set_defaults(run=run_generate)


def label_command(config_path: Path, registry: Registry) -> LabelSummary:
    """``pesmith label``: label the structures of ``config_path`` not yet in its database, on
    local worker processes or MPI ranks."""
    from pesmith.labeling import label_structures, load_label_config
    from pesmith.parallel import parallel_map

    config = load_label_config(config_path, registry)
    return label_structures(config, registry, parallel_map, where=str(config_path))


def generate_command(config_path: Path, registry: Registry) -> LabelSummary:
    """``pesmith generate``: build the initial training set of ``config_path`` from its crystals
    and label it (:func:`pesmith.search.initial_set.generate`)."""
    from pesmith.parallel import parallel_map
    from pesmith.search.initial_set import generate, load_generate_config

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


def run_label(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith label`` for the parsed ``args``; return the exit code."""
    return print_label_summary(label_command(args.config, registry))


def run_generate(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith generate`` for the parsed ``args``; return the exit code."""
    return print_label_summary(generate_command(args.config, registry))
