"""The search's phase diagram: formation energies of every confirmed structure, the convex hull,
the voltage profile, and their tables (CSV, JSON) and plots (PNG), written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from ase import Atoms

from pesmith.atomic import atomic_path, write_text_atomic

from .hull import formation_energies, voltage_profile


def write_phase_diagram(
    output: Path, entries: Sequence[dict[str, Any]], structures: Sequence[Atoms], steps: Sequence[dict], ga_logs: Sequence[list[dict]]
) -> dict[str, Any]:
    """Hull and voltage of ``structures`` (their reference energies in ``entries[i]["energy"]``, eV)
    into ``output``; returns the tables and the files written (relative to ``output``)."""
    hull = formation_energies(list(structures), [e["energy"] for e in entries])
    rows = [
        {
            "kind": e["kind"],
            "structure": e["structure"],
            "formula": h.formula,
            "reduced_formula": structure.get_chemical_formula(empirical=True),
            "li_per_si": h.x / (1 - h.x) if h.x < 1 else None,  # pure Li: no Si
            "li_fraction": h.x,
            "energy_per_atom_eV": h.energy_per_atom,
            "formation_energy_eV_per_atom": h.formation_energy,
            "e_above_hull_eV_per_atom": h.e_above_hull,
            "on_hull": h.on_hull,
        }
        for e, h, structure in zip(entries, hull, structures)
    ]
    voltages = [v.as_dict() for v in voltage_profile(hull)]
    files = {
        "hull_csv": "hull.csv",
        "hull_json": "hull.json",
        "voltage_csv": "voltage.csv",
        "hull_png": "hull.png",
        "voltage_png": "voltage.png",
        "convergence_png": "ga_convergence.png",
    }
    write_text_atomic(output / files["hull_csv"], _csv(rows))
    write_text_atomic(output / files["voltage_csv"], _csv(voltages))
    write_text_atomic(output / files["hull_json"], json.dumps({"entries": rows, "voltages": voltages, "steps": list(steps)}, indent=1))
    _plot_hull(output / files["hull_png"], rows)
    _plot_voltage(output / files["voltage_png"], voltages)
    _plot_convergence(output / files["convergence_png"], ga_logs, steps)
    return {"entries": rows, "voltages": voltages, "files": files}


def _csv(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_hull(path: Path, rows: Sequence[dict]) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k != "crystal", k))
    for kind in kinds:
        points = [r for r in rows if r["kind"] == kind]
        marker = "s" if kind == "crystal" else "o"
        ax.scatter([r["li_fraction"] for r in points], [r["formation_energy_eV_per_atom"] for r in points], marker=marker, s=25, label=kind, alpha=0.8)
    vertices = sorted({(r["li_fraction"], r["formation_energy_eV_per_atom"]) for r in rows if r["on_hull"]} | {(0.0, 0.0), (1.0, 0.0)})
    ax.plot(*zip(*vertices), "k-", lw=1)
    for r in rows:
        if r["on_hull"] and r["kind"] == "crystal":
            ax.annotate(r["reduced_formula"], (r["li_fraction"], r["formation_energy_eV_per_atom"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("Li fraction  x / (1 + x)")
    ax.set_ylabel("formation energy (eV/atom)")
    ax.legend(fontsize=7)
    _save(fig, path, plt)


def _plot_voltage(path: Path, voltages: Sequence[dict]) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in voltages:
        ax.plot([v["x_low"], v["x_high"]], [v["voltage"], v["voltage"]], "b-")
    for a, b in zip(voltages, voltages[1:]):
        ax.plot([a["x_high"], b["x_low"]], [a["voltage"], b["voltage"]], "b-")
    ax.set_xlabel("x in Li$_x$Si")
    ax.set_ylabel("voltage vs Li/Li$^+$ (V)")
    _save(fig, path, plt)


def _plot_convergence(path: Path, ga_logs: Sequence[list[dict]], steps: Sequence[dict]) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for log, step in zip(ga_logs, steps):
        if not log:
            continue
        n_atoms = log[0]["n_atoms"]
        ax.plot([r["generation"] for r in log], [r["best_energy"] / n_atoms for r in log], "o-", ms=3, label=f"x {step['x_from']:.2f} -> {step['x_to']:.2f}")
    ax.set_xlabel("generation")
    ax.set_ylabel("best model energy (eV/atom)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    _save(fig, path, plt)


def _save(fig, path: Path, plt) -> None:
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=120)
    plt.close(fig)
