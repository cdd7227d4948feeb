"""Training over ranks: seconds per epoch of ``pesmith train`` on 1 rank and under ``mpiexec -n 2``.

Runs the config's training twice in the same run, each as its own ``pesmith train`` process with
``training.epochs`` set to ``--epochs`` (default 10) and the model written to a temporary
folder: once as one process (the fit loop's default: 1 torch thread) and once as
``mpiexec -n 2`` (torch.distributed over gloo, 1 thread per rank). From each run's report::

    featurization_s   the features and their derivatives (split over the ranks)
    fit_s             wall_time_s - featurization_s: the epochs with their validation passes,
                      and the neighbor search for the core radii and the reference energies
    per_epoch_s       the mean of the epochs' wall-clock seconds (the history's ``seconds``:
                      steps + validation) after the first

and the whole process's wall clock; then the ratios 1 rank / 2 ranks, how closely the two runs'
validation metrics agree (the Training-over-ranks acceptance asks 1e-6 relative), and the peak
resident memory of the largest process of either run::

    python scripts/bench_train_ranks.py configs/si_nn_acsf.yaml [--epochs 10] [--out results/bench/x.json]

Needs mpiexec beside the interpreter (``pip install mpi4py mpich``). Measure on an idle
machine: the 2-rank run uses both cores. Prints a table and writes JSON (default
``results/bench/train_ranks.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def resolved_config(config_path: Path, epochs: int, output: Path) -> dict:
    """The config with its paths made absolute, ``training.epochs`` = ``epochs``, no progress bar
    and the model written to ``output``."""
    from pesmith.config import load_train_config
    from pesmith.registry import default_registry

    config = load_train_config(config_path, default_registry()).model_dump(mode="json")
    config["training"].update(epochs=epochs, progress=False)
    config["output"] = str(output)
    return config


def run_training(config: dict, folder: Path, ranks: int) -> dict:
    """``pesmith train`` of ``config`` on ``ranks`` processes; its report's timings and metrics."""
    folder.mkdir(parents=True)
    config = config | {"output": str(folder / "model.pt")}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "pesmith", "train", str(path)]
    if ranks > 1:
        command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks)] + command
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads((folder / "model_report.json").read_text())
    training = report["training"]
    featurization = training["features"]["featurization_s"]
    epochs = [entry["seconds"] for entry in report["history"]]
    return {
        "ranks": ranks,
        "process_wall_s": wall,
        "featurization_s": featurization,
        "fit_s": training["wall_time_s"] - featurization,
        "epochs": training["epochs_run"],
        "epoch_s": epochs,
        "per_epoch_s": sum(epochs[1:]) / (len(epochs) - 1),
        "validation": report["metrics"]["validation"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (at least 2: the first is not timed)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "train_ranks.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    with tempfile.TemporaryDirectory(prefix="pesmith_ranks_") as tmp:
        config = resolved_config(args.config, args.epochs, Path(tmp) / "model.pt")
        runs = [run_training(config, Path(tmp) / f"ranks{k}", k) for k in (1, 2)]
    one, two = runs
    agreement = max(
        abs(two["validation"][key] - one["validation"][key]) / abs(one["validation"][key])
        for key in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A")
        if key in one["validation"]
    )
    print(f"{args.config}: {args.epochs} epochs")
    print(f"{'ranks':>5} {'featurize s':>12} {'fit s':>8} {'s/epoch':>8} {'process s':>10} {'E val':>9} {'F val':>8}")
    for run in runs:
        print(f"{run['ranks']:>5} {run['featurization_s']:>12.1f} {run['fit_s']:>8.1f} {run['per_epoch_s']:>8.3f} "
              f"{run['process_wall_s']:>10.1f} {run['validation']['energy_rmse_meV_per_atom']:>9.4f} "
              f"{run['validation'].get('force_rmse_eV_per_A', float('nan')):>8.5f}")
    ratios = {key: one[key] / two[key] for key in ("per_epoch_s", "featurization_s", "process_wall_s")}
    print(f"1 rank / 2 ranks: per epoch {ratios['per_epoch_s']:.2f}x, featurization {ratios['featurization_s']:.2f}x, "
          f"whole process {ratios['process_wall_s']:.2f}x; validation metrics agree to {agreement:.1e} relative")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # the largest of all the runs' processes
    print(f"peak resident memory of the children (largest process): {peak_gb:.2f} GB")
    result = {"config": str(args.config), "epochs": args.epochs, "runs": runs, "speedup": ratios,
              "validation_relative_difference": agreement, "children_peak_rss_gb": peak_gb}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
