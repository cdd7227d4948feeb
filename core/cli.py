"""Command line: ``pesmith <verb> ...``. Errors print one line and exit with code 2.

This is the composition root: the one core module that reaches into ``pesmith.search`` (the
hull), lazily inside the verbs that need it, and that hands the parallel map to labeling; the
library modules take such pieces as arguments (``tests/test_packaging.py`` checks the layers).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import yaml

from . import __version__
from .atomic import write_text_atomic
from .config import TrainConfig, load_train_config
from .data import read_dataset
from .errors import ConfigError, PesmithError
from .generate import generate, load_generate_config
from .labeling import LabelSummary, label_structures, load_label_config
from .model_file import load_potential, save_potential
from .parallel import parallel_map
from .potential import Potential
from .registry import Registry, default_registry
from .report import METRIC_UNITS, write_report
from .validation import predict_dataset

EXIT_ALL_FAILED = 1  # `label`/`generate`: every structure of the run failed
EXIT_USER_ERROR = 2


def build_potential(config: TrainConfig, species: Sequence[str], registry: Registry) -> Potential:
    """Instantiate the descriptor and model plugins named in ``config``."""
    descriptor_options = {"species": list(species), **config.descriptor.options}
    try:
        descriptor = registry.get("descriptor", config.descriptor.kind)(**descriptor_options)
        model = registry.get("model", config.model.kind)(
            species=descriptor.species, n_features=descriptor.n_features, **config.model.options
        )
    except TypeError as exc:
        raise ConfigError(f"invalid plugin options: {exc}") from exc
    return Potential(descriptor, model)


def train_command(config_path: Path, registry: Registry) -> dict:
    config = load_train_config(config_path, registry)
    if config.training.threads:
        torch.set_num_threads(config.training.threads)
    dataset = read_dataset(config.data.train)
    train_set, validation = dataset.split(config.data.validation_fraction, config.data.seed)
    potential = build_potential(config, config.descriptor.options.get("species", dataset.species), registry)
    started = time.perf_counter()
    summary = potential.fit(train_set, validation, config.training, config.data.isolated_atom_energies)
    wall_time = time.perf_counter() - started
    predictions = {"train": predict_dataset(potential, train_set)}
    if len(validation):
        predictions["validation"] = predict_dataset(potential, validation)
    resolved = config.model_dump(mode="json")
    resolved["descriptor"] = {"kind": config.descriptor.kind, **potential.descriptor.get_config()}
    resolved["model"] = {"kind": config.model.kind, **potential.model.get_config()}
    report = {
        "pesmith_version": __version__,
        "torch_version": torch.__version__,
        "model_file": str(config.output),
        "config": resolved,
        "data": {"train": resolved["data"]["train"], "seed": config.data.seed},
        "split": {
            "n_train": len(train_set),
            "n_validation": len(validation),
            "train_indices": train_set.indices.tolist(),
            "validation_indices": validation.indices.tolist(),
        },
        "reference_energies_eV": potential.reference,
        "training": {k: v for k, v in summary.items() if k != "history"} | {"wall_time_s": wall_time},
        "metrics": {name: p.metrics() for name, p in predictions.items()},
        "history": summary.get("history", []),
    }
    save_potential(potential, config.output, metadata={k: v for k, v in report.items() if k != "history"}, registry=registry)
    stem = config.output.with_suffix("")
    write_report(stem, report, predictions)
    write_text_atomic(stem.with_name(stem.name + "_config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    return report


def print_metrics(metrics: dict[str, dict]) -> None:
    names = list(metrics)
    print(f"{'metric':<28}{'unit':<10}" + "".join(f"{n:>12}" for n in names))
    for key in ("n_structures", *METRIC_UNITS):
        unit = METRIC_UNITS.get(key, "")
        print(f"{key:<28}{unit:<10}" + "".join(f"{metrics[n][key]:>12.4g}" for n in names))


def write_json(path: Path, content) -> None:
    """``--json`` output: ``content`` as indented JSON, written atomically (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(content, indent=2))


def label_command(config_path: Path, registry: Registry) -> LabelSummary:
    config = load_label_config(config_path, registry)
    return label_structures(config, registry, parallel_map, where=str(config_path))


def generate_command(config_path: Path, registry: Registry) -> LabelSummary:
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
            return print_label_summary(label_command(args.config, registry))
        elif args.verb == "generate":
            return print_label_summary(generate_command(args.config, registry))
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
