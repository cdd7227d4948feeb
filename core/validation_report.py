"""The ``pesmith validate`` report: a potential's errors on labeled data, written to one folder.

``report.json`` and ``report.md`` hold energy (meV/atom), force (eV/Å) and stress (GPa) RMSE and
MAE overall and per ``config_type``, force errors per element, and the share of atoms with
descriptor features outside the training range; ``parity.png`` (predicted against reference),
``errors.png`` (histograms of the energy and force-component errors) and ``extrapolation.png``
(per feature, the share of atoms outside its training range) beside them; for a model with an
uncertainty (a committee, a GAP) also how its predicted spread tracks the true errors (Spearman
correlation, 1-sigma coverage) and ``uncertainty.png`` (spread against error). Every file is
written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_io import write_text_atomic
from .plots import pyplot, save_png
from .report import METRIC_UNITS, parity_plot
from .validation import Predictions

FILES = ("report.json", "report.md", "parity.png", "errors.png", "extrapolation.png")
UNCERTAINTY_FILE = "uncertainty.png"  # written for a model with an uncertainty


def validation_report(predictions: Predictions, model_file: str, data: str) -> dict[str, Any]:
    """The report's content (JSON-ready) from the predictions of ``model_file`` on ``data``."""
    return {
        "model_file": model_file,
        "data": data,
        "metrics": predictions.metrics(),
        "per_config_type": predictions.metrics_per_config_type(),
        "force_per_element": predictions.force_metrics_per_element(),
        "extrapolation": predictions.extrapolation(),
        "uncertainty": predictions.uncertainty(),
        "uncertainty_per_config_type": predictions.uncertainty_per_config_type(),
    }


def write_validation_report(folder: Path, report: dict[str, Any], predictions: Predictions) -> list[Path]:
    """Write :data:`FILES` into ``folder`` (created if needed); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in FILES]
    write_text_atomic(paths[0], json.dumps(report, indent=2))
    write_text_atomic(paths[1], markdown(report))
    parity_plot(paths[2], {Path(report["data"]).name: predictions})
    error_histograms(paths[3], predictions)
    extrapolation_plot(paths[4], predictions)
    if report["uncertainty"]:
        paths.append(folder / UNCERTAINTY_FILE)
        uncertainty_plot(paths[-1], predictions)
    return paths


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    lines = [f"# pesmith validation: `{report['model_file']}` on `{report['data']}`", ""]
    sets = {"all": report["metrics"], **report["per_config_type"]}
    lines += ["| metric | unit | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    lines.append("| n_structures |  | " + " | ".join(str(m["n_structures"]) for m in sets.values()) + " |")
    for key, unit in METRIC_UNITS.items():
        if any(key in m for m in sets.values()):
            lines.append(f"| {key} | {unit} | " + " | ".join(f"{m[key]:.4g}" if key in m else "-" for m in sets.values()) + " |")
    lines += ["", "Forces per element:", "", "| element | atoms | RMSE (eV/Å) | MAE (eV/Å) |", "|---|---|---|---|"]
    for symbol, m in report["force_per_element"].items():
        lines.append(f"| {symbol} | {m['n_atoms']} | {m['force_rmse_eV_per_A']:.4g} | {m['force_mae_eV_per_A']:.4g} |")
    extrapolation = report["extrapolation"]
    if extrapolation:
        lines += [
            "",
            f"Outside the training range: {extrapolation['atoms_outside']} of {extrapolation['n_atoms']} atoms"
            f" ({100 * extrapolation['fraction_outside']:.1f} %) have at least one descriptor feature beyond the"
            f" values seen in training; {extrapolation['features_outside']} of {extrapolation['n_features']} features"
            " were ever outside. Per element: "
            + ", ".join(f"{k.removeprefix('fraction_outside_')} {100 * v:.1f} %" for k, v in extrapolation.items() if k.startswith("fraction_outside_"))
            + ". Predictions there are extrapolations.",
        ]
    uncertainty = report["uncertainty"]
    if uncertainty:
        lines += ["", "The model's uncertainty against its true errors (Spearman rank correlation; 1-sigma coverage, 0.68 if calibrated):", ""]
        if "energy_spearman" in uncertainty:
            lines.append(f"- energies: Spearman {uncertainty['energy_spearman']:.2f}, coverage {uncertainty['energy_coverage_1sigma']:.2f}")
        if "force_spearman" in uncertainty:
            lines.append(
                f"- forces (per atom, norms): Spearman {uncertainty['force_spearman']:.2f} (the reference force norm alone:"
                f" {uncertainty['force_spearman_of_reference_norm']:.2f}); coverage per component {uncertainty['force_coverage_1sigma']:.2f}"
            )
        per_type = report.get("uncertainty_per_config_type", {})
        if len(per_type) > 1:
            lines += ["", "Within each config_type:", "", "| config_type | energy Spearman | force Spearman | force norm alone | force coverage |", "|---|---|---|---|---|"]
            for name, u in per_type.items():
                cells = [u.get(key) for key in ("energy_spearman", "force_spearman", "force_spearman_of_reference_norm", "force_coverage_1sigma")]
                lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in cells) + " |")
    return "\n".join(lines + [""])


def error_histograms(path: Path, predictions: Predictions) -> None:
    """Histograms of the energy error (meV/atom) and of the force-component errors (eV/Å)."""
    plt = pyplot()
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(10, 4))
    ax_e.hist(1000 * (predictions.energy_per_atom_pred - predictions.energy_per_atom_ref), bins=40)
    ax_e.set_xlabel("energy error (meV/atom)")
    ax_e.set_ylabel("structures")
    ax_f.hist((predictions.forces_pred - predictions.forces_ref).ravel(), bins=60)
    ax_f.set_xlabel("force component error (eV/Å)")
    ax_f.set_ylabel("components")
    fig.tight_layout()
    save_png(fig, path)


def extrapolation_plot(path: Path, predictions: Predictions) -> None:
    """Per descriptor feature, the share of atoms whose value lies outside the training range."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.5))
    n_atoms = max(1, len(predictions.atoms_outside))
    ax.bar(np.arange(len(predictions.features_outside)), 100 * predictions.features_outside / n_atoms, width=1.0)
    ax.set_xlabel("descriptor feature")
    ax.set_ylabel("atoms outside the training range (%)")
    ax.set_title(f"{100 * predictions.atoms_outside.mean() if len(predictions.atoms_outside) else 0:.1f} % of atoms have a feature outside")
    fig.tight_layout()
    save_png(fig, path)


def uncertainty_plot(path: Path, predictions: Predictions) -> None:
    """Predicted standard deviation against true error: energies (meV/atom) and per-atom forces (eV/Å)."""
    plt = pyplot()
    panels = []
    if len(predictions.energy_std):
        panels.append(("energy (meV/atom)", 1000 * predictions.energy_std, 1000 * np.abs(predictions.energy_per_atom_pred - predictions.energy_per_atom_ref)))
    if len(predictions.forces_std):
        panels.append(("force (eV/Å, per atom)", np.linalg.norm(predictions.forces_std, axis=1), np.linalg.norm(predictions.forces_pred - predictions.forces_ref, axis=1)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (label, spread, error) in zip(axes[0], panels):
        ax.scatter(spread, error, s=4, alpha=0.5)
        top = max(float(spread.max()), float(error.max()), 1e-12)
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set_xlabel(f"predicted std, {label}")
        ax.set_ylabel(f"|error|, {label}")
    fig.tight_layout()
    save_png(fig, path)
