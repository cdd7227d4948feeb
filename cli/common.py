"""What several verbs share: exit codes, the wording for paths given as arguments, warnings on
stderr and ``--json`` files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

EXIT_ALL_FAILED = 1  # `label`/`generate`: every structure of the run failed
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2)
ARGUMENT_PATHS = "relative paths resolve against the current folder"


def print_warning(message: str) -> None:
    """A warning for the user: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def write_json(path: Path, content: Any) -> None:
    """``--json`` output: ``content`` as indented JSON, written atomically (folders created)."""
    from pesmith.atomic_io import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(content, indent=2))


def config_script_main(description: str, run: Callable[[Path], str], argv: list[str] | None = None) -> int:
    """``main()`` of a study script run as ``python scripts/NAME.py CONFIG``: ``run(config_path)``
    does the work and returns the summary to print (exit 0); a :class:`~pesmith.errors.PesmithError`
    (bad input) becomes its first line on stderr and :data:`EXIT_USER_ERROR`."""
    import argparse

    from pesmith.errors import PesmithError

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    try:
        summary = run(args.config)
    except PesmithError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(summary)
    return 0
