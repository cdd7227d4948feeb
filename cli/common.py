"""What several verbs share: exit codes, the wording for paths given as arguments, warnings on
stderr and ``--json`` files; and what the study scripts share (``scripts/*_example.py``): their
``main`` and their resumable stages."""

from __future__ import annotations

import json
import os
import sys
import time
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


Stage = tuple[str, Callable[[Any, Any], dict[str, Any]]]  # (name, function of the config and the registry)


def run_stages(
    stages: list[Stage],
    config: Any,
    registry: Any,
    output: Path,
    summarize: Callable[[dict[str, Any]], str],
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run, in order, every stage whose ``<output>/<name>.json`` does not exist yet (a rerun
    resumes at the first unfinished stage); each stage's result gets its wall time ``time_s`` and
    the machine's 1-minute load at its start and end, and is written atomically; after each stage
    ``results.json`` (every finished stage) and ``summary.md`` (``summarize(results)``) are
    rewritten. Returns the results by stage name."""
    from pesmith.atomic_io import write_text_atomic

    output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    def write_all() -> None:
        write_json(output / "results.json", results)
        write_text_atomic(output / "summary.md", summarize(results))

    for name, stage in stages:
        done = output / f"{name}.json"
        if done.exists():
            results[name] = json.loads(done.read_text())
            echo(f"{name}: done before ({results[name]['time_s']:.0f} s), skipped")
            continue
        echo(f"{name}: running")
        started, load = time.perf_counter(), os.getloadavg()[0]
        result = stage(config, registry)
        result["time_s"] = round(time.perf_counter() - started, 1)
        result["load_1min"] = [load, os.getloadavg()[0]]  # of the machine, at the start and the end: shared cores run slower
        write_json(done, result)
        results[name] = json.loads(done.read_text())
        write_all()
        echo(f"{name}: {result['time_s']:.0f} s")
    write_all()
    return results


def stages_summary(title: str, stages: list[Stage], results: dict[str, Any], headline: Callable[[str, dict[str, Any]], str]) -> str:
    """The finished stages' times, loads and ``headline(name, result)`` as a markdown table."""
    lines = [f"# {title}", "", "| stage | time (s) | load (1 min, start-end) | result |", "|---|---|---|---|"]
    for name, _ in stages:
        if name in results:
            r = results[name]
            lines.append(f"| {name} | {r['time_s']:.0f} | {r['load_1min'][0]:.1f}-{r['load_1min'][1]:.1f} | {headline(name, r)} |")
    lines.append(f"| total | {sum(r['time_s'] for r in results.values()):.0f} | | |")
    return "\n".join(lines) + "\n"
