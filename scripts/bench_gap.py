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

``--same-sparse`` fits the same GP in both codes: pesmith on its ``soap_quip`` descriptor (QUIP's
SOAP, cutoff_transition_width 1 Å, no ZBL core), choosing its CUR sparse points and writing them as
a gap_fit index file (``training.write_sparse_index``), then gap_fit on the descriptor string
``SOAPQuip.quip_string`` gives with ``sparse_method=index_file`` on that file. It also prints the RMS
and largest difference of the two codes' test-set energies (meV/atom) and forces (eV/Å)::

    python scripts/bench_gap.py --same-sparse --n-sparse 500

Measured that way (quippy-ase 0.10.3, 1 thread each, machine shared with two other jobs, 193
training and 21 test structures, n_sparse 500): pesmith - gap_fit 6.1e-8 meV/atom RMS (1.3e-7
max) and 7.3e-10 eV/Å RMS (4.9e-9 max); both 3.163 meV/atom, 0.1311 eV/Å against DFT; fit 143 s
vs 277 s, predict 1.1 vs 2.4 ms/atom, fit peak 4.8 vs 2.3 GB. Only the SOAP term: pesmith's
``distance_2b`` (with ``sparse_method: basis``) is a different sparse set from gap_fit's 2b
points, so a 2b term is not compared here.

With a memory budget for pesmith's fit (``--same-sparse --n-sparse 500 --memory-gb 1.0``, 2026-12-07,
machine shared with one niced job): the derivatives go to the float32 disk cache, and pesmith -
gap_fit is 1.9e-7 meV/atom RMS and 8.4e-9 eV/Å RMS; fit 50 s vs 290 s (0.17x), fit peak 2.20 GB vs
2.33 GB (0.95x), predict 0.40 vs 1.79 ms/atom (0.22x); both 3.163 meV/atom, 0.1311 eV/Å.
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
SOAP_QUIP = SOAP | {"cutoff_transition_width": 1.0}  # --same-sparse: gap_fit's cutoff switch of the default mode
SPARSE_INDEX = "sparse_Si.idx"  # --same-sparse: pesmith's sparse points, gap_fit's index-file format
KERNEL = {"zeta": 4, "delta": 1.0}
SIGMA_ENERGY, SIGMA_FORCE, JITTER = 0.002, 0.1, 1e-8  # eV/atom, eV/Å, dimensionless


def split(workdir: Path, n_train: int | None = None) -> dict[str, float]:
    """Write train.xyz and test.xyz (the split of configs/si_gap.yaml; only the first ``n_train``
    training structures if given) into ``workdir``; return the per-element reference energies (eV)
    pesmith fits on the training part."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from pesmith.data import read_dataset, reference_energies

    train, test = read_dataset(DATA).split(0.1, 0)
    if n_train is not None:
        train = train.subset(range(min(n_train, len(train.structures))))
    for name, dataset in (("train", train), ("test", test)):
        frames = []
        for atoms, energy, forces in zip(dataset.structures, dataset.energies, dataset.forces):
            atoms = atoms.copy()
            atoms.info = {}
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            frames.append(atoms)
        ase.io.write(workdir / f"{name}.xyz", frames, format="extxyz")
    return reference_energies(train, ("Si",))


def errors_and_time(structures, calculator) -> dict:
    """Energy (meV/atom) and force (eV/Å) RMSE of ``calculator`` on labeled ``structures``, its
    predict time (ms/atom), and (under ``"predictions"``) its energies (eV/atom) and forces (eV/Å)."""
    energy_errors, force_errors, elapsed = [], [], 0.0
    energies, all_forces = [], []
    for atoms in structures:
        truth_energy, truth_forces = atoms.get_potential_energy(), atoms.get_forces()
        probe = atoms.copy()
        probe.calc = calculator
        started = time.perf_counter()
        energy, forces = probe.get_potential_energy(), probe.get_forces()
        elapsed += time.perf_counter() - started
        energy_errors.append((energy - truth_energy) / len(atoms))
        force_errors.append((forces - truth_forces).ravel())
        energies.append(energy / len(atoms))
        all_forces.extend(np.asarray(forces).ravel().tolist())
    n_atoms = sum(len(a) for a in structures)
    return {
        "energy_rmse_meV_per_atom": 1000 * float(np.sqrt(np.mean(np.square(energy_errors)))),
        "force_rmse_eV_per_A": float(np.sqrt(np.mean(np.square(np.concatenate(force_errors))))),
        "predict_ms_per_atom": 1000 * elapsed / n_atoms,
        "predictions": {"energy_eV_per_atom": energies, "forces_eV_per_A": all_forces},
    }


def agreement(ours: dict, theirs: dict) -> dict[str, float]:
    """RMS difference of two codes' predictions on the same test structures: energies (meV/atom)
    and force components (eV/Å), and the largest differences."""
    energy = 1000 * (np.array(ours["energy_eV_per_atom"]) - np.array(theirs["energy_eV_per_atom"]))
    forces = np.array(ours["forces_eV_per_A"]) - np.array(theirs["forces_eV_per_A"])
    return {
        "energy_rms_diff_meV_per_atom": float(np.sqrt(np.mean(energy**2))),
        "energy_max_diff_meV_per_atom": float(np.abs(energy).max()),
        "force_rms_diff_eV_per_A": float(np.sqrt(np.mean(forces**2))),
        "force_max_diff_eV_per_A": float(np.abs(forces).max()),
    }


def fit_pesmith(workdir: Path, n_sparse: int, same_sparse: bool = False, memory_gb: float | None = None) -> dict:
    """pesmith's fit; with ``memory_gb`` the feature derivatives go where that budget puts them
    (a float32 disk cache in ``workdir`` when they do not fit), else they stay in memory (float64)."""
    import ase.io
    import torch

    from pesmith.calculator import PesmithCalculator
    from pesmith.data import read_dataset
    from pesmith.memory import peak_rss_gb
    from pesmith.potential import Potential
    from pesmith.registry import Registry

    torch.set_num_threads(1)
    registry = Registry(entry_points=False)
    if same_sparse:  # QUIP's SOAP; its CUR sparse points written for gap_fit; no ZBL core (gap_fit has none)
        descriptor = registry.get("descriptor", "soap_quip")(species=["Si"], **SOAP_QUIP)
        extra = {"write_sparse_index": str(workdir / SPARSE_INDEX), "core_repulsion": False}
    else:
        descriptor = registry.get("descriptor", "soap")(species=["Si"], **SOAP)
        extra = {}
    model = registry.get("model", "gap")(species=["Si"], n_features=descriptor.n_features, kernel="dot_product", **KERNEL)
    potential = Potential(descriptor, model)
    settings = model.settings_schema(
        n_sparse=n_sparse, sparse_method="cur", sigma_energy=SIGMA_ENERGY, sigma_force=SIGMA_FORCE, jitter=JITTER,
        force_weight=0.0, progress=False, **extra,
        **({"feature_storage": "auto", "memory_gb": memory_gb} if memory_gb else {"feature_storage": "memory"}),
    )
    train = read_dataset(workdir / "train.xyz")
    started = time.perf_counter()
    summary = potential.fit(train, None, settings, cache_dir=workdir)
    fit_s = time.perf_counter() - started
    peak_gb = peak_rss_gb()
    result = errors_and_time(ase.io.read(workdir / "test.xyz", ":"), PesmithCalculator(potential))
    return result | {"fit_s": fit_s, "fit_peak_rss_gb": peak_gb, "derivatives": summary.info["features"]["storage"]}


def fit_gap_fit(workdir: Path, n_sparse: int, reference: dict[str, float], same_sparse: bool = False) -> dict:
    import ase.io
    from quippy.potential import Potential as QuipPotential

    kernel = f"zeta={KERNEL['zeta']} delta={KERNEL['delta']} covariance_type=dot_product"
    if same_sparse:  # the descriptor string of pesmith's soap_quip, and pesmith's sparse points
        from pesmith.plugins.descriptors.soap_quip import SOAPQuip

        sparse_file = workdir / SPARSE_INDEX
        if not sparse_file.is_file():
            raise SystemExit(f"{sparse_file} is missing: pesmith's fit writes it and runs first")
        soap = f"{SOAPQuip(['Si'], **SOAP_QUIP).quip_string('Si', in_gap_fit=True)} {kernel} sparse_method=index_file sparse_file={sparse_file} add_species=F"
    else:
        soap = (
            f"soap cutoff={SOAP['cutoff']} cutoff_transition_width=1.0 n_max={SOAP['n_max']} l_max={SOAP['l_max']}"
            f" atom_sigma={SOAP['atom_sigma']} {kernel} n_sparse={n_sparse} sparse_method=cur_points"
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


def run_child(code: str, workdir: Path, n_sparse: int, same_sparse: bool = False, memory_gb: float | None = None) -> dict:
    """One fit in its own process (so its peak memory is its own), on one thread."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", code, "--workdir", str(workdir), "--n-sparse", str(n_sparse),
         *(["--same-sparse"] if same_sparse else []), *(["--memory-gb", str(memory_gb)] if memory_gb else [])],
        capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    if process.returncode != 0:
        raise SystemExit(f"{code} run failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-sparse", type=int, default=500, help="sparse points (CUR), both codes")
    parser.add_argument(
        "--same-sparse", action="store_true",
        help="both codes on QUIP's SOAP (pesmith's soap_quip) with pesmith's CUR sparse points read by gap_fit"
        " (sparse_method=index_file); also prints the RMS difference of their predictions",
    )
    parser.add_argument(
        "--memory-gb", type=float,
        help="pesmith's training.memory_gb: derivatives that do not fit go to a float32 disk cache (default: all in memory, float64)",
    )
    parser.add_argument("--n-train", type=int, help="only the first N training structures (a quick check)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench_gap.json")
    parser.add_argument("--child", choices=["pesmith", "gap_fit"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        reference = json.loads((args.workdir / "reference.json").read_text())
        if args.child == "pesmith":
            result = fit_pesmith(args.workdir, args.n_sparse, args.same_sparse, args.memory_gb)
        else:
            result = fit_gap_fit(args.workdir, args.n_sparse, reference, args.same_sparse)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench_gap_") as folder:
        workdir = Path(folder)
        (workdir / "reference.json").write_text(json.dumps(split(workdir, args.n_train)))
        # pesmith first: with --same-sparse it writes the sparse indices gap_fit reads
        results = {code: run_child(code, workdir, args.n_sparse, args.same_sparse, args.memory_gb) for code in ("pesmith", "gap_fit")}
    predictions = {code: result.pop("predictions") for code, result in results.items()}
    print(f"pesmith's feature derivatives: {results['pesmith'].pop('derivatives')}")
    keys = list(results["pesmith"])
    print(f"{'':28s}{'pesmith':>12s}{'gap_fit':>12s}{'ratio':>10s}")
    for key in keys:
        ours, theirs = results["pesmith"][key], results["gap_fit"][key]
        print(f"{key:28s}{ours:12.4g}{theirs:12.4g}{ours / theirs:10.3g}")
    report = {"n_sparse": args.n_sparse, "n_train": args.n_train, "memory_gb": args.memory_gb, "soap": SOAP_QUIP if args.same_sparse else SOAP, "kernel": KERNEL, "results": results}
    if args.same_sparse:
        report["same_sparse"] = differences = agreement(predictions["pesmith"], predictions["gap_fit"])
        print("pesmith - gap_fit on the test set, same descriptor and sparse points:")
        for key, value in differences.items():
            print(f"  {key:32s}{value:12.3g}")
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
