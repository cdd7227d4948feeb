"""``pesmith analyze rdf|msd|vdos|sites TRAJECTORY`` and ``pesmith analyze kmc SITES``: analysis
(:mod:`pesmith.analysis`) as CSV tables, a JSON summary and a plot, written atomically beside
``--output``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pesmith.errors import ConfigError, DataError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and its subverbs to the ``pesmith`` parser's ``verbs``."""
    analyze = verbs.add_parser("analyze", help="RDF, diffusion (MSD), vibrational DOS or sites of a mobile species from a trajectory (no model needed)")
    kinds = analyze.add_subparsers(dest="analysis", required=True)
    rdf = kinds.add_parser("rdf", help="partial RDFs g_ab(r) and coordination numbers")
    rdf.add_argument("--r-max", type=float, default=6.0, help="largest distance, Å (default 6)")
    rdf.add_argument("--bins", type=int, default=200, help="histogram bins (default 200)")
    rdf.add_argument("--skin", type=float, default=2.0, help="margin of the reused pair list, Å (default 2; 0: a new list every frame)")
    rdf.add_argument("--neighbors", choices=("ase", "vesin"), default="ase", help="neighbour list (default ase; vesin is faster but imports torch)")
    rdf.add_argument("--workers", type=int, default=1, help="processes, blocks of 500 frames each (default 1)")
    msd = kinds.add_parser("msd", help="mean squared displacement per species and D with a block error bar")
    msd.add_argument("--species", nargs="*", help="chemical symbols (default: all)")
    msd.add_argument("--fit-fs", type=float, nargs=2, metavar=("START", "END"), help="linear-fit window, fs (default 0.1-0.5 of a block)")
    msd.add_argument("--blocks", type=int, default=5, help="blocks for the error bar (default 5)")
    vdos = kinds.add_parser("vdos", help="vibrational density of states from the velocity autocorrelation (frames need momenta)")
    vdos.add_argument("--max-lag-fs", type=float, help="longest VACF lag, fs (default: half the trajectory)")
    sites = kinds.add_parser("sites", help="sites of a mobile species (Li) from an MD trajectory, with the hops seen between them: a kMC site network")
    sites.add_argument("--species", default="Li", help="chemical symbol of the mobile atoms (default Li)")
    sites.add_argument("--spacing", type=float, default=0.2, help="density grid spacing, Å (default 0.2)")
    sites.add_argument("--smoothing", type=float, default=0.3, help="Gaussian width of the density, Å (default 0.3)")
    sites.add_argument("--min-separation", type=float, default=1.2, help="closest two sites may be, Å (default 1.2)")
    sites.add_argument("--radius", type=float, default=0.8, help="a position belongs to its nearest site within this, Å (default 0.8)")
    sites.add_argument("--min-occupancy", type=float, default=0.01, help="fewest atoms per frame a site holds on average (default 0.01)")
    kmc = kinds.add_parser("kmc", help="kinetic Monte Carlo of Li hops between sites (pesmith analyze sites' .xyz) at temperatures -> D, Arrhenius Ea")
    kmc.add_argument("trajectory", metavar="SITES", type=Path, help="the sites: pesmith analyze sites' <stem>.xyz or any structure file of sites")
    kmc.add_argument("--r-cut", type=float, required=True, help="longest hop, Å")
    kmc.add_argument("--barrier", type=float, help="barrier of every hop within --r-cut, eV (with --barriers: of hops not in the table)")
    kmc.add_argument("--barriers", type=Path, help="CSV with columns source,target,barrier_eV (site indices; e.g. from pesmith neb)")
    kmc.add_argument("--temperature", type=float, nargs="+", required=True, help="K; 2 or more give an Arrhenius fit")
    kmc.add_argument("--carriers", type=int, help="carriers on the most occupied sites (default: the sites' total occupancy, rounded)")
    kmc.add_argument("--hops", type=float, default=2000, help="attempted hops per carrier and temperature (default 2000)")
    kmc.add_argument("--nu", type=float, default=1e13, help="attempt frequency, 1/s (default 1e13)")
    kmc.add_argument("--seed", type=int, default=0)
    kmc.add_argument("--output", type=Path, help="stem of the files written (default: <sites>_kmc)")
    for parser in (msd, vdos):
        parser.add_argument("--timestep-fs", type=float, required=True, help="time between stored frames, fs")
    for parser in (rdf, msd, vdos, sites):
        parser.add_argument("trajectory", type=Path, help="frames readable by ase.io (extxyz, ASE .traj, ...)")
        parser.add_argument("--every", type=int, default=1, help="use every n-th frame (default 1)")
        parser.add_argument("--output", type=Path, help="stem of the files written (default: <trajectory>_<analysis>)")
    analyze.set_defaults(run=run_analyze)


def run_analyze(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith analyze`` for the parsed ``args``; return the exit code."""
    from pesmith import ase_files
    from pesmith.data import check_structure_file

    if args.analysis == "kmc":
        check_structure_file(args.trajectory, "SITES argument", paths=ARGUMENT_PATHS)
        return _write_outputs(args.output or args.trajectory.with_name(f"{args.trajectory.stem}_kmc"), *_kmc(ase_files.read(args.trajectory, index=-1), args))
    check_structure_file(args.trajectory, "TRAJECTORY argument", paths=ARGUMENT_PATHS)
    if args.every < 1:
        raise ConfigError(f"--every must be at least 1, got {args.every}")
    frames = ase_files.read(args.trajectory, index=f"::{args.every}")
    stem = args.output or args.trajectory.with_name(f"{args.trajectory.stem}_{args.analysis}")
    step = getattr(args, "timestep_fs", None)
    if step is not None:
        step *= args.every
    return _write_outputs(stem, *ANALYSES[args.analysis](frames, args, step))


def _write_outputs(stem: Path, table: dict[str, np.ndarray], summary: dict[str, Any], plot) -> int:
    """``<stem>.csv``, ``.json``, ``.png`` (and ``.xyz`` of ``summary["structures"]``); the summary's lines on stdout."""
    from pesmith import ase_files

    stem.parent.mkdir(parents=True, exist_ok=True)
    structures = summary.pop("structures", None)
    written = [_write_csv(stem.with_name(stem.name + ".csv"), table), _write_json(stem.with_name(stem.name + ".json"), summary)]
    written.append(plot(stem.with_name(stem.name + ".png")))
    if structures is not None:
        from pesmith.atomic_io import atomic_path

        written.append(stem.with_name(stem.name + ".xyz"))
        with atomic_path(written[-1]) as temporary:
            ase_files.write(temporary, structures, format="extxyz")
    for line in summary.get("lines", []):
        print(line)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _rdf(frames, args, _step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.rdf import coordination_numbers, rdf

    result = rdf(frames, r_max=args.r_max, n_bins=args.bins, neighbors=args.neighbors, skin=args.skin, workers=args.workers)
    cn = coordination_numbers(result)
    table = {"r_A": result.r, "g_total": result.total} | {f"g_{a}-{b}": g for (a, b), g in result.partial.items()}
    lines = [f"CN {a}-{b}: {n:.2f} within {r:.2f} Å" for (a, b), (n, r) in cn.items()]
    summary = {"frames": result.n_frames, "coordination": {f"{a}-{b}": {"CN": n, "r_min_A": r} for (a, b), (n, r) in cn.items()}, "lines": lines}
    return table, summary, lambda path: _plot(path, result.r, {k: v for k, v in table.items() if k.startswith("g_")}, "r (Å)", "g(r)")


def _msd(frames, args, step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.diffusion import A2_PER_FS_TO_CM2_PER_S, diffusion_coefficients

    results = diffusion_coefficients(frames, step, fit_fs=tuple(args.fit_fs) if args.fit_fs else None, n_blocks=args.blocks, species=args.species)
    first = next(iter(results.values()))
    table = {"time_fs": first.time_fs} | {f"msd_{s}_A2": d.msd for s, d in results.items()}
    summary = {
        s: {"D_A2_per_fs": d.D, "D_err_A2_per_fs": d.D_err, "D_cm2_per_s": d.D * A2_PER_FS_TO_CM2_PER_S, "D_err_cm2_per_s": d.D_err * A2_PER_FS_TO_CM2_PER_S, "fit_fs": list(d.fit_fs)}
        for s, d in results.items()
    }
    summary["lines"] = [f"D({s}) = {d.D * A2_PER_FS_TO_CM2_PER_S:.3e} ± {d.D_err * A2_PER_FS_TO_CM2_PER_S:.1e} cm^2/s (fit {d.fit_fs[0]:.0f}-{d.fit_fs[1]:.0f} fs)" for s, d in results.items()]
    return table, summary, lambda path: _plot(path, first.time_fs, {k: v for k, v in table.items() if k != "time_fs"}, "t (fs)", "MSD (Å²)")


def _vdos(frames, args, step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.vibrations import vdos

    result = vdos(frames, step, max_lag_fs=args.max_lag_fs)
    table = {"frequency_THz": result.frequency_THz, "dos_per_THz": result.dos}
    peak = float(result.frequency_THz[np.argmax(result.dos)])
    summary = {"n_atoms": result.n_atoms, "peak_THz": peak, "lines": [f"VDOS of {result.n_atoms} atoms (normalised to 3N), highest peak at {peak:.2f} THz"]}
    return table, summary, lambda path: _plot(path, result.frequency_THz, {"VDOS": result.dos}, "frequency (THz)", "states per THz")


def _sites(frames, args, _step) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.sites import find_sites

    found = find_sites(frames, args.species, spacing=args.spacing, smoothing=args.smoothing, min_separation=args.min_separation,
                       radius=args.radius, min_occupancy=args.min_occupancy)
    order = np.argsort(-found.occupancy, kind="stable")
    table = {"site": np.arange(len(order)), "x_A": found.positions[order, 0], "y_A": found.positions[order, 1], "z_A": found.positions[order, 2],
             "occupancy": found.occupancy[order]}
    hops = found.transitions[np.ix_(order, order)]
    pairs = found.hop_pairs()
    summary = {
        "species": args.species, "frames": found.n_frames, "sites": len(order), "assigned_share": found.assigned,
        "hops_seen": int(hops.sum()), "site_pairs_with_hops": len(pairs), "transitions": hops.tolist(),
        "lines": [f"{len(order)} {args.species} sites from {found.n_frames} frames ({100 * found.assigned:.1f} % of positions within"
                  f" {args.radius} Å of one); {int(hops.sum())} hops seen between {len(pairs)} site pairs"],
    }
    summary["structures"] = found.atoms()[order]  # <stem>.xyz: the sites with their occupancy, a kMC network's input
    return table, summary, lambda path: _plot(path, table["site"], {"occupancy": table["occupancy"]}, "site (by occupancy)", f"{args.species} per frame")


def _kmc(sites, args) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    from pesmith.analysis.diffusion import arrhenius
    from pesmith.analysis.kmc import A2_PER_S_TO_CM2_PER_S, diffusion_at, network_from_table, network_within

    if args.barriers is None and args.barrier is None:
        raise ConfigError("pesmith analyze kmc needs --barrier EV or --barriers CSV (source,target,barrier_eV)")
    network = network_from_table(sites, args.r_cut, _barrier_table(args.barriers), args.barrier) if args.barriers else network_within(sites, args.r_cut, args.barrier)
    occupancy = sites.arrays.get("occupancy", np.zeros(len(sites)))
    carriers = args.carriers if args.carriers is not None else int(round(float(occupancy.sum())))
    if not 1 <= carriers < len(sites):
        raise ConfigError(f"--carriers must be 1 to {len(sites) - 1} (fewer than the {len(sites)} sites), got {carriers}; give --carriers when the sites file has no occupancy")
    occupied = np.argsort(-occupancy, kind="stable")[:carriers]
    rng = np.random.default_rng(args.seed)
    temperatures = sorted(args.temperature)
    D, D_err = np.zeros(len(temperatures)), np.zeros(len(temperatures))  # cm^2/s
    lines = []
    for index, temperature in enumerate(temperatures):
        D_A2, D_err_A2, result = diffusion_at(network, occupied, temperature, args.hops, rng, args.nu)
        D[index], D_err[index] = D_A2 * A2_PER_S_TO_CM2_PER_S, D_err_A2 * A2_PER_S_TO_CM2_PER_S
        lines.append(f"T = {temperature:.0f} K: D = {D[index]:.3e} ± {D_err[index]:.1e} cm^2/s ({result.n_hops} hops of {carriers} carriers)")
    table = {"temperature_K": np.array(temperatures), "D_cm2_per_s": D, "D_err_cm2_per_s": D_err}
    summary: dict[str, Any] = {"sites": len(sites), "hops_in_network": int(network.source.size), "carriers": carriers, "nu_per_s": args.nu}
    if len(set(temperatures)) >= 2:
        fit = arrhenius(temperatures, D, D_err)  # D0 in cm^2/s
        summary |= {"Ea_eV": fit.Ea_eV, "Ea_err_eV": fit.Ea_err_eV, "D0_cm2_per_s": fit.D0, "D0_err_cm2_per_s": fit.D0_err}
        lines.append(f"Arrhenius: Ea = {fit.Ea_eV:.3f} ± {fit.Ea_err_eV:.3f} eV, D0 = {fit.D0:.2e} cm^2/s")
    summary["lines"] = lines
    inverse = 1000.0 / np.array(temperatures)
    return table, summary, lambda path: _plot(path, inverse, {"ln D (cm^2/s)": np.log(D)}, "1000 / T (1/K)", "ln D")


def _barrier_table(path: Path) -> dict[tuple[int, int], float]:
    """``{(source, target): barrier_eV}`` from a CSV with those three columns."""
    import csv

    if not path.is_file():
        raise ConfigError(f"--barriers {path}: no such file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"source", "target", "barrier_eV"} <= set(reader.fieldnames or []):
            raise DataError(f"{path}: needs the columns source,target,barrier_eV, has {reader.fieldnames}")
        try:
            return {(int(row["source"]), int(row["target"])): float(row["barrier_eV"]) for row in reader}
        except ValueError as exc:
            raise DataError(f"{path}: {exc}; source and target are site indices, barrier_eV a number") from None


ANALYSES = {"rdf": _rdf, "msd": _msd, "vdos": _vdos, "sites": _sites}


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
