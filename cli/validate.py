"""``pesmith validate``: a model's errors on labeled data as a report folder (markdown, JSON, plots)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pesmith.registry import Registry

from .common import ARGUMENT_PATHS, EXIT_INTERRUPTED
from .evaluate import print_metrics


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``validate`` verb to the ``pesmith`` parser's ``verbs``."""
    validate = verbs.add_parser(
        "validate", help="report a model's errors on labeled data: per config_type and element, parity and error plots, extrapolation"
    )
    validate.add_argument("model", type=Path)
    validate.add_argument("data", type=Path)
    validate.add_argument("--output", type=Path, help="report folder (default: validation_<model>_<data> in the current folder)")
    validate.add_argument("--overwrite", action="store_true", help="replace a report already in the folder")
    validate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    validate.set_defaults(run=run_validate)


def validate_command(model_path: Path, data_path: Path, output: Path | None, registry: Registry, overwrite: bool = False, progress: bool = True) -> list[Path]:
    """``pesmith validate``: predict ``data_path`` with the model, print the overall and
    per-``config_type`` errors (and, for a model with an uncertainty, how its spread tracks
    them) and write the report (:mod:`pesmith.validation_report`) into ``output``; return the
    files written.

    Raises
    ------
    ConfigError
        The folder already holds a report and ``overwrite`` is not set (nothing is written).
    """
    from pesmith.data import check_structure_file, read_dataset
    from pesmith.model_file import load_potential
    from pesmith.validation import predict_dataset
    from pesmith.validation_report import FILES, UNCERTAINTY_FILE, validation_report, write_validation_report
    from pesmith.workflows import check_not_replacing, check_writable

    check_structure_file(data_path, "DATA argument", paths=ARGUMENT_PATHS)
    output = output or Path(f"validation_{model_path.stem}_{data_path.stem}")
    check_not_replacing(
        [output / name for name in (*FILES, UNCERTAINTY_FILE)], overwrite,
        lambda existing: f"{output} already holds a validation report ({', '.join(p.name for p in existing)}); pass --overwrite or choose --output",
    )
    check_writable(output / FILES[0], "--output")
    potential, _ = load_potential(model_path, registry)
    dataset = read_dataset(data_path)
    started = time.perf_counter()
    predictions = predict_dataset(potential, dataset, progress=progress, description=f"validating on {data_path.name}", uncertainty=True)
    report = validation_report(predictions, str(model_path), str(data_path)) | {"wall_time_s": time.perf_counter() - started}
    print_metrics({"all": report["metrics"], **report["per_config_type"]})
    extrapolation = report["extrapolation"]
    print(f"atoms with a descriptor feature outside the training range: {extrapolation['atoms_outside']} of {extrapolation['n_atoms']}"
          f" ({100 * extrapolation['fraction_outside']:.1f} %)")
    for key, value in report["uncertainty"].items():
        print(f"uncertainty: {key} {value:.3f}")
    paths = write_validation_report(output, report, predictions)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return paths


def run_validate(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith validate`` for the parsed ``args``; return the exit code."""
    try:
        validate_command(args.model, args.data, args.output, registry, overwrite=args.overwrite, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted before the validation finished: no report was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
