"""``pesmith plugins``: the installed descriptor, model and reference plugins, and those that failed to load."""

from __future__ import annotations

import argparse
import sys

from pesmith.registry import Registry


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``plugins`` verb to the ``pesmith`` parser's ``verbs``."""
    plugins = verbs.add_parser("plugins", help="list installed descriptor, model and reference plugins")
    plugins.set_defaults(run=run_plugins)


def print_plugins(registry: Registry) -> None:
    """One row per plugin of ``registry`` (kind, name, package, description); one line on stderr
    per plugin that failed to load."""
    print(f"{'kind':<12}{'name':<16}{'package':<20}description")
    for info in registry.plugins():
        print(f"{info.kind:<12}{info.name:<16}{info.provider:<20}{info.description}")
    for failure in registry.failures:
        print(f"failed to load plugin {failure.name}: {failure.reason}", file=sys.stderr)


def run_plugins(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith plugins``; return the exit code."""
    print_plugins(registry)
    return 0
