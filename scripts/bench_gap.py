"""pesmith's ``gap`` model against QUIP's ``gap_fit`` on the bundled mlearn Si data: one SOAP term.

Both fit the same training structures (the 90 % of ``data/mlearn/Si_train.xyz`` that
``configs/si_gap.yaml`` trains on; the other 10 % are the test set) with the same
hyper-parameters: SOAP cutoff 5 Å, n_max 8, l_max 6, atom_sigma 0.5 Å, dot-product kernel with
zeta 4, delta 1 eV, ``--n-sparse`` CUR sparse points (each code its own selection), sigma
2 meV/atom (per atom, as gap_fit's ``sigma_per_atom``) and 0.1 eV/Å, jitter 1e-8, and pesmith's
per-element reference energies as gap_fit's ``e0``. The two SOAP implementations differ (radial
basis, cutoff function), so predictions are compared by their errors, not to each other::

    pip install "pesmith[bench]"    # quippy-ase: gap_fit and quippy, for this benchmark only
    python scripts/bench_gap.py --n-sparse 500

Each fit runs in its own process on one thread. Prints energy (meV/atom) and force (eV/Å)
RMSE on the test set, fit time (s, descriptors included), predict time (ms/atom, energy and
forces one structure at a time) and peak resident memory of the fit (GB), with the ratios
pesmith / gap_fit; writes JSON.

Measured (quippy-ase 0.10.3, 1 thread each on a 2-core machine shared with another benchmark,
193 training and 21 test structures, n_sparse 500): pesmith 2.99 meV/atom, 0.118 eV/Å, fit 64 s,
predict 0.47 ms/atom, fit peak 4.8 GB; gap_fit 4.17 meV/atom, 0.129 eV/Å, fit 349 s, predict
3.3 ms/atom, fit peak 2.3 GB. pesmith's peak is mostly its float64 SOAP Jacobians held in memory
(2.2 GB; ``memory_gb`` moves them to a float32 disk cache).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mlearn" / "Si_train.xyz"
SOAP = {"cutoff": 5.0, "n_max": 8, "l_max": 6, "atom_sigma": 0.5}
KERNEL = {"zeta": 4, "delta": 1.0}
SIGMA_ENERGY, SIGMA_FORCE, JITTER = 0.002, 0.1, 1e-8  # eV/atom, eV/Å, dimensionless


def split(workdir: Path) -> dict[str, float]:
    """Write train.xyz and test.xyz (the split of configs/si_gap.yaml) into ``workdir``; return
    the per-element reference energies (eV) pesmith fits on the training part."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from pesmith.data import read_dataset, reference_energies

    train, test = read_dataset(DATA).split(0.1, 0)
    for name, dataset in (("train", train), ("test", test)):
        frames = []
        for atoms, energy, forces in zip(dataset.structures, dataset.energies, dataset.forces):
            atoms = atoms.copy()
            atoms.info = {}
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            frames.append(atoms)
        ase.io.write(workdir / f"{name}.xyz", frames, format="extxyz")
    return reference_energies(train, ("Si",))


def errors_and_time(structures, calculator) -> dict[str, float]:
    """Energy (meV/atom) and force (eV/Å) RMSE of ``calculator`` on labeled ``structures`` and
    its predict time, ms/atom."""
    energy_errors, force_errors, elapsed = [], [], 0.0
    for atoms in structures:
        truth_energy, truth_forces = atoms.get_potential_energy(), atoms.get_forces()
        probe = atoms.copy()
        probe.calc = calculator
        started = time.perf_counter()
        energy, forces = probe.get_potential_energy(), probe.get_forces()
        elapsed += time.perf_counter() - started
        energy_errors.append((energy - truth_energy) / len(atoms))
        force_errors.append((forces - truth_forces).ravel())
    n_atoms = sum(len(a) for a in structures)
    return {
        "energy_rmse_meV_per_atom": 1000 * float(np.sqrt(np.mean(np.square(energy_errors)))),
        "force_rmse_eV_per_A": float(np.sqrt(np.mean(np.square(np.concatenate(force_errors))))),
        "predict_ms_per_atom": 1000 * elapsed / n_atoms,
    }


def fit_pesmith(workdir: Path, n_sparse: int) -> dict[str, float]:
    import ase.io
    import torch

    from pesmith.calculator import PesmithCalculator
    from pesmith.data import read_dataset
    from pesmith.memory import peak_rss_gb
    from pesmith.potential import Potential
    from pesmith.registry import Registry

    torch.set_num_threads(1)
    registry = Registry(entry_points=False)
    descriptor = registry.get("descriptor", "soap")(species=["Si"], **SOAP)
    model = registry.get("model", "gap")(species=["Si"], n_features=descriptor.n_features, kernel="dot_product", **KERNEL)
    potential = Potential(descriptor, model)
    settings = model.settings_schema(
        n_sparse=n_sparse, sparse_method="cur", sigma_energy=SIGMA_ENERGY, sigma_force=SIGMA_FORCE, jitter=JITTER,
        force_weight=0.0, feature_storage="memory", progress=False,
    )
    train = read_dataset(workdir / "train.xyz")
    started = time.perf_counter()
    potential.fit(train, None, settings)
    fit_s = time.perf_counter() - started
    peak_gb = peak_rss_gb()
    result = errors_and_time(ase.io.read(workdir / "test.xyz", ":"), PesmithCalculator(potential))
    return result | {"fit_s": fit_s, "fit_peak_rss_gb": peak_gb}


def fit_gap_fit(workdir: Path, n_sparse: int, reference: dict[str, float]) -> dict[str, float]:
    import ase.io
    from quippy.potential import Potential as QuipPotential

    soap = (
        f"soap cutoff={SOAP['cutoff']} cutoff_transition_width=1.0 n_max={SOAP['n_max']} l_max={SOAP['l_max']}"
        f" atom_sigma={SOAP['atom_sigma']} zeta={KERNEL['zeta']} delta={KERNEL['delta']} covariance_type=dot_product"
        f" n_sparse={n_sparse} sparse_method=cur_points"
    )
    command = [
        shutil.which("gap_fit") or str(Path(sys.executable).with_name("gap_fit")), "atoms_filename=train.xyz", f"gap={{{soap}}}",
        f"default_sigma={{{SIGMA_ENERGY} {SIGMA_FORCE} 0.0 0.0}}", f"sparse_jitter={JITTER}",
        f"e0={{Si:{reference['Si']}}}", "energy_parameter_name=energy", "force_parameter_name=forces",
        "gp_file=gap.xml", "rnd_seed=1",
    ]
    started = time.perf_counter()
    process = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    fit_s = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"gap_fit failed ({process.returncode}):\n{process.stdout[-2000:]}\n{process.stderr[-2000:]}")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    calculator = QuipPotential(param_filename=str(workdir / "gap.xml"))
    result = errors_and_time(ase.io.read(workdir / "test.xyz", ":"), calculator)
    return result | {"fit_s": fit_s, "fit_peak_rss_gb": peak_gb}


def run_child(code: str, workdir: Path, n_sparse: int) -> dict[str, float]:
    """One fit in its own process (so its peak memory is its own), on one thread."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", code, "--workdir", str(workdir), "--n-sparse", str(n_sparse)],
        capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    if process.returncode != 0:
        raise SystemExit(f"{code} run failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-sparse", type=int, default=500, help="sparse points (CUR), both codes")
    parser.add_argument("--json", type=Path, default=ROOT / "bench_gap.json")
    parser.add_argument("--child", choices=["pesmith", "gap_fit"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        reference = json.loads((args.workdir / "reference.json").read_text())
        result = fit_pesmith(args.workdir, args.n_sparse) if args.child == "pesmith" else fit_gap_fit(args.workdir, args.n_sparse, reference)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench_gap_") as folder:
        workdir = Path(folder)
        (workdir / "reference.json").write_text(json.dumps(split(workdir)))
        results = {code: run_child(code, workdir, args.n_sparse) for code in ("pesmith", "gap_fit")}
    keys = list(results["pesmith"])
    print(f"{'':28s}{'pesmith':>12s}{'gap_fit':>12s}{'ratio':>10s}")
    for key in keys:
        ours, theirs = results["pesmith"][key], results["gap_fit"][key]
        print(f"{key:28s}{ours:12.4g}{theirs:12.4g}{ours / theirs:10.3g}")
    args.json.write_text(json.dumps({"n_sparse": args.n_sparse, "soap": SOAP, "kernel": KERNEL, "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
