"""NVT MD of amorphous Li_xSi from a finished search: Li diffusion, Arrhenius Ea and RDFs per composition.

``python scripts/lisi_md.py configs/lisi_md.yaml`` takes the output folder of a finished
``pesmith search`` (``search:``; by default the quickstart's, so README command 1 first) and,
for each of ``compositions`` (x in Li_xSi), the search's lowest amorphous structure there
(``hull.json``; the baseline's structures are left out), repeated to ``supercell``. Each cell
runs NVT MD with the search's last model at each of ``temperatures_K``
(:func:`pesmith.simulate.dynamics.run_md`, one run per worker process, one thread each), the
model evaluated as ``calculator:`` says (:class:`pesmith.calculator_settings.CalculatorSettings`:
the Verlet-list skin in Å and the dtype). The
first ``equilibration_ps`` of every run are dropped; from the rest come D_Li with a block error
bar (:func:`pesmith.analysis.diffusion.diffusion_coefficients`), an Arrhenius fit per
composition (:func:`pesmith.analysis.diffusion.arrhenius`) and the partial RDFs with their
first-shell coordination numbers at the lowest temperature (:func:`pesmith.analysis.rdf.rdf`).

Writes ``<output>/md/x<x>_<T>K.xyz`` and ``.csv`` (trajectory and log; a rerun continues an
unfinished run and reuses a finished one), ``results.json``, ``summary.md``, ``diffusion.png``
(D against 1000/T with the fits) and ``rdf.png`` (g_SiSi and g_LiSi per composition). A bad config,
a missing search folder or a composition the search did not reach prints one line on stderr and
exits with 2.

Units: Å, K, fs and ps (MD); D in cm^2/s in the summary, Ea in eV.
"""

from __future__ import annotations

import json
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field

from pesmith import ase_files
from pesmith.analysis.diffusion import A2_PER_FS_TO_CM2_PER_S, arrhenius, diffusion_coefficients
from pesmith.analysis.rdf import coordination_numbers, rdf
from pesmith.atomic_io import write_json_atomic, write_text_atomic
from pesmith.calculator_settings import CalculatorSettings
from pesmith.config import parse_config, resolve_path
from pesmith.errors import ConfigError, PesmithError
from pesmith.parallel import parallel_map
from pesmith.plots import pyplot, save_png
from pesmith.simulate.dynamics import MDSettings, run_md

SAME_X = 1e-6  # Li per Si: compositions closer than this are the same


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class RDFSettings(Section):
    r_max: float = Field(6.0, gt=0, le=20, description="Å")
    bins: int = Field(120, ge=10, le=10_000)


class LiSiMDConfig(Section):
    """The example's config (configs/lisi_md.yaml)."""

    search: Path = Field(description="output folder of a finished pesmith search (hull.json, checkpoint.json, models/)")
    output: Path = Field(description="folder of every output")
    workers: int = Field(1, ge=1, le=64, description="MD runs at once, one process and one thread each")
    compositions: list[float] = Field(min_length=1, description="x in Li_xSi, each one the search reached")
    supercell: tuple[int, int, int] = (1, 1, 1)
    temperatures_K: list[float] = Field(min_length=2, description="K, at least 2 for an Arrhenius fit")
    md: MDSettings = MDSettings(ensemble="bussi", timestep_fs=2.0, steps=3000, interval=10)
    calculator: CalculatorSettings = CalculatorSettings()
    equilibration_ps: float = Field(1.0, ge=0, description="ps dropped from the start of every run")
    n_blocks: int = Field(5, ge=2, le=100, description="blocks of the D error bar")
    rdf: RDFSettings = RDFSettings()


def load_config(path: Path) -> LiSiMDConfig:
    """Read and validate the config; paths resolve against its folder.

    Raises
    ------
    ConfigError
        Naming the file and the key.
    """
    config = parse_config(path, LiSiMDConfig)
    base = path.resolve().parent
    config.search, config.output = resolve_path(base, config.search), resolve_path(base, config.output)
    if any(n < 1 for n in config.supercell):
        raise ConfigError(f"{path}: key 'supercell': repeats must be >= 1, not {list(config.supercell)}")
    if len(set(config.temperatures_K)) < 2 or min(config.temperatures_K) <= 0:
        raise ConfigError(f"{path}: key 'temperatures_K': at least 2 different temperatures above 0 K for the Arrhenius fit")
    if config.md.final_K is not None:
        raise ConfigError(f"{path}: key 'md.final_K': runs here are at constant temperature; drop it")
    if config.equilibration_ps * 1000 >= config.md.steps * config.md.timestep_fs:
        raise ConfigError(f"{path}: key 'equilibration_ps': {config.equilibration_ps} ps is the whole run ({config.md.steps} x {config.md.timestep_fs} fs); raise md.steps")
    for name in ("hull.json", "checkpoint.json"):
        if not (config.search / name).is_file():
            raise ConfigError(f"{path}: key 'search': {config.search / name} does not exist; run the search first (README command 1 for the quickstart)")
    return config


def search_cells(config: LiSiMDConfig, path: Path) -> dict[float, tuple[Atoms, dict[str, Any]]]:
    """Per composition, the search's lowest amorphous structure (repeated to ``supercell``) and its
    ``hull.json`` entry.

    Raises
    ------
    ConfigError
        A composition with no amorphous structure of the search.
    """
    entries = json.loads((config.search / "hull.json").read_text())["entries"]
    amorphous = [e for e in entries if e["kind"] not in ("crystal", "baseline") and e["li_per_si"] is not None]
    cells = {}
    for x in config.compositions:
        here = [e for e in amorphous if abs(e["li_per_si"] - x) < SAME_X]
        if not here:
            reached = ", ".join(f"{v:g}" for v in sorted({e["li_per_si"] for e in amorphous}, reverse=True))
            raise ConfigError(f"{path}: key 'compositions': the search in {config.search} has no amorphous structure at x = {x:g} (it has {reached})")
        lowest = min(here, key=lambda e: e["energy_per_atom_eV"])
        atoms = ase_files.read(config.search / lowest["structure"], index=-1)
        atoms.calc = None
        cells[x] = (atoms.repeat(config.supercell), lowest)
    return cells


def search_model(config: LiSiMDConfig) -> Path:
    """The search's last model file."""
    model = config.search / json.loads((config.search / "checkpoint.json").read_text())["model"]
    if not model.is_file():
        raise ConfigError(f"{config.search / 'checkpoint.json'}: its model {model} does not exist")
    return model


def run_at(model: Path, settings: MDSettings, calculator: CalculatorSettings, folder: Path, task: tuple[float, Atoms, float]) -> float:
    """In a worker: NVT MD of one cell at one temperature into ``folder/x<x>_<T>K.xyz`` (continued
    if unfinished), the model evaluated as ``calculator`` says; the mean temperature (K) of the run
    after its first fifth."""
    import torch

    from pesmith.calculator import PesmithCalculator

    torch.set_num_threads(1)
    x, atoms, temperature = task
    trajectory = folder / f"x{x:g}_{temperature:g}K.xyz"
    run = run_md(
        atoms, PesmithCalculator.from_file(model, **calculator.model_dump()), settings.model_copy(update={"temperature_K": temperature}),
        trajectory, trajectory.with_suffix(".csv"), resume=trajectory.exists(),
    )
    return run.mean_temperature_K


def analyse(config: LiSiMDConfig, x: float, temperature: float) -> tuple[dict[str, Any], list[Atoms]]:
    """D_Li of one run after equilibration, and its production frames."""
    md = config.md
    frames = ase_files.read(config.output / "md" / f"x{x:g}_{temperature:g}K.xyz", index=":", format="extxyz")
    frame_fs = md.timestep_fs * md.interval
    production = frames[int(round(config.equilibration_ps * 1000 / frame_fs)):]
    fit = diffusion_coefficients(production, frame_fs, n_blocks=config.n_blocks, species=["Li"], remove_drift=True)["Li"]
    return {"T_K": temperature, "D_A2_per_fs": fit.D, "D_err_A2_per_fs": fit.D_err, "fit_fs": list(fit.fit_fs),
            "msd_end_A2": float(fit.msd[-1]), "production_ps": float(len(production) * frame_fs / 1000)}, production


def fit_or_reason(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Arrhenius Ea (eV) and D0 (cm^2/s) over the runs, or why there is none (a D <= 0)."""
    try:
        fit = arrhenius([r["T_K"] for r in runs], [r["D_A2_per_fs"] for r in runs], [r["D_err_A2_per_fs"] for r in runs])
    except PesmithError as exc:
        return {"reason": str(exc).splitlines()[0]}
    return {"Ea_eV": fit.Ea_eV, "Ea_err_eV": fit.Ea_err_eV, "D0_cm2_per_s": fit.D0 * A2_PER_FS_TO_CM2_PER_S}


def rdf_summary(frames: list[Atoms], settings: RDFSettings) -> tuple[dict[str, Any], Any]:
    """First peak (Å) and coordination number of every partial RDF, and the RDF itself."""
    result = rdf(frames, settings.r_max, settings.bins)
    cn = coordination_numbers(result)
    pairs = {}
    for (a, b), g in result.partial.items():
        entry: dict[str, Any] = {"peak_A": float(result.r[int(np.argmax(g))])}
        if (a, b) in cn and not math.isnan(cn[(a, b)][0]):
            entry["cn"], entry["r_min_A"] = float(cn[(a, b)][0]), float(cn[(a, b)][1])
        pairs[f"{a}-{b}"] = entry
    return pairs, result


def run(config: LiSiMDConfig, path: Path, echo=print) -> dict[str, Any]:
    """Every MD run, then the analysis; the results (also written to ``results.json``)."""
    started = time.perf_counter()
    cells = search_cells(config, path)
    model = search_model(config)
    folder = config.output / "md"
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [(x, atoms, T) for x, (atoms, _) in cells.items() for T in config.temperatures_K]
    echo(f"{len(tasks)} NVT runs of {config.md.steps} steps ({config.md.steps * config.md.timestep_fs / 1000:g} ps) with {model.name}, {config.workers} at a time")
    mean_K = {tasks[i][::2]: T for i, T in parallel_map(partial(run_at, model, config.md, config.calculator, folder), tasks, workers=config.workers, description="MD")}  # by (x, T)
    md_time = time.perf_counter() - started
    compositions, rdfs = [], {}
    for x, (atoms, entry) in cells.items():
        runs = []
        for T in config.temperatures_K:
            result, production = analyse(config, x, T)
            result["mean_T_K"] = mean_K[(x, T)]
            runs.append(result)
            if T == min(config.temperatures_K):
                pairs, rdfs[x] = rdf_summary(production, config.rdf)
        compositions.append({
            "x": x, "atoms": len(atoms), "formula": atoms.get_chemical_formula(), "structure": str(config.search / entry["structure"]),
            "origin": entry["origin"], "formation_energy_eV_per_atom": entry["formation_energy_eV_per_atom"],
            "runs": runs, "arrhenius": fit_or_reason(runs), "rdf_lowest_T": pairs,
        })
    results = {"model": str(model), "md_time_s": round(md_time, 1), "time_s": round(time.perf_counter() - started, 1), "compositions": compositions}
    write_json_atomic(config.output / "results.json", results)
    write_text_atomic(config.output / "summary.md", summary(results))
    plot(results, rdfs, config.output)
    return results


def summary(results: dict[str, Any]) -> str:
    """One table row per composition and temperature, as markdown."""
    lines = [f"# Li_xSi NVT MD ({results['model']}; {results['time_s']:.0f} s)", "",
             "| x | atoms | T (K) | mean T (K) | D_Li (cm^2/s) | Ea (eV) | Si-Si peak (Å), CN | Li-Si CN |", "|---|---|---|---|---|---|---|---|"]
    for c in results["compositions"]:
        fit = c["arrhenius"]
        ea = f"{fit['Ea_eV']:.2f} ± {fit['Ea_err_eV'] or float('nan'):.2f}" if "Ea_eV" in fit else f"no fit: {fit['reason']}"
        sisi, lisi = c["rdf_lowest_T"].get("Si-Si", {}), c["rdf_lowest_T"].get("Li-Si", {})
        shell = f"{sisi.get('peak_A', float('nan')):.2f}, {sisi.get('cn', float('nan')):.2f}"
        for k, r in enumerate(c["runs"]):
            D = f"{_cm2(r['D_A2_per_fs']):.2e} ± {_cm2(r['D_err_A2_per_fs']):.1e}"
            if k == 0:
                lines.append(f"| {c['x']:g} | {c['atoms']} | {r['T_K']:g} | {r['mean_T_K']:.0f} | {D} | {ea} | {shell} | {lisi.get('cn', float('nan')):.2f} |")
            else:
                lines.append(f"| | | {r['T_K']:g} | {r['mean_T_K']:.0f} | {D} | | | |")
    return "\n".join(lines) + "\n"


def _cm2(D_A2_per_fs: float | None) -> float:
    """Å^2/fs to cm^2/s (NaN for a missing error bar)."""
    return float("nan") if D_A2_per_fs is None else D_A2_per_fs * A2_PER_FS_TO_CM2_PER_S


def plot(results: dict[str, Any], rdfs: dict[float, Any], output: Path) -> None:
    """``diffusion.png`` (D_Li against 1000/T, with the fits) and ``rdf.png`` (g_SiSi, g_LiSi)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for c in results["compositions"]:
        T = np.array([r["T_K"] for r in c["runs"]])
        D = np.array([r["D_A2_per_fs"] for r in c["runs"]]) * A2_PER_FS_TO_CM2_PER_S
        err = np.array([r["D_err_A2_per_fs"] for r in c["runs"]]) * A2_PER_FS_TO_CM2_PER_S
        shown = D > 0
        line = ax.errorbar(1000 / T[shown], D[shown], yerr=err[shown], fmt="o", label=f"x = {c['x']:g}")
        fit = c["arrhenius"]
        if "Ea_eV" in fit:
            grid = np.linspace(T.min(), T.max(), 50)
            ax.plot(1000 / grid, fit["D0_cm2_per_s"] * np.exp(-fit["Ea_eV"] / (8.617333262e-5 * grid)), color=line[0].get_color(),
                    label=f"Ea {fit['Ea_eV']:.2f} eV")
    ax.set(yscale="log", xlabel="1000 / T (1/K)", ylabel="D_Li (cm$^2$/s)", title="Li diffusion in amorphous Li$_x$Si")
    ax.legend(fontsize=7)
    save_png(fig, output / "diffusion.png")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    for x, result in rdfs.items():
        for ax, pair in zip(axes, (("Si", "Si"), ("Li", "Si"))):
            if pair in result.partial:
                ax.plot(result.r, result.partial[pair], label=f"x = {x:g}")
    for ax, name in zip(axes, ("Si-Si", "Li-Si")):
        ax.set(xlabel="r (Å)", ylabel=f"g$_{{{name}}}$(r)", title=f"{name}, lowest temperature")
        ax.legend(fontsize=7)
    save_png(fig, output / "rdf.png")


def main(argv: list[str] | None = None) -> int:
    """``python scripts/lisi_md.py CONFIG``: 0, or 2 with one line on stderr."""
    from pesmith.cli.common import config_script_main

    return config_script_main(__doc__.splitlines()[0], lambda path: summary(run(load_config(path), path)), argv)


if __name__ == "__main__":
    sys.exit(main())
