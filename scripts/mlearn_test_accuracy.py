"""Accuracy of a ``pesmith train`` config on the mlearn test set, which is not in the repo.

The mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020), doi:10.1021/acs.jpca.9b08723)
ships a test set beside each training set (Li 29, Si 25 structures); ``data/mlearn`` bundles only
the training sets. This script reads ``data/<El>/test.json`` from a copy of the mlearn repository
(a checkout, or a bare git directory read with ``git show``), converts it with the function that
made the bundled training files (``data/mlearn/convert_mlearn.py``), and caches the extxyz under
``results/mlearn_test/`` (git-ignored). It then trains the config through
:func:`pesmith.workflows.train`, the code path of ``pesmith train``, on the whole training file
(``data.validation_fraction`` set to 0; ``--keep-validation`` keeps the config's split), and prints
the energy (meV/atom) and force (eV/Å) RMSE on the test set, overall and per ``config_type``,
with the training wall time and the peak resident memory of the process::

    python scripts/mlearn_test_accuracy.py configs/li_gap.yaml --mlearn ~/src/mlearn [--threads 1]

``--mlearn`` defaults to ``$PESMITH_MLEARN`` or, failing that, the mirror
``/work/.mirror/materialsvirtuallab+mlearn/repo``. The model and its report go to
``results/mlearn_test/<config stem>.pt`` (the config's ``output`` is not touched) and the JSON
to ``results/mlearn_test/<config stem>.json`` unless ``--out`` is given.

Tune on a validation split of the training file, never on this test set: run this once per
finished config.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "mlearn_test"
CONVERTER = ROOT / "data" / "mlearn" / "convert_mlearn.py"
DEFAULT_MLEARN = Path("/work/.mirror/materialsvirtuallab+mlearn/repo")


def mlearn_converter() -> Callable[[str | Path], list]:
    """``convert(json_path) -> list[Atoms]`` of ``data/mlearn/convert_mlearn.py``, the function
    that converted the bundled training files (imported from its file, not copied)."""
    spec = importlib.util.spec_from_file_location("convert_mlearn", CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert


def read_mlearn_file(source: Path, member: str) -> tuple[bytes, str | None]:
    """The bytes of ``member`` (e.g. ``data/Li/test.json``) in the mlearn copy ``source`` and the
    commit it was read at (``None`` for a checkout that is not a git work tree).

    ``source`` is a checkout (``member`` is a file under it) or a bare git directory (read at
    ``HEAD`` with ``git show``).

    Raises
    ------
    FileNotFoundError
        Neither holds ``member``; the message says how to get the data.
    """
    source = Path(source).expanduser()
    if (source / member).is_file():
        commit = _git(["-C", str(source), "rev-parse", "HEAD"])
        return (source / member).read_bytes(), commit
    commit = _git(["--git-dir", str(source), "rev-parse", "HEAD"])
    if commit is not None:
        shown = subprocess.run(["git", "--git-dir", str(source), "show", f"{commit}:{member}"], capture_output=True)
        if shown.returncode == 0:
            return shown.stdout, commit
    raise FileNotFoundError(
        f"{member} is not in {source} (neither a checkout holding it nor a git directory with it at HEAD);"
        " git clone https://github.com/materialsvirtuallab/mlearn and pass --mlearn <clone>"
    )


def _git(args: Sequence[str]) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def cached_test_set(source: Path, element: str, cache: Path = RESULTS) -> tuple[Path, dict]:
    """The extxyz of mlearn's ``data/<element>/test.json`` under ``cache``, converted on first
    use and reused while the JSON's sha256 is unchanged; and where it came from (JSON types)."""
    from ase.io import write

    member = f"data/{element}/test.json"
    raw, commit = read_mlearn_file(source, member)
    digest = hashlib.sha256(raw).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    xyz, stamp = cache / f"{element}_test.xyz", cache / f"{element}_test.sha256"
    if not (xyz.is_file() and stamp.is_file() and stamp.read_text().strip() == digest):
        json_path = cache / f"{element}_test.json"
        json_path.write_bytes(raw)
        write(xyz, mlearn_converter()(json_path), format="extxyz")
        stamp.write_text(digest + "\n")
    return xyz, {"source": str(source), "member": member, "commit": commit, "sha256": digest, "xyz": str(xyz)}


def rows_by_config_type(config_types: Sequence[str | None]) -> dict[str, list[int]]:
    """Rows of each ``config_type`` (``unknown`` where absent), sorted by name."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, name in enumerate(config_types):
        groups["unknown" if name is None else str(name)].append(row)
    return dict(sorted(groups.items()))


def metrics_table(rows: Sequence[tuple[str, Mapping[str, float]]]) -> list[str]:
    """Lines of a table of ``(name, metrics)`` rows (:meth:`pesmith.validation.Predictions.metrics`):
    structures, energy RMSE / MAE (meV/atom), force RMSE / MAE (eV/Å), stress RMSE (GPa, ``nan``
    without stress labels)."""
    lines = [f"{'set':<24}{'n':>5}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>10}{'F MAE':>10}{'S RMSE':>10}   (meV/atom, eV/Å, GPa)"]
    for name, m in rows:
        lines.append(
            f"{name:<24}{m['n_structures']:>5}{m['energy_rmse_meV_per_atom']:>10.3f}{m['energy_mae_meV_per_atom']:>10.3f}"
            f"{m['force_rmse_eV_per_A']:>10.4f}{m['force_mae_eV_per_A']:>10.4f}{m.get('stress_rmse_GPa', float('nan')):>10.3f}"
        )
    return lines


def main(argv: list[str] | None = None) -> dict:
    from pesmith.config import load_train_config
    from pesmith.data import read_dataset
    from pesmith.memory import peak_rss_gb
    from pesmith.registry import default_registry
    from pesmith.validation import predict_dataset
    from pesmith.workflows import train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--mlearn", type=Path, default=Path(os.environ.get("PESMITH_MLEARN", DEFAULT_MLEARN)),
                        help="mlearn checkout or bare git directory (default $PESMITH_MLEARN or the local mirror)")
    parser.add_argument("--element", help="mlearn element folder (default: the training file's only element)")
    parser.add_argument("--keep-validation", action="store_true", help="train on the config's split, not the whole file")
    parser.add_argument("--threads", type=int, help="override training.threads")
    parser.add_argument("--out", type=Path, help="JSON output (default results/mlearn_test/<config stem>.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)

    registry = default_registry()
    config = load_train_config(args.config, registry)
    element = args.element
    if element is None:
        species = read_dataset(config.data.train).species
        if len(species) != 1:
            parser.error(f"the training data holds {', '.join(species)}: name the mlearn element with --element")
        element = species[0]
    test_file, test_source = cached_test_set(args.mlearn, element)
    test = read_dataset(test_file)

    if args.threads:
        config.training.threads = args.threads
    if args.no_progress:
        config.training.progress = False
    if not args.keep_validation:
        config.data.validation_fraction = 0.0
    config.output = RESULTS / f"{args.config.stem}.pt"
    load_start = os.getloadavg()
    started = time.perf_counter()
    result = train(config, registry, warn=lambda message: None, overwrite=True, where=str(args.config))
    wall_time = time.perf_counter() - started
    peak_after_fit = peak_rss_gb()

    test_predictions = predict_dataset(result.potential, test)
    groups = rows_by_config_type(test.config_types)
    structures = np.arange(len(test))
    by_type = {name: test_predictions.subset(np.isin(structures, rows)).metrics() for name, rows in groups.items()}
    metrics = dict(result.report["metrics"]) | {"test": test_predictions.metrics()}

    training = result.report["training"]
    output = {
        "config_path": str(args.config),
        "config": result.report["config"],
        "test_set": test_source | {"n_structures": len(test), "n_atoms": test.n_atoms},
        "split": {k: v for k, v in result.report["split"].items() if not k.endswith("_indices")},
        "training": {k: v for k, v in training.items() if k not in ("train", "validation")}
        | {"wall_time_s": wall_time, "process_peak_rss_gb": peak_after_fit},
        "metrics": metrics,
        "test_by_config_type": by_type,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "platform": platform.platform(),
        },
    }
    out = args.out or RESULTS / f"{args.config.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(output, indent=2))

    split = output["split"]
    print(f"{args.config}: trained on {split['n_train']} structures ({split['n_validation']} validation) in {wall_time:.0f} s,"
          f" peak RSS {peak_after_fit:.2f} GB; mlearn {element} test set: {len(test)} structures at {test_source['commit']}")
    rows = list(metrics.items()) + [(f"  test:{name}", m) for name, m in by_type.items()]
    print("\n".join(metrics_table(rows)))
    print(f"wrote {out}")
    return output


if __name__ == "__main__":
    main()
