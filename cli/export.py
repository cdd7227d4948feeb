"""``pesmith export lammps MODEL DIR``: a model as LAMMPS ML-IAP files and an input snippet."""

from __future__ import annotations

import argparse
from pathlib import Path

from pesmith.registry import Registry


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``export`` verb to the ``pesmith`` parser's ``verbs``."""
    export = verbs.add_parser("export", help="write a model in another code's format (LAMMPS ML-IAP)")
    export.add_argument("format", choices=["lammps"], help="lammps: pair_style mliap (model nn or linear, descriptor sna)")
    export.add_argument("model", type=Path, help="a pesmith model file on the bispectrum descriptor")
    export.add_argument("folder", type=Path, help="where the model, descriptor and input-snippet files go")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith export`` for the parsed ``args``; print the LAMMPS commands; return 0."""
    from pesmith.lammps_export import export_lammps
    from pesmith.model_file import load_potential

    potential, _ = load_potential(args.model, registry)
    written = export_lammps(potential, args.folder, registry, source=str(args.model))
    print(f"wrote {written.model}, {written.descriptor} and {written.snippet}; in a LAMMPS input (units metal):")
    print(written.commands, end="")
    return 0
