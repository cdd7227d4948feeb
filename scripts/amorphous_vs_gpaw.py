"""Formation energies and forces of a few random Li-Si cells: GPAW PBE against fast references.

The cells are random packings (:func:`pesmith.testing.random_positions`, no two atoms closer
than 2.2 Å, cubic, 17 Å^3/atom, not relaxed), two (seeds) of each of x = Li/(Li+Si) =
0.50 (8 Li + 8 Si), 0.65 (13 + 7) and 0.79 (15 + 4); with ``--relaxed-with KIND`` also the
same cells relaxed (positions and cell, FIRE, fmax 0.05 eV/Å) by that reference, nearer to
equilibrium amorphous structures. ``gpaw`` labels them one at a time with the settings of
docs/references.md (PBE, 400 eV, k-point density 3.0 per Å^-1, Fermi-Dirac 0.1 eV) together
with bcc Li and diamond Si, writing each structure and its labels into the JSON as it goes (a
rerun skips what is there). ``compare`` labels the structures of that JSON with each
``--references`` (syntax of
scripts/formation_energies.py) in this process and writes, per reference and cell, the
formation energy (eV/atom, against that reference's own bcc Li and diamond Si), its difference
from GPAW, the force RMSE against GPAW (eV/Å, over all components) and the wall time of the
single point (after one warm-up calculation) and, for the cells named by ``--relax`` (default:
the 19-atom ones), of a FIRE relaxation of positions and cell (fmax 0.05 eV/Å, at most 300 steps).

    OMP_NUM_THREADS=1 python scripts/amorphous_vs_gpaw.py gpaw --json docs/measurements/amorphous_gpaw.json [--relaxed-with chgnet]
    OMP_NUM_THREADS=1 python scripts/amorphous_vs_gpaw.py compare --gpaw-json docs/measurements/amorphous_gpaw.json \\
        --references chgnet sevennet:7net-0 --json docs/measurements/amorphous_vs_gpaw.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

from formation_energies import CRYSTALS, parse_reference  # noqa: E402
from pesmith.errors import CalculationFailed  # noqa: E402
from pesmith.reference_db import structure_hash  # noqa: E402
from pesmith.registry import Registry  # noqa: E402
from pesmith.testing import random_positions  # noqa: E402

COMPOSITIONS = [(8, 8), (13, 7), (15, 4)] * 2  # (n_Li, n_Si), cell i made with seed i
VOLUME_PER_ATOM = 17.0  # Å^3
MIN_DISTANCE = 2.2  # Å
GPAW_SETTINGS = {"cutoff": 400.0, "kpoint_density": 3.0, "smearing": 0.1}


def random_cell(n_li: int, n_si: int, seed: int) -> Atoms:
    """A cubic periodic cell of ``n_li`` Li and ``n_si`` Si at random positions."""
    n_atoms = n_li + n_si
    cell = np.eye(3) * (n_atoms * VOLUME_PER_ATOM) ** (1 / 3)
    positions = random_positions(cell, n_atoms, MIN_DISTANCE, np.random.default_rng(seed))
    return Atoms(["Li"] * n_li + ["Si"] * n_si, positions=positions, cell=cell, pbc=True)


def structures(relaxed_with: str | None = None) -> dict[str, Atoms]:
    """Name -> structure: the random cells, the two elemental crystals and, with ``relaxed_with``
    (a reference spec), the random cells relaxed by that reference (``<name>_relaxed_<spec>``)."""
    cells = {f"random_{n_li}Li{n_si}Si_{seed}": random_cell(n_li, n_si, seed) for seed, (n_li, n_si) in enumerate(COMPOSITIONS)}
    relaxed = {}
    if relaxed_with:
        kind, options = parse_reference(relaxed_with)
        reference = Registry(entry_points=False).get("reference", kind)(**options)
        for name, atoms in cells.items():
            relaxed[f"{name}_relaxed_{relaxed_with}"] = reference.relax(atoms, fmax=0.05, steps=500, cell=True)
    return {**cells, **relaxed, **{name: ase.io.read(CRYSTALS / f"{name}.xyz") for name in ("Li_bcc", "Si_diamond")}}


def from_json(entry: dict) -> Atoms:
    return Atoms(numbers=entry["numbers"], positions=entry["positions"], cell=entry["cell"], pbc=True)


def formation_energy(atoms: Atoms, energy: float, elemental: dict[str, float]) -> float:
    """(E - n_Li e_Li - n_Si e_Si) / N in eV/atom; ``elemental`` holds eV/atom of bcc Li, diamond Si."""
    symbols = atoms.get_chemical_symbols()
    return (energy - symbols.count("Li") * elemental["Li"] - symbols.count("Si") * elemental["Si"]) / len(atoms)


def label_with_gpaw(path: Path, relaxed_with: str | None) -> None:
    reference = Registry(entry_points=False).get("reference", "gpaw")(**GPAW_SETTINGS)
    report = json.loads(path.read_text()) if path.exists() else {"settings": GPAW_SETTINGS, "code_version": reference.code_version(), "labels": {}}
    for name, atoms in structures(relaxed_with).items():
        if name in report["labels"]:
            continue
        started = time.perf_counter()
        energy, forces, _ = reference.label(atoms)
        report["labels"][name] = {
            "hash": structure_hash(atoms), "n_atoms": len(atoms), "energy": energy,
            "forces": forces.tolist(), "time_s": time.perf_counter() - started,
            "numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(), "cell": atoms.cell.array.tolist(),
        }
        path.write_text(json.dumps(report, indent=1))
        print(f"gpaw {name}: {energy:.4f} eV in {report['labels'][name]['time_s']:.0f} s", flush=True)


def cell_group(name: str) -> str:
    """``"relaxed_<spec>"`` for a relaxed cell, ``"random"`` for an unrelaxed one."""
    return name[name.index("relaxed_"):] if "_relaxed_" in name else "random"


def timed(fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


def compare(gpaw_path: Path, specs: list[str], out: Path, relax: list[str]) -> None:
    gpaw = json.loads(gpaw_path.read_text())["labels"]
    cells = {name: from_json(entry) for name, entry in gpaw.items()}
    elemental_names = {"Li": "Li_bcc", "Si": "Si_diamond"}
    per_atom = lambda labels, element: labels[elemental_names[element]]["energy"] / len(cells[elemental_names[element]])  # noqa: E731
    gpaw_elemental = {element: per_atom(gpaw, element) for element in elemental_names}
    random_names = [name for name in cells if name.startswith("random") and name in gpaw]
    report = {"gpaw": {
        name: {
            "formation_energy": formation_energy(cells[name], gpaw[name]["energy"], gpaw_elemental),
            "force_rms": float(np.sqrt(np.mean(np.square(gpaw[name]["forces"])))),  # eV/Å: the scale of the RMSEs
        } for name in random_names
    }, "references": {}}
    registry = Registry(entry_points=False)
    for spec in specs:
        kind, options = parse_reference(spec)
        reference = registry.get("reference", kind)(**options)
        reference.prepare()
        reference.label(cells["Si_diamond"])  # warm-up: first-call costs stay out of the times
        labels = {name: dict(zip(("energy", "forces"), reference.label(atoms)[:2])) for name, atoms in cells.items() if not name.startswith("random")}
        elemental = {element: per_atom(labels, element) for element in elemental_names}
        results, all_differences = {}, {}
        for name in random_names:
            (energy, forces, _), single_s = timed(reference.label, cells[name])
            relax_s = None
            if name in relax:
                try:
                    _, relax_s = timed(lambda a: reference.relax(a, fmax=0.05, steps=300, cell=True), cells[name])
                except CalculationFailed as exc:
                    relax_s = f"failed: {str(exc).splitlines()[0][:100]}"
            e_f = formation_energy(cells[name], energy, elemental)
            difference = np.asarray(forces) - np.asarray(gpaw[name]["forces"])
            all_differences[name] = difference.ravel()
            results[name] = {
                "n_atoms": len(cells[name]), "formation_energy": e_f,
                "formation_energy_error": e_f - report["gpaw"][name]["formation_energy"],
                "force_rmse": float(np.sqrt(np.mean(difference**2))),
                "single_point_s": single_s, "relax_s": relax_s,
            }
        summary = {}
        for group in sorted({cell_group(name) for name in random_names}):
            names = [name for name in random_names if cell_group(name) == group]
            summary[group] = {
                "force_rmse": float(np.sqrt(np.mean(np.concatenate([all_differences[n] for n in names]) ** 2))),
                "formation_energy_mae": float(np.mean([abs(results[n]["formation_energy_error"]) for n in names])),
            }
        report["references"][spec] = {"code_version": reference.code_version(), "config": reference.get_config(), "cells": results, **summary}
        for group, numbers in summary.items():
            print(f"{spec}, {group}: E_f MAE {1000 * numbers['formation_energy_mae']:.0f} meV/atom, force RMSE {numbers['force_rmse']:.3f} eV/Å", flush=True)
        out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["gpaw", "compare"])
    parser.add_argument("--json", type=Path, required=True, help="output JSON (gpaw: also read, to resume)")
    parser.add_argument("--gpaw-json", type=Path, help="compare: the JSON that the gpaw step wrote")
    parser.add_argument("--references", nargs="+", default=["chgnet", "sevennet"])
    parser.add_argument("--relaxed-with", help="gpaw: also label the cells relaxed by this reference (spec)")
    parser.add_argument("--relax", nargs="*", default=["random_15Li4Si_2", "random_15Li4Si_5"], help="compare: time relaxations of these")
    args = parser.parse_args()
    if args.step == "gpaw":
        label_with_gpaw(args.json, args.relaxed_with)
    else:
        if args.gpaw_json is None:
            parser.error("compare needs --gpaw-json")
        compare(args.gpaw_json, args.references, args.json, args.relax)


if __name__ == "__main__":
    main()
