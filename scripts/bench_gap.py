"""pesmith's ``gap`` model against QUIP's ``gap_fit`` on the bundled mlearn Si data: 2b + SOAP.

Both fit the same training structures (the 90 % of ``data/mlearn/Si_train.xyz`` that
``configs/si_gap.yaml`` trains on; the other 10 % are the test set) with the same terms and
hyper-parameters, fitted jointly as one sparse GP:

* 2b: gap_fit's ``distance_2b`` (cutoff 5 Å, cosine switch over 0.5 Å, squared-exponential kernel
  of length theta 0.5 Å, delta 5 eV) with 20 sparse pair distances (``sparse_method=uniform``);
  in pesmith the ``distance_2b`` descriptor (grid spacing theta / 3, exact to float64) with the
  ``linear`` kernel, delta 10 eV (gap_fit counts each pair from both atoms, pesmith half from
  each) and ``sparse_method: uniform`` (gap_fit's ``select_uniform`` on the pair distances);
* SOAP: QUIP's ``soap`` (pesmith's ``soap_quip``: cutoff 5 Å, cosine switch over 1 Å, n_max 8,
  l_max 6, atom_sigma 0.5 Å), dot-product kernel with zeta 4, delta 1 eV, ``--n-sparse`` CUR points;
* sigma 2 meV/atom (per atom, as gap_fit's ``sigma_per_atom``) and 0.1 eV/Å, sparse jitter 1e-8
  eV^2 (pesmith's jitter is relative to delta^2: 1e-8 / 100 for the 2b term), no core repulsion,
  pesmith's per-element reference energies as gap_fit's ``e0``.

Without ``--same-sparse`` each code chooses its own sparse points; with it gap_fit reads
pesmith's: the 2b pair distances as a ``sparse_method=file`` file (``training.write_sparse_values``)
and the SOAP environments as a ``sparse_method=index_file`` file (``training.write_sparse_index``),
so both fit the same GP and their predictions must agree::

    pip install "pesmith[bench]"    # quippy-ase: gap_fit and quippy, for this benchmark only
    python scripts/bench_gap.py --same-sparse --n-sparse 1000 --memory-gb 1.0
    python scripts/bench_gap.py --n-sparse 1000 --memory-gb 1.0

Each fit runs in its own process on one thread. Prints energy (meV/atom) and force (eV/Å)
RMSE on the test set, fit time (s, descriptors included), predict time (ms/atom, energy and
forces one structure at a time) and peak resident memory of the fit (GB), with the ratios
pesmith / gap_fit, and the RMS and largest difference of the two codes' test predictions; writes
JSON. ``--memory-gb`` is pesmith's ``training.memory_gb``: derivatives that do not fit go to a
float32 disk cache.

Measured 2026-12-07 (quippy-ase 0.10.3, 193 training and 21 test structures, 1,000 SOAP and 20
2b sparse points, ``--memory-gb 1.0``; the 2-core machine shared with two niced jobs, the two
codes one after the other; docs/measurements/bench_gap_2b_soap_*.json):

* same sparse points: pesmith - gap_fit 1.8e-5 meV/atom RMS (4.3e-5 largest), 3.2e-7 eV/Å RMS
  (1.9e-6 largest); both 3.373 meV/atom, 0.1139 eV/Å; fit 89 s vs 602 s (0.15x), fit peak 1.91
  vs 2.56 GB (0.75x), predict 0.35 vs 1.60 ms/atom (0.22x);
* own sparse points: pesmith 3.373 meV/atom, 0.1139 eV/Å, gap_fit 3.521 meV/atom, 0.1134 eV/Å
  (their predictions differ by 0.71 meV/atom, 0.023 eV/Å RMS); fit 79 s vs 646 s (0.12x), peak
  1.93 vs 2.58 GB (0.75x), predict 0.43 vs 2.84 ms/atom (0.15x).

Earlier, SOAP term only (500 CUR points, same sparse points): 1.9e-7 meV/atom and 8.4e-9 eV/Å
RMS apart; fit 50 s vs 290 s, peak 2.20 vs 2.33 GB, predict 0.40 vs 1.79 ms/atom.
"""

from __future__ import annotations

import argparse
import dataclasses
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
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mlearn" / "Si_train.xyz"
SOAP = {"cutoff": 5.0, "cutoff_transition_width": 1.0, "n_max": 8, "l_max": 6, "atom_sigma": 0.5}  # Å
KERNEL = {"zeta": 4, "delta": 1.0}  # SOAP term: dot-product power, delta eV
TWO_B = {"cutoff": 5.0, "cutoff_transition_width": 0.5, "theta": 0.5, "r_min": 1.0, "grid_spacing": 0.5 / 3}  # Å
TWO_B_DELTA, N_SPARSE_2B = 5.0, 20  # 2b term: gap_fit's delta (eV; pesmith's is twice it), sparse pair distances
SPARSE_INDEX = "sparse_Si.idx"  # --same-sparse: pesmith's SOAP sparse points, gap_fit's index-file format
SPARSE_2B = "sparse_2b.txt"  # --same-sparse: pesmith's 2b sparse points, gap_fit's sparse_method=file format
SIGMA_ENERGY, SIGMA_FORCE, JITTER = 0.002, 0.1, 1e-8  # eV/atom, eV/Å, dimensionless


def split(workdir: Path, n_train: int | None = None) -> dict[str, float]:
    """Write train.xyz and test.xyz (the split of configs/si_gap.yaml; only the first ``n_train``
    training structures if given) into ``workdir``; return the per-element reference energies (eV)
    pesmith fits on the training part."""
    import ase.io

    from pesmith.data import read_dataset, reference_energies

    train, test = read_dataset(DATA).split(0.1, 0)
    if n_train is not None:
        train = train.subset(range(min(n_train, len(train.structures))))
    for name, dataset in (("train", train), ("test", test)):  # energies and forces only: neither code fits virials here
        unstressed = dataclasses.replace(dataset, stresses=[None] * len(dataset))
        ase.io.write(workdir / f"{name}.xyz", unstressed.labeled_structures(keep_info=False), format="extxyz")
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
    import ase.io

    from pesmith.calculator import PesmithCalculator
    from pesmith.data import read_dataset
    from pesmith.memory import peak_rss_gb
    from pesmith.potential import Potential
    from pesmith.registry import Registry

    torch.set_num_threads(1)
    registry = Registry(entry_points=False)
    two_body = registry.get("descriptor", "distance_2b")(species=["Si"], **TWO_B)
    soap = registry.get("descriptor", "soap_quip")(species=["Si"], **SOAP)
    gap = registry.get("model", "gap")
    potential = Potential(terms=[
        (two_body, gap(species=["Si"], n_features=two_body.n_features, kernel="linear", delta=2 * TWO_B_DELTA)),
        (soap, gap(species=["Si"], n_features=soap.n_features, kernel="dot_product", **KERNEL)),
    ])
    settings = gap.settings_schema(
        sigma_energy=SIGMA_ENERGY, sigma_force=SIGMA_FORCE, force_weight=0.0, progress=False, core_repulsion=False,
        **({"feature_storage": "auto", "memory_gb": memory_gb} if memory_gb else {"feature_storage": "memory"}),
    )
    # gap_fit counts each pair from both atoms (pesmith: half from each), so its 2b delta is half
    # ours; its sparse_jitter is absolute (eV^2), ours jitter x delta^2
    two_body_settings = settings.model_copy(update={
        "n_sparse": N_SPARSE_2B, "sparse_method": "uniform", "jitter": JITTER / (2 * TWO_B_DELTA) ** 2,
        **({"write_sparse_values": str(workdir / SPARSE_2B)} if same_sparse else {}),
    })
    soap_settings = settings.model_copy(update={
        "n_sparse": n_sparse, "sparse_method": "cur", "jitter": JITTER,
        **({"write_sparse_index": str(workdir / SPARSE_INDEX)} if same_sparse else {}),
    })
    train = read_dataset(workdir / "train.xyz")
    started = time.perf_counter()
    summary = potential.fit(train, None, settings, cache_dir=workdir, term_settings=[two_body_settings, soap_settings])
    fit_s = time.perf_counter() - started
    peak_gb = peak_rss_gb()
    result = errors_and_time(ase.io.read(workdir / "test.xyz", ":"), PesmithCalculator(potential))
    storage = sorted({term["storage"] for term in summary.info["features"]["terms"]})
    return result | {"fit_s": fit_s, "fit_peak_rss_gb": peak_gb, "derivatives": ", ".join(storage)}


def fit_gap_fit(workdir: Path, n_sparse: int, reference: dict[str, float], same_sparse: bool = False) -> dict:
    import ase.io
    from quippy.potential import Potential as QuipPotential

    from pesmith.plugins.descriptors.soap_quip import SOAPQuip

    two_body = (
        f"distance_2b Z1=14 Z2=14 cutoff={TWO_B['cutoff']} cutoff_transition_width={TWO_B['cutoff_transition_width']}"
        f" covariance_type=ard_se theta_uniform={TWO_B['theta']} delta={TWO_B_DELTA} add_species=F"
    )
    soap = f"{SOAPQuip(['Si'], **SOAP).quip_string('Si', in_gap_fit=True)} zeta={KERNEL['zeta']} delta={KERNEL['delta']} covariance_type=dot_product add_species=F"
    if same_sparse:  # pesmith's sparse points: its 2b pair distances and its SOAP CUR environments
        for name in (SPARSE_2B, SPARSE_INDEX):
            if not (workdir / name).is_file():
                raise SystemExit(f"{workdir / name} is missing: pesmith's fit writes it and runs first")
        two_body += f" sparse_method=file sparse_file={workdir / SPARSE_2B}"
        soap += f" sparse_method=index_file sparse_file={workdir / SPARSE_INDEX}"
    else:
        two_body += f" sparse_method=uniform n_sparse={N_SPARSE_2B}"
        soap += f" sparse_method=cur_points n_sparse={n_sparse}"
    command = [
        shutil.which("gap_fit") or str(Path(sys.executable).with_name("gap_fit")), "atoms_filename=train.xyz",
        f"gap={{{two_body}:{soap}}}", f"default_sigma={{{SIGMA_ENERGY} {SIGMA_FORCE} 0.0 0.0}}", f"sparse_jitter={JITTER}",
        f"e0={{Si:{reference['Si']!r}}}", "energy_parameter_name=energy", "force_parameter_name=forces",
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
    parser.add_argument("--n-sparse", type=int, default=500, help="SOAP sparse points (CUR), both codes")
    parser.add_argument(
        "--same-sparse", action="store_true",
        help="gap_fit reads pesmith's sparse points: its 2b pair distances (sparse_method=file) and its SOAP CUR"
        " environments (sparse_method=index_file); without it each code chooses its own",
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
    report = {
        "n_sparse": args.n_sparse, "n_sparse_2b": N_SPARSE_2B, "same_sparse": args.same_sparse, "n_train": args.n_train,
        "memory_gb": args.memory_gb, "soap": SOAP, "soap_kernel": KERNEL, "two_body": TWO_B,
        "two_body_delta_gap_fit": TWO_B_DELTA, "results": results,
    }
    report["difference"] = differences = agreement(predictions["pesmith"], predictions["gap_fit"])
    which = "the same sparse points" if args.same_sparse else "each code's own sparse points"
    print(f"pesmith - gap_fit on the test set, same descriptors, {which}:")
    for key, value in differences.items():
        print(f"  {key:32s}{value:12.3g}")
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
