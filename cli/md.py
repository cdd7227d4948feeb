"""``pesmith md STRUCTURE``: molecular dynamics with a model file or a reference plugin
(:func:`pesmith.simulate.dynamics.run_md`), trajectory and log written as it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS
from .relax import add_calculator_arguments, calculator_of

LARGE_TIMESTEP_FS = 5.0  # above it a run needs --large-timestep (H-free Li-Si is stable to about 2-3 fs)


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``md`` verb to the ``pesmith`` parser's ``verbs``."""
    md = verbs.add_parser("md", help="NVE or NVT (Langevin, Bussi) MD with a model or a reference; trajectory and log as it runs")
    md.add_argument("structure", type=Path, help="the starting structure (the last frame of the file)")
    add_calculator_arguments(md)
    md.add_argument("--ensemble", choices=["nve", "langevin", "bussi"], default="langevin")
    md.add_argument("--temperature-K", type=float, default=300.0, help="initial velocities and thermostat target, K (default 300)")
    md.add_argument("--final-K", type=float, help="langevin: ramp the target linearly to this, K (a quench or a heating)")
    md.add_argument("--timestep-fs", type=float, default=1.0, help="fs (default 1)")
    md.add_argument("--large-timestep", action="store_true", help=f"allow a time step above {LARGE_TIMESTEP_FS} fs")
    md.add_argument("--steps", type=int, default=1000, help="MD steps in all (default 1000)")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    md.add_argument("--taut-fs", type=float, default=100.0, help="Bussi time constant, fs (default 100)")
    md.add_argument("--interval", type=int, default=10, help="steps between frames and log lines (default 10)")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--output", type=Path, help="stem of <stem>.xyz (trajectory) and <stem>.csv (log); default <structure>_md")
    md.add_argument("--resume", action="store_true", help="continue from the last frame of the trajectory")
    md.set_defaults(run=run_md_verb)


def run_md_verb(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith md`` for the parsed ``args``; return the exit code."""
    from pydantic import ValidationError

    from pesmith import ase_files
    from pesmith.data import check_structure_file
    from pesmith.simulate.dynamics import MDSettings, run_md

    check_structure_file(args.structure, "STRUCTURE argument", paths=ARGUMENT_PATHS)
    if args.timestep_fs > LARGE_TIMESTEP_FS and not args.large_timestep:
        raise ConfigError(f"--timestep-fs {args.timestep_fs} is above {LARGE_TIMESTEP_FS} fs, where MD of most systems diverges; pass --large-timestep if you mean it")
    try:
        settings = MDSettings(
            ensemble=args.ensemble, timestep_fs=args.timestep_fs, steps=args.steps, temperature_K=args.temperature_K, final_K=args.final_K,
            friction=args.friction, taut_fs=args.taut_fs, interval=args.interval, seed=args.seed,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"pesmith md: {'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}") from None
    stem = args.output or args.structure.with_name(f"{args.structure.stem}_md")
    atoms = ase_files.read(args.structure, index=-1)
    atoms.calc = None
    run = run_md(atoms, calculator_of(args, registry), settings, stem.with_name(stem.name + ".xyz"), stem.with_name(stem.name + ".csv"), resume=args.resume)
    print(f"{run.steps} steps done, {run.frames} frames written to {stem}.xyz, log {stem}.csv;"
          f" mean temperature after the first fifth {run.mean_temperature_K:.1f} K")
    return 0
