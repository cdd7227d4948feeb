"""The search's phase diagram: formation energies of every confirmed structure, the convex hull,
the voltage profile, and their tables (CSV, JSON) and plots (PNG), written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from pesmith.atomic_io import write_text_atomic
from pesmith.plots import pyplot, save_png

from .hull import HullEntry, elemental_references, formation_energies, hull_energy, voltage_profile


SEARCH_KINDS_EXCLUDED = ("crystal", "baseline")  # every other kind (start, step k) is the search's own structure
# Measured voltage window of amorphous Si vs Li/Li+ (V), drawn as bands on the voltage plot
# (e.g. Obrovac & Christensen, Electrochem. Solid-State Lett. 7, A93 (2004): lithiation slopes from
# about 0.3 to 0.05 V, delithiation about 0.3-0.5 V).
MEASURED_WINDOWS = {"lithiation (measured)": (0.1, 0.3), "delithiation (measured)": (0.3, 0.5)}


def write_phase_diagram(
    output: Path, entries: Sequence[dict[str, Any]], structures: Sequence[Atoms], steps: Sequence[dict], ga_logs: Sequence[list[dict]]
) -> dict[str, Any]:
    """Crystalline and amorphous hulls and voltage profiles of ``structures`` (their reference
    energies in ``entries[i]["energy"]``, eV; ``entries[i]["kind"]`` is ``crystal``, ``baseline``
    or one of the search's kinds) into ``output``; returns the tables and the files written
    (relative to ``output``).

    Formation energies are relative to the lowest pure Li and pure Si (the relaxed crystals).
    The crystalline hull is over every structure. The amorphous hull is over the search's
    structures and the elemental references, and the baseline hull over the baseline's and the
    elemental references; each gives its voltage profile.
    """
    hull = formation_energies(list(structures), [e["energy"] for e in entries])
    references = elemental_references(list(structures), [e["energy"] for e in entries], ["Li", "Si"])
    voltages = {"crystalline": [v.as_dict() for v in voltage_profile(hull)]}
    above: dict[str, dict[int, float]] = {"amorphous": {}, "baseline": {}}  # entry index -> eV/atom above its own hull
    for name, keep in (("amorphous", _is_search), ("baseline", lambda kind: kind == "baseline")):
        subset = [i for i, e in enumerate(entries) if keep(e["kind"])]
        if subset:
            subset_hull = _subset_hull(entries, structures, references, subset)
            above[name] = dict(zip(subset, (h.e_above_hull for h in subset_hull[len(subset_hull) - len(subset):])))
            voltages[name] = [v.as_dict() for v in voltage_profile(subset_hull)]
    rows = [
        {
            "kind": e["kind"],
            "origin": e.get("origin") or e["kind"],
            "structure": e["structure"],
            "formula": h.formula,
            "reduced_formula": structure.get_chemical_formula(empirical=True),
            "li_per_si": li_per_si(h.x),
            "li_fraction": h.x,
            "energy_per_atom_eV": h.energy_per_atom,
            "formation_energy_eV_per_atom": h.formation_energy,
            "e_above_hull_eV_per_atom": h.e_above_hull,
            "on_hull": h.on_hull,
            "e_above_amorphous_hull_eV_per_atom": above["amorphous"].get(index, above["baseline"].get(index)),
            "max_force_eV_per_A": e.get("max_force"),
            "max_stress_GPa": e.get("max_stress_GPa"),
        }
        for index, (e, h, structure) in enumerate(zip(entries, hull, structures))
    ]
    comparison = compare_with_baseline(rows)
    voltage_rows = [{"hull": name} | v for name, profile in voltages.items() for v in profile]
    files = {
        "hull_csv": "hull.csv",
        "hull_json": "hull.json",
        "voltage_csv": "voltage.csv",
        "hull_png": "hull.png",
        "voltage_png": "voltage.png",
        "convergence_png": "ga_convergence.png",
    }
    write_text_atomic(output / files["hull_csv"], _csv(rows))
    write_text_atomic(output / files["voltage_csv"], _csv(voltage_rows))
    document = {
        "entries": rows,
        "voltages": voltages["crystalline"],
        "amorphous_voltages": voltages.get("amorphous", []),
        "baseline_voltages": voltages.get("baseline", []),
        "search_vs_baseline": comparison,
        "steps": list(steps),
    }
    write_text_atomic(output / files["hull_json"], json.dumps(document, indent=1))
    _plot_hull(output / files["hull_png"], rows)
    _plot_voltage(output / files["voltage_png"], voltages)
    _plot_convergence(output / files["convergence_png"], ga_logs, steps)
    return {
        "entries": rows,
        "voltages": voltages["crystalline"],
        "amorphous_voltages": voltages.get("amorphous", []),
        "baseline_voltages": voltages.get("baseline", []),
        "search_vs_baseline": comparison,
        "files": files,
    }


def li_per_si(li_fraction: float) -> float | None:
    """x in Li_xSi from the Li fraction x / (1 + x); None for pure Li."""
    return li_fraction / (1.0 - li_fraction) if li_fraction < 1.0 - 1e-12 else None


def compare_with_baseline(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per composition (x in Li_xSi) where the baseline sampled, from the hull rows of
    :func:`write_phase_diagram` (each with its ``origin``): the lowest formation energy
    (eV/atom) of the search's structures and of the baseline's, how many of each,
    ``search_minus_baseline_meV_per_atom`` (negative: the search found lower), and
    ``search_lowest_by_origin``: the search's lowest per origin of its structures (``ga``,
    ``anneal of ga``, ``melt-quench``, ...), which says what the GA itself contributed."""
    out = []
    for x in sorted({round(r["li_per_si"], 6) for r in rows if r["kind"] == "baseline" and r["li_per_si"] is not None}, reverse=True):
        at = [r for r in rows if r["li_per_si"] is not None and round(r["li_per_si"], 6) == x]
        search = [r for r in at if _is_search(r["kind"])]
        baseline = [r["formation_energy_eV_per_atom"] for r in at if r["kind"] == "baseline"]
        lowest = min((r["formation_energy_eV_per_atom"] for r in search), default=None)
        by_origin: dict[str, float] = {}
        for r in search:
            by_origin[r["origin"]] = min(by_origin.get(r["origin"], np.inf), r["formation_energy_eV_per_atom"])
        out.append({
            "li_per_si": x,
            "search_structures": len(search),
            "baseline_structures": len(baseline),
            "search_lowest_eV_per_atom": lowest,
            "baseline_lowest_eV_per_atom": min(baseline),
            "search_minus_baseline_meV_per_atom": 1000.0 * (lowest - min(baseline)) if lowest is not None else None,
            "search_lowest_by_origin": {origin: float(e) for origin, e in sorted(by_origin.items(), key=lambda item: item[1])},
        })
    return out


def _is_search(kind: str) -> bool:
    return kind not in SEARCH_KINDS_EXCLUDED


def _pure(structure: Atoms) -> bool:
    return len(set(structure.numbers)) == 1


def _subset_hull(entries, structures, references, subset: Sequence[int]) -> list[HullEntry]:
    """Hull entries of ``subset`` together with the pure structures (the end members)."""
    keep = [i for i, s in enumerate(structures) if _pure(s) and entries[i]["kind"] == "crystal"] + list(subset)
    return formation_energies([structures[i] for i in keep], [entries[i]["energy"] for i in keep], references=references)


def _csv(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


HULL_STYLE = {"crystal": ("s", "k"), "baseline": ("^", "tab:orange")}  # marker, colour; the search's kinds: o, tab:blue


def _plot_hull(path: Path, rows: Sequence[dict]) -> None:
    """Formation energy against x in Li_xSi (pure Li, at infinite x, is left out), the
    crystalline hull (black) and the amorphous one (blue), hull points labeled by composition."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = [r for r in rows if r["li_per_si"] is not None]
    x_max = max([r["li_per_si"] for r in shown] + [1.0]) * 1.05
    kinds = sorted({r["kind"] for r in shown}, key=lambda k: (k != "crystal", k == "baseline", k))
    for kind in kinds:
        points = [r for r in shown if r["kind"] == kind]
        marker, colour = HULL_STYLE.get(kind, ("o", None))
        ax.scatter([r["li_per_si"] for r in points], [r["formation_energy_eV_per_atom"] for r in points], marker=marker,
                   s=28, label=kind, alpha=0.8, color=colour)
    elements = [r for r in rows if r["kind"] == "crystal" and r["reduced_formula"] in ("Li", "Si")]
    hulls = {
        "crystalline hull": (rows, "k", "-"),
        "amorphous hull": (elements + [r for r in rows if _is_search(r["kind"])], "tab:blue", "--"),
        "baseline hull": (elements + [r for r in rows if r["kind"] == "baseline"], "tab:orange", ":"),
    }
    xs = np.linspace(0.0, x_max, 200)
    for name, (points, colour, style) in hulls.items():
        if len(points) == len(elements) and name != "crystalline hull":
            continue
        line = hull_energy(np.array([r["li_fraction"] for r in points]), np.array([r["formation_energy_eV_per_atom"] for r in points]))
        ax.plot(xs, [line(x / (1.0 + x)) for x in xs], color=colour, linestyle=style, lw=1, label=name)
    for r in shown:
        if r["on_hull"] or (r["e_above_amorphous_hull_eV_per_atom"] is not None and r["e_above_amorphous_hull_eV_per_atom"] < 1e-6 and _is_search(r["kind"])):
            label = r["reduced_formula"] if r["kind"] == "crystal" else f"x={r['li_per_si']:.2f}"
            ax.annotate(label, (r["li_per_si"], r["formation_energy_eV_per_atom"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlim(0.0, x_max)
    ax.set_xlabel("x in Li$_x$Si")
    ax.set_ylabel("formation energy (eV/atom)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _plot_voltage(path: Path, voltages: dict[str, Sequence[dict]]) -> None:
    """The voltage profiles (V against x in Li_xSi) of each hull, the measured a-Si window as bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, (low, high)), colour in zip(MEASURED_WINDOWS.items(), ("tab:green", "tab:red")):
        ax.axhspan(low, high, color=colour, alpha=0.12, label=label)
    styles = {"crystalline": ("k", "-"), "amorphous": ("tab:blue", "-"), "baseline": ("tab:orange", "--")}
    for name, profile in voltages.items():
        if not profile:
            continue
        xs = [x for v in profile for x in (v["x_low"], v["x_high"])]
        ys = [v["voltage"] for v in profile for _ in range(2)]
        colour, line = styles[name]
        ax.plot(xs, ys, color=colour, linestyle=line, label=f"{name} hull")
    ax.set_xlabel("x in Li$_x$Si")
    ax.set_ylabel("voltage vs Li/Li$^+$ (V)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _plot_convergence(path: Path, ga_logs: Sequence[list[dict]], steps: Sequence[dict]) -> None:
    """Best model energy per generation of each step, relative to that step's final best (meV/atom)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for log, step in zip(ga_logs, steps):
        if not log:
            continue
        n_atoms = log[0]["n_atoms"]
        best = [r["best_energy"] / n_atoms for r in log]
        ax.plot([r["generation"] for r in log], [1000.0 * (b - min(best)) for b in best], "o-", ms=3,
                label=f"x {step['x_from']:.2f} -> {step['x_to']:.2f}")
    ax.set_xlabel("generation")
    ax.set_ylabel("best model energy above the step's best (meV/atom)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
