"""``pesmith select-features CONFIG --keep N``: keep the N most informative features of a train
config's descriptor (CUR or greedy column selection on its training features) and write a new
config whose descriptor is ``{kind: selected, base: <the old descriptor>, features: [...]}``."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pesmith.registry import Registry


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``select-features`` verb to the ``pesmith`` parser's ``verbs``."""
    select = verbs.add_parser(
        "select-features", help="keep a train config's most informative descriptor features (CUR), write a new config"
    )
    select.add_argument("config", type=Path, help="a pesmith train config with descriptor + model")
    select.add_argument("--keep", type=int, required=True, help="how many features to keep")
    select.add_argument("--method", choices=["cur", "greedy"], default="greedy",
                        help="greedy (default): QR with column pivoting; cur: iterative CUR leverage (Imbalzano et al. 2018)")
    select.add_argument("--output", type=Path, help="the new config (default: <config stem>_<keep>.yaml beside the config)")
    select.add_argument("--overwrite", action="store_true", help="replace an existing output config")
    select.set_defaults(run=run_select_features)


def run_select_features(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith select-features`` for the parsed ``args``; print the kept features; return 0."""
    from pesmith.atomic_io import write_text_atomic
    from pesmith.config import load_train_config, read_yaml
    from pesmith.data import read_dataset
    from pesmith.errors import ConfigError
    from pesmith.feature_selection import sample_rows, select_columns, standardized, training_features
    from pesmith.workflows import build_potential

    output = args.output or args.config.with_name(f"{args.config.stem}_{args.keep}.yaml")
    if output.exists() and not args.overwrite:
        raise ConfigError(f"--output {output} exists; pass --overwrite to replace it or choose another --output")
    if output.resolve().parent != args.config.resolve().parent:
        raise ConfigError(f"--output {output} must be in the config's folder {args.config.parent} (its relative paths stay valid there)")
    config = load_train_config(args.config, registry)
    if config.terms is not None:
        raise ConfigError(f"{args.config}: select-features works on a config with one descriptor + model, not terms")
    dataset = read_dataset(config.data.train, allow_mixed_references=config.data.allow_mixed_references)
    train_set, _ = dataset.split(config.data.validation_fraction, config.data.seed)  # the validation share is not looked at
    species = config.descriptor.options.get("species", dataset.species)
    descriptor = build_potential(config, species, registry).descriptor
    features, numbers = training_features(descriptor, train_set.structures)
    rows = sample_rows(features.shape[0], seed=config.data.seed)
    kept = select_columns(standardized(features, numbers)[rows], args.keep, args.method)
    names = descriptor.describe()
    print(f"kept {len(kept)} of {descriptor.n_features} features ({args.method}, {rows.size} training atoms of {features.shape[0]}):")
    for rank, column in enumerate(kept.tolist()):
        print(f"  {rank + 1:4d}  #{column:<5d} {names[column]}")
    raw = read_yaml(args.config)
    base = {k: v for k, v in raw["descriptor"].items()}
    raw["descriptor"] = {"kind": "selected", "base": base, "features": [int(c) for c in kept]}
    old_output = Path(str(raw.get("output", config.output)))
    raw["output"] = str(old_output.with_name(f"{old_output.stem}_{args.keep}{old_output.suffix}"))
    header = f"# {args.config.name} with {len(kept)} of its {descriptor.n_features} descriptor features, chosen by `pesmith select-features --method {args.method}`\n"
    write_text_atomic(output, header + yaml.safe_dump(raw, sort_keys=False))
    print(f"wrote {output}")
    return 0
