"""Held-out accuracy of a ``pesmith train`` config.

Holds out a reproducible share (default 12 %) of the training file's structures, stratified by
``atoms.info['config_type']``, as a pseudo-test set; trains on the rest with exactly the config's
settings (same code path as ``pesmith train``: validation split, reference energies, fit); and
reports train / validation / held-out metrics (energy meV/atom, forces eV/Å), per config type on
the held-out set, and the training wall time.

    python scripts/holdout_accuracy.py configs/si_nn_acsf.yaml [--threads 1] [--out results/x.json]

The JSON goes to ``results/holdout/<config stem>.json`` unless ``--out`` is given. The model
file named in the config is not written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from pesmith.config import load_train_config
from pesmith.data import Dataset, read_dataset
from pesmith.registry import default_registry
from pesmith.validation import predict_dataset
from pesmith.workflows import train

RESULTS = Path(__file__).resolve().parents[1] / "results" / "holdout"


def stratified_holdout(dataset: Dataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows): ``round(fraction * n)`` (at least 1) of each config_type."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, atoms in enumerate(dataset.structures):
        groups[str(atoms.info.get("config_type", "unknown"))].append(row)
    rng = np.random.default_rng(seed)
    held = []
    for name in sorted(groups):
        rows = rng.permutation(groups[name])
        held.extend(rows[: max(1, int(round(fraction * len(rows))))].tolist())
    held = np.sort(held)
    return np.setdiff1d(np.arange(len(dataset)), held), held


def write_labeled(dataset: Dataset, path: Path) -> Path:
    """``dataset`` (structures with their ``info``, e.g. config_type) as extended XYZ with its
    energies, forces and, where present, stress."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for atoms, energy, forces, stress in zip(dataset.structures, dataset.energies, dataset.forces, dataset.stresses):
        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, **({"stress": stress} if stress is not None else {}))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--fraction", type=float, default=0.12, help="held-out share per config_type")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out selection")
    parser.add_argument("--threads", type=int, help="override training.threads")
    parser.add_argument("--out", type=Path, help="JSON output (default results/holdout/<config stem>.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    registry = default_registry()
    config = load_train_config(args.config, registry)
    if args.threads:
        config.training.threads = args.threads
    if args.no_progress:
        config.training.progress = False
    if config.training.threads:
        torch.set_num_threads(config.training.threads)

    resolved = config.model_dump(mode="json")  # before data.train and output point at the temporary folder
    dataset = read_dataset(config.data.train, allow_mixed_references=config.data.allow_mixed_references)
    kept, held = stratified_holdout(dataset, args.fraction, args.seed)
    holdout = dataset.subset(held)
    train_set, validation = dataset.subset(kept).split(config.data.validation_fraction, config.data.seed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".holdout_", dir=RESULTS.parent) as folder:  # results/: git-ignored
        # the kept structures through pesmith train's own code path (terms, baselines, splits)
        config.data.train = write_labeled(dataset.subset(kept), Path(folder) / "kept.xyz")
        config.output = Path(folder) / "model.pt"
        started = time.perf_counter()
        trained = train(config, registry, warn=lambda message: None, overwrite=True, where=str(args.config))
        wall_time = time.perf_counter() - started
    potential, report = trained.potential, trained.report

    sets = {"train": train_set, "validation": validation, "holdout": holdout}
    predictions = {name: predict_dataset(potential, data) for name, data in sets.items() if len(data)}
    metrics = {name: p.metrics() for name, p in predictions.items()}
    by_type: dict[str, list[int]] = defaultdict(list)
    for row, atoms in enumerate(holdout.structures):
        by_type[str(atoms.info.get("config_type", "unknown"))].append(row)
    structures = np.arange(len(holdout))
    holdout_by_type = {name: predictions["holdout"].subset(np.isin(structures, rows)).metrics() for name, rows in sorted(by_type.items())}

    result = {
        "config_path": str(args.config),
        "config": resolved,
        "n_features": potential.n_features,
        "holdout": {"fraction": args.fraction, "seed": args.seed, "source_indices": holdout.indices.tolist()},
        "training": report["training"] | {"wall_time_s": wall_time},
        "metrics": metrics,
        "holdout_by_config_type": holdout_by_type,
        "history": report.get("history", []),
    }
    out = args.out or RESULTS / f"{args.config.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))

    print(f"{args.config}: {potential.n_features} features, trained in {wall_time:.0f} s "
          f"({report['training'].get('epochs_run')} epochs, best {report['training'].get('best_epoch')})")
    print(f"{'set':<22}{'n':>5}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>10}{'F MAE':>10}{'S RMSE':>10}   (meV/atom, eV/Å, GPa)")
    rows = list(metrics.items()) + [(f"  holdout:{k}", v) for k, v in holdout_by_type.items()]
    for name, m in rows:
        print(f"{name:<22}{m['n_structures']:>5}{m['energy_rmse_meV_per_atom']:>10.2f}{m['energy_mae_meV_per_atom']:>10.2f}"
              f"{m['force_rmse_eV_per_A']:>10.4f}{m['force_mae_eV_per_A']:>10.4f}{m.get('stress_rmse_GPa', float('nan')):>10.3f}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
