"""The ``pesmith`` command: its arguments, the verb each one runs, errors as one line.

Each verb group is a module of :mod:`pesmith.cli` that adds its verbs to the parser and runs
them; this module only puts them together.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from pesmith import __version__
from pesmith.errors import PesmithError
from pesmith.registry import default_registry
from pesmith.threads import prefer_passive_waiting

from . import analyze, evaluate, export, hull, label, md, neb, plugins, relax, search, select_features, train, vacancy, validate
from .common import EXIT_USER_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The ``pesmith`` argument parser; each verb's ``run(args, registry)`` is ``args.run``."""
    parser = argparse.ArgumentParser(prog="pesmith", description="Machine-learned interatomic potentials.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"pesmith {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    train.add_parser(verbs)
    evaluate.add_parser(verbs)
    validate.add_parser(verbs)
    label.add_parsers(verbs)  # label, generate
    hull.add_parser(verbs)
    search.add_parser(verbs)
    plugins.add_parser(verbs)
    relax.add_parser(verbs)
    md.add_parser(verbs)
    neb.add_parser(verbs)
    vacancy.add_parser(verbs)
    analyze.add_parser(verbs)
    export.add_parser(verbs)
    select_features.add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pesmith`` with ``argv`` (default: the command line); return the exit code.

    A :class:`PesmithError` prints one line on stderr and gives :data:`EXIT_USER_ERROR` (with
    ``--debug``, its traceback instead).
    """
    prefer_passive_waiting()  # before any verb imports torch
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registry = default_registry()
    try:
        return args.run(args, registry)
    except PesmithError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
