"""Training reports: JSON + markdown metrics and a parity plot PNG, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic_io import write_text_atomic
from .model import STOP_REASON
from .plots import pyplot, save_png
from .validation import Predictions

METRIC_UNITS = {
    "energy_rmse_meV_per_atom": "meV/atom",
    "energy_mae_meV_per_atom": "meV/atom",
    "force_rmse_eV_per_A": "eV/Å",
    "force_mae_eV_per_A": "eV/Å",
    "stress_rmse_GPa": "GPa",
    "stress_mae_GPa": "GPa",
}


def write_report(stem: Path, report: dict[str, Any], predictions: dict[str, Predictions]) -> list[Path]:
    """Write ``<stem>_report.json``, ``<stem>_report.md`` and, given ``predictions``, ``<stem>_parity.png``."""
    json_path, md_path, png_path = report_paths(stem)
    write_text_atomic(json_path, json.dumps(report, indent=2, default=str))
    write_text_atomic(md_path, markdown(report))
    if not predictions:
        return [json_path, md_path]
    parity_plot(png_path, predictions)
    return [json_path, md_path, png_path]


def report_paths(stem: Path) -> list[Path]:
    """The files :func:`write_report` writes: ``<stem>_report.json``, ``_report.md``, ``_parity.png``."""
    return [stem.with_name(stem.name + suffix) for suffix in ("_report.json", "_report.md", "_parity.png")]


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# pesmith training report: {report['model_file']}", ""]
    lines += [f"- data: `{report['data']['train']}` (split seed {report['data']['seed']})"]
    lines += [f"- train structures: {report['split']['n_train']}, validation: {report['split']['n_validation']}"]
    training = report["training"]
    if "epochs_run" in training:
        lines += [f"- epochs run: {training['epochs_run']}, best epoch: {training['best_epoch']}"]
    if STOP_REASON in training:
        lines += [f"- training stopped: {training[STOP_REASON]}"]
    if "interrupted" in report:
        lines += [f"- interrupted (Ctrl-C) {report['interrupted']}: the model is the best state the fit had kept"]
    if "features" in training:
        features = training["features"]
        for k, plan in enumerate(features.get("terms", [features])):  # one plan per term of a sum of terms
            lines += [
                f"- features{f' of term {k}' if 'terms' in features else ''}: {plan['n_atoms']} atoms, {plan['n_edges']} edges,"
                f" {plan['n_features']} per atom; derivatives {plan['jacobian_gb']:.3g} GB in float64, stored: {plan['storage']}"
                f" (memory budget {plan['memory_gb']:.3g} GB); featurization {features['featurization_s']:.1f} s"
            ]
    if "baseline" in report:
        lines += [f"- baseline ({report['baseline']['kind']}): metrics are {report['baseline']['metrics']}"]
    lines += [f"- training time: {training['wall_time_s']:.1f} s", ""]
    sets = [name for name in ("train", "validation") if name in report["metrics"]]
    if not sets:
        return "\n".join(lines + ["No metrics: the final evaluation did not finish.", ""])
    lines += ["| metric | unit | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for key, unit in METRIC_UNITS.items():
        if not any(key in report["metrics"][s] for s in sets):
            continue
        values = " | ".join(f"{report['metrics'][s].get(key, float('nan')):.4g}" for s in sets)
        lines.append(f"| {key} | {unit} | {values} |")
    lines += ["", "Reference energies (eV/atom): "
              + ", ".join(f"{k} {v:.6f}" for k, v in report["reference_energies_eV"].items()), ""]
    return "\n".join(lines)


def parity_plot(path: Path, predictions: dict[str, Predictions]) -> None:
    """Energy-per-atom and force-component parity plots, one colour per set."""
    fig, (ax_e, ax_f) = pyplot().subplots(1, 2, figsize=(10, 4.5))
    for name, p in predictions.items():
        m = p.metrics()
        ax_e.scatter(p.energy_per_atom_ref, p.energy_per_atom_pred, s=8, alpha=0.7,
                     label=f"{name}: RMSE {m['energy_rmse_meV_per_atom']:.2f} meV/atom")
        ax_f.scatter(p.forces_ref.ravel(), p.forces_pred.ravel(), s=2, alpha=0.4,
                     label=f"{name}: RMSE {m['force_rmse_eV_per_A']:.3f} eV/Å")
    for ax, unit in ((ax_e, "energy (eV/atom)"), (ax_f, "force component (eV/Å)")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {unit}")
        ax.set_ylabel(f"predicted {unit}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
