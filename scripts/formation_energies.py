"""Formation energies of the bundled Li-Si crystals with each reference plugin, and run times.

For every reference and crystal in ``data/lisi_crystals``: a single point at the bundled
(PBE-relaxed) geometry, then a FIRE relaxation of positions and cell (fmax 0.05 eV/Å, at
most ``--steps`` steps), each under a time limit. Formation energies per atom are relative to
bcc Li and diamond Si computed the same way (:func:`pesmith.search.hull.formation_energies`).
Prints a Markdown table (the one in docs/references.md) and writes JSON.

    OMP_NUM_THREADS=1 python scripts/formation_energies.py --references morse xtb chgnet [--json formation_energies.json]
    OMP_NUM_THREADS=1 python scripts/formation_energies.py --references sevennet:7net-l3i5 sevennet:model=7net-mf-0,modal=PBE

A reference is ``KIND`` (default options) or ``KIND:OPTIONS``, OPTIONS being comma-separated
``key=value`` pairs (values read as YAML); a bare value is the ``model`` option. Each reference
loads what it needs (:meth:`Reference.prepare`) before the first calculation is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import ase.io  # noqa: E402
import yaml  # noqa: E402

from pesmith.errors import CalculationFailed  # noqa: E402
from pesmith.parallel import call_with_time_limit  # noqa: E402
from pesmith.registry import Registry  # noqa: E402
from pesmith.search.hull import formation_energies  # noqa: E402

CRYSTALS = Path(__file__).resolve().parents[1] / "data" / "lisi_crystals"
ORDER = ["Li_bcc", "Si_diamond", "Li12Si7", "Li13Si4", "Li15Si4"]


def run_one(reference, atoms, relax: bool, steps: int, time_limit: float) -> dict:
    started = time.perf_counter()
    try:
        if relax:
            relaxed = call_with_time_limit(lambda a: reference.relax(a, fmax=0.05, steps=steps, cell=True), atoms, time_limit)
            energy = float(relaxed.get_potential_energy())
            volume = relaxed.get_volume() / len(relaxed)
        else:
            energy = float(call_with_time_limit(reference.label, atoms, time_limit)[0])
            volume = atoms.get_volume() / len(atoms)
        return {"energy": energy, "volume_per_atom": volume, "time_s": time.perf_counter() - started}
    except CalculationFailed as exc:
        return {"error": str(exc).splitlines()[0][:120], "time_s": time.perf_counter() - started}


def parse_reference(spec: str) -> tuple[str, dict]:
    """``"sevennet:model=7net-mf-0,modal=PBE"`` -> ``("sevennet", {"model": "7net-mf-0", "modal": "PBE"})``;
    ``"sevennet:7net-l3i5"`` -> ``("sevennet", {"model": "7net-l3i5"})``."""
    kind, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        if equals:
            options[key.strip()] = yaml.safe_load(value)
        else:
            options["model"] = key.strip()
    return kind, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", nargs="+", default=["morse", "xtb"], help="KIND or KIND:key=value,... (a bare value: model)")
    parser.add_argument("--crystals", nargs="+", default=ORDER)
    parser.add_argument("--steps", type=int, default=300, help="relaxation steps at most")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per calculation")
    parser.add_argument("--no-relax", action="store_true", help="single points only")
    parser.add_argument("--json", type=Path, default=Path("formation_energies.json"))
    args = parser.parse_args()
    registry = Registry(entry_points=False)
    crystals = {name: ase.io.read(CRYSTALS / f"{name}.xyz") for name in args.crystals}
    report = {"crystals": args.crystals, "references": {}}
    for spec in args.references:
        kind, options = parse_reference(spec)
        reference = registry.get("reference", kind)(**options)
        reference.prepare()
        per_kind = {}
        for mode in ("single_point",) if args.no_relax else ("single_point", "relaxed"):
            results = {name: run_one(reference, atoms, mode == "relaxed", args.steps, args.time_limit) for name, atoms in crystals.items()}
            ok = [name for name in args.crystals if "energy" in results[name]]
            if {"Li_bcc", "Si_diamond"} <= set(ok):
                entries = formation_energies([crystals[n] for n in ok], [results[n]["energy"] for n in ok])
                for name, entry in zip(ok, entries):
                    results[name]["formation_energy"] = entry.formation_energy
                    results[name]["e_above_hull"] = entry.e_above_hull
            per_kind[mode] = results
            print(f"{spec} {mode}: " + ", ".join(f"{n} {r.get('formation_energy', r.get('error', 'n/a'))}" for n, r in results.items()), flush=True)
        report["references"][spec] = {"code_version": reference.code_version(), "config": reference.get_config(), **per_kind}
    args.json.write_text(json.dumps(report, indent=2))
    print()
    print("| reference | crystal | atoms | E_f single point (eV/atom) | time (s) | E_f relaxed (eV/atom) | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for kind, data in report["references"].items():
        for name in args.crystals:
            cells = []
            for mode in ("single_point", "relaxed"):
                if mode not in data:
                    cells += ["not run", ""]
                    continue
                r = data[mode][name]
                value = f"{r['formation_energy']:.3f}" if "formation_energy" in r else ("failed: " + r["error"] if "error" in r else "n/a")
                cells += [value, f"{r['time_s']:.1f}"]
            print(f"| {kind} | {name} | {len(crystals[name])} | " + " | ".join(cells) + " |")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
