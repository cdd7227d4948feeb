"""Held-out accuracy of a ``pesmith train`` config.

Holds out a reproducible share (default 12 %) of the training file's structures, stratified by
``atoms.info['config_type']``, as a pseudo-test set; trains on the rest with exactly the config's
settings (same code path as ``pesmith train``: validation split, reference energies, fit); and
reports train / validation / held-out metrics (energy meV/atom, forces eV/Å), per config type on
the held-out set (and per chemical system when the file holds several, e.g. Li and Si: the share
is then stratified by system and config_type), and the training wall time.

    python scripts/holdout_accuracy.py configs/si_nn_acsf.yaml [--threads 1] [--out results/x.json]

The JSON goes to ``results/holdout/<config stem>.json`` unless ``--out`` is given. The model
file named in the config is not written.

The protocol for judging a change beyond noise: ``--seeds 0 1 2`` runs three held-out shares,
share s trained with ``training.seed`` + s (a different initialisation and minibatch order), and
prints the mean and sample standard deviation of the held-out energy and force RMSE; the JSON
then holds every run and the summary.
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


def chemical_system(atoms) -> str:
    """The elements of ``atoms``, sorted and joined by '-' (``"Li"``, ``"Li-Si"``)."""
    return "-".join(sorted(set(atoms.get_chemical_symbols())))


def config_type(atoms) -> str:
    """``atoms.info['config_type']`` as a string, ``"unknown"`` where none is given."""
    return str(atoms.info.get("config_type", "unknown"))


def stratified_holdout(dataset: Dataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows): ``round(fraction * n)`` (at least 1) of each config_type of
    each chemical system (a file of one system: of each config_type)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, atoms in enumerate(dataset.structures):
        groups[chemical_system(atoms), config_type(atoms)].append(row)
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

    ase.io.write(path, dataset.labeled_structures(), format="extxyz")
    return path


def held_out_run(config_path: Path, fraction: float, seed: int, threads: int | None, progress: bool, training_seed_offset: int = 0) -> dict:
    """Train ``config_path`` without a stratified held-out share (``fraction``, ``seed``) and
    score it there; ``training.seed`` is raised by ``training_seed_offset``. The result dict
    of one run (see the module docstring)."""
    registry = default_registry()
    config = load_train_config(config_path, registry)
    if threads:
        config.training.threads = threads
    if not progress:
        config.training.progress = False
    config.training.seed += training_seed_offset
    if config.training.threads:
        torch.set_num_threads(config.training.threads)

    resolved = config.model_dump(mode="json")  # before data.train and output point at the temporary folder
    dataset = read_dataset(config.data.train, allow_mixed_references=config.data.allow_mixed_references)
    kept, held = stratified_holdout(dataset, fraction, seed)
    holdout = dataset.subset(held)
    train_set, validation = dataset.subset(kept).split(config.data.validation_fraction, config.data.seed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".holdout_", dir=RESULTS.parent) as folder:  # results/: git-ignored
        # the kept structures through pesmith train's own code path (terms, baselines, splits)
        config.data.train = write_labeled(dataset.subset(kept), Path(folder) / "kept.xyz")
        config.output = Path(folder) / "model.pt"
        started = time.perf_counter()
        trained = train(config, registry, warn=lambda message: None, overwrite=True, where=str(config_path))
        wall_time = time.perf_counter() - started
    potential, report = trained.potential, trained.report

    sets = {"train": train_set, "validation": validation, "holdout": holdout}
    predictions = {name: predict_dataset(potential, data) for name, data in sets.items() if len(data)}
    metrics = {name: p.metrics() for name, p in predictions.items()}
    held_out = predictions["holdout"]
    holdout_by_type = held_out.metrics_per_group([config_type(atoms) for atoms in holdout.structures])
    holdout_by_system = held_out.metrics_per_group([chemical_system(atoms) for atoms in holdout.structures])
    return {
        "config_path": str(config_path),
        "config": resolved,
        "n_features": potential.n_features,
        "holdout": {"fraction": fraction, "seed": seed, "source_indices": holdout.indices.tolist()},
        "training": report["training"] | {"wall_time_s": wall_time},
        "metrics": metrics,
        "holdout_by_config_type": holdout_by_type,
        "holdout_by_system": holdout_by_system,
        "history": report.get("history", []),
    }


def print_run(result: dict) -> None:
    training = result["training"]
    print(f"{result['config_path']}: {result['n_features']} features, held-out seed {result['holdout']['seed']}, trained in"
          f" {training['wall_time_s']:.0f} s ({training.get('epochs_run')} epochs, best {training.get('best_epoch')})")
    print(f"{'set':<22}{'n':>5}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>10}{'F MAE':>10}{'S RMSE':>10}   (meV/atom, eV/Å, GPa)")
    rows = list(result["metrics"].items()) + [(f"  holdout:{k}", v) for k, v in result["holdout_by_config_type"].items()]
    if len(result["holdout_by_system"]) > 1:
        rows += [(f"  holdout:{k}", v) for k, v in result["holdout_by_system"].items()]
    for name, m in rows:
        print(f"{name:<22}{m['n_structures']:>5}{m['energy_rmse_meV_per_atom']:>10.2f}{m['energy_mae_meV_per_atom']:>10.2f}"
              f"{m['force_rmse_eV_per_A']:>10.4f}{m['force_mae_eV_per_A']:>10.4f}{m.get('stress_rmse_GPa', float('nan')):>10.3f}")


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation over ``runs`` of the held-out energy (meV/atom) and
    force (eV/Å) RMSE."""
    result = {"n_runs": len(runs)} | spread([run["metrics"]["holdout"] for run in runs])
    systems = sorted(runs[0]["holdout_by_system"])
    if len(systems) > 1:
        result["by_system"] = {name: spread([run["holdout_by_system"][name] for run in runs]) for name in systems}
    return result


def spread(metrics: list[dict]) -> dict:
    """Mean, sample standard deviation and values of the energy (meV/atom) and force (eV/Å)
    RMSE over runs' ``metrics``."""
    result = {}
    for key in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A"):
        values = np.array([m[key] for m in metrics])
        result[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                       "values": values.tolist()}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--fraction", type=float, default=0.12, help="held-out share per config_type")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out selection")
    parser.add_argument("--threads", type=int, help="override training.threads")
    parser.add_argument("--out", type=Path, help="JSON output (default results/holdout/<config stem>.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="several runs: held-out seed s with training.seed + s each; prints the mean and spread")
    args = parser.parse_args(argv)
    seeds = args.seeds or [args.seed]
    runs = []
    for seed in seeds:
        runs.append(held_out_run(args.config, args.fraction, seed, args.threads, not args.no_progress,
                                 training_seed_offset=seed if args.seeds else 0))
        print_run(runs[-1])
    result = runs[0] if not args.seeds else {"config_path": str(args.config), "runs": runs, "summary": summary(runs)}
    out = args.out or RESULTS / f"{args.config.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.seeds:
        over_seeds = result["summary"]
        print(f"held-out over seeds {seeds}: energy {over_seeds['energy_rmse_meV_per_atom']['mean']:.2f} ± "
              f"{over_seeds['energy_rmse_meV_per_atom']['std']:.2f} meV/atom, forces {over_seeds['force_rmse_eV_per_A']['mean']:.4f} ± "
              f"{over_seeds['force_rmse_eV_per_A']['std']:.4f} eV/Å (mean ± sample standard deviation)")
        for name, by_system in over_seeds.get("by_system", {}).items():
            print(f"  {name}: energy {by_system['energy_rmse_meV_per_atom']['mean']:.2f} ± {by_system['energy_rmse_meV_per_atom']['std']:.2f}"
                  f" meV/atom, forces {by_system['force_rmse_eV_per_A']['mean']:.4f} ± {by_system['force_rmse_eV_per_A']['std']:.4f} eV/Å")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
