"""``pesmith analyze rdf|msd|vdos TRAJECTORY``: trajectory analysis (:mod:`pesmith.analysis`) as
CSV tables, a JSON summary and a plot, written atomically beside ``--output``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and its subverbs to the ``pesmith`` parser's ``verbs``."""
    analyze = verbs.add_parser("analyze", help="RDF, diffusion (MSD) or vibrational DOS of a trajectory (no model needed)")
    kinds = analyze.add_subparsers(dest="analysis", required=True)
    rdf = kinds.add_parser("rdf", help="partial RDFs g_ab(r) and coordination numbers")
    rdf.add_argument("--r-max", type=float, default=6.0, help="largest distance, Å (default 6)")
    rdf.add_argument("--bins", type=int, default=200, help="histogram bins (default 200)")
    msd = kinds.add_parser("msd", help="mean squared displacement per species and D with a block error bar")
    msd.add_argument("--species", nargs="*", help="chemical symbols (default: all)")
    msd.add_argument("--fit-fs", type=float, nargs=2, metavar=("START", "END"), help="linear-fit window, fs (default 0.1-0.5 of a block)")
    msd.add_argument("--blocks", type=int, default=5, help="blocks for the error bar (default 5)")
    vdos = kinds.add_parser("vdos", help="vibrational density of states from the velocity autocorrelation (frames need momenta)")
    vdos.add_argument("--max-lag-fs", type=float, help="longest VACF lag, fs (default: half the trajectory)")
    for parser in (msd, vdos):
        parser.add_argument("--timestep-fs", type=float, required=True, help="time between stored frames, fs")
    for parser in (rdf, msd, vdos):
        parser.add_argument("trajectory", type=Path, help="frames readable by ase.io (extxyz, ASE .traj, ...)")
        parser.add_argument("--every", type=int, default=1, help="use every n-th frame (default 1)")
        parser.add_argument("--output", type=Path, help="stem of the files written (default: <trajectory>_<analysis>)")
    analyze.set_defaults(run=run_analyze)


def run_analyze(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith analyze`` for the parsed ``args``; return the exit code."""
    from pesmith import ase_files
    from pesmith.data import check_structure_file

    check_structure_file(args.trajectory, "TRAJECTORY argument", paths=ARGUMENT_PATHS)
    if args.every < 1:
        raise ConfigError(f"--every must be at least 1, got {args.every}")
    frames = ase_files.read(args.trajectory, index=f"::{args.every}")
    stem = args.output or args.trajectory.with_name(f"{args.trajectory.stem}_{args.analysis}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    step = getattr(args, "timestep_fs", None)
    if step is not None:
        step *= args.every
    table, summary, plot = ANALYSES[args.analysis](frames, args, step)
    written = [_write_csv(stem.with_name(stem.name + ".csv"), table), _write_json(stem.with_name(stem.name + ".json"), summary)]
    written.append(plot(stem.with_name(stem.name + ".png")))
    for line in summary.get("lines", []):
        print(line)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _rdf(frames, args, _step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.rdf import coordination_numbers, rdf

    result = rdf(frames, r_max=args.r_max, n_bins=args.bins)
    cn = coordination_numbers(result)
    table = {"r_A": result.r, "g_total": result.total} | {f"g_{a}-{b}": g for (a, b), g in result.partial.items()}
    lines = [f"CN {a}-{b}: {n:.2f} within {r:.2f} Å" for (a, b), (n, r) in cn.items()]
    summary = {"frames": result.n_frames, "coordination": {f"{a}-{b}": {"CN": n, "r_min_A": r} for (a, b), (n, r) in cn.items()}, "lines": lines}
    return table, summary, lambda path: _plot(path, result.r, {k: v for k, v in table.items() if k.startswith("g_")}, "r (Å)", "g(r)")


def _msd(frames, args, step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.diffusion import diffusion_coefficients

    results = diffusion_coefficients(frames, step, fit_fs=tuple(args.fit_fs) if args.fit_fs else None, n_blocks=args.blocks, species=args.species)
    first = next(iter(results.values()))
    table = {"time_fs": first.time_fs} | {f"msd_{s}_A2": d.msd for s, d in results.items()}
    to_cm2_s = 1e-16 / 1e-15  # Å^2/fs -> cm^2/s
    summary = {
        s: {"D_A2_per_fs": d.D, "D_err_A2_per_fs": d.D_err, "D_cm2_per_s": d.D * to_cm2_s, "D_err_cm2_per_s": d.D_err * to_cm2_s, "fit_fs": list(d.fit_fs)}
        for s, d in results.items()
    }
    summary["lines"] = [f"D({s}) = {d.D * to_cm2_s:.3e} ± {d.D_err * to_cm2_s:.1e} cm^2/s (fit {d.fit_fs[0]:.0f}-{d.fit_fs[1]:.0f} fs)" for s, d in results.items()]
    return table, summary, lambda path: _plot(path, first.time_fs, {k: v for k, v in table.items() if k != "time_fs"}, "t (fs)", "MSD (Å²)")


def _vdos(frames, args, step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.vibrations import vdos

    result = vdos(frames, step, max_lag_fs=args.max_lag_fs)
    table = {"frequency_THz": result.frequency_THz, "dos_per_THz": result.dos}
    peak = float(result.frequency_THz[np.argmax(result.dos)])
    summary = {"n_atoms": result.n_atoms, "peak_THz": peak, "lines": [f"VDOS of {result.n_atoms} atoms (normalised to 3N), highest peak at {peak:.2f} THz"]}
    return table, summary, lambda path: _plot(path, result.frequency_THz, {"VDOS": result.dos}, "frequency (THz)", "states per THz")


ANALYSES = {"rdf": _rdf, "msd": _msd, "vdos": _vdos}


def _write_csv(path: Path, table: dict[str, np.ndarray]) -> Path:
    from pesmith.atomic_io import write_text_atomic

    rows = np.column_stack(list(table.values()))
    lines = [",".join(table)] + [",".join(f"{v:.8g}" for v in row) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _write_json(path: Path, summary: dict[str, Any]) -> Path:
    from pesmith.atomic_io import write_text_atomic

    write_text_atomic(path, json.dumps({k: v for k, v in summary.items() if k != "lines"}, indent=2))
    return path


def _plot(path: Path, x: np.ndarray, curves: dict[str, np.ndarray], xlabel: str, ylabel: str) -> Path:
    from pesmith.plots import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(6, 4))
    for name, y in curves.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
