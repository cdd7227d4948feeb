"""``pesmith relax STRUCTURES``: relax structures with a model file or a reference plugin
(:func:`pesmith.simulate.relax.relax`: FIRE, positions or positions and cell, forces below
``--fmax`` and, with ``--cell``, every stress component below ``--smax``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, get_args

import yaml

from pesmith.calculator_settings import DEFAULT_SKIN, Precision
from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS, EXIT_ALL_FAILED


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``relax`` verb to the ``pesmith`` parser's ``verbs``."""
    relax = verbs.add_parser("relax", help="relax structures (positions, or with --cell positions and cell) with a model or a reference")
    relax.add_argument("structures", type=Path, help="extxyz file or ase.db")
    add_calculator_arguments(relax)
    relax.add_argument("--cell", action="store_true", help="relax the cell too (Fréchet cell filter)")
    relax.add_argument("--fmax", type=float, default=0.05, help="eV/Å (default 0.05)")
    relax.add_argument("--smax", type=float, default=0.1, help="GPa, with --cell (default 0.1)")
    relax.add_argument("--steps", type=int, default=500, help="FIRE steps at most (default 500)")
    relax.add_argument("--output", type=Path, help="extxyz of the relaxed structures (default: <structures>_relaxed.xyz)")
    relax.set_defaults(run=run_relax)


def add_calculator_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` (with ``--skin`` and ``--dtype``) or ``--reference`` (with ``--option``): what
    computes energies and forces."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a pesmith model file")
    source.add_argument("--reference", help="a reference plugin kind with an ASE calculator (sevennet, chgnet, xtb, gpaw, ase, morse)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a reference option (value read as YAML), repeatable")
    parser.add_argument("--skin", type=float, help=f"--model: Verlet neighbor-list skin, Å (default {DEFAULT_SKIN}; 0: a new list every call)")
    parser.add_argument("--dtype", choices=get_args(Precision), help="--model: precision of descriptors and models (default float64; float32 is faster)")


def reference_options(pairs: list[str]) -> dict[str, Any]:
    """``["calculator=ase.calculators.emt.EMT", "cutoff=400"]`` as a dict, values read as YAML."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: write KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def run_relax(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith relax`` for the parsed ``args``; return the exit code (1 when every
    structure failed)."""
    from pesmith import ase_files
    from pesmith.atomic_io import atomic_path
    from pesmith.data import check_structure_file, read_structures
    from pesmith.simulate.frames import labeled_frame
    from pesmith.simulate.relax import RelaxSettings, relax
    from pesmith.workflows import check_writable

    check_structure_file(args.structures, "STRUCTURES argument", paths=ARGUMENT_PATHS)
    settings = RelaxSettings(relax="cell" if args.cell else "positions", fmax=args.fmax, smax=args.smax if args.cell else None, steps=args.steps)
    output = args.output or args.structures.with_name(f"{args.structures.stem}_relaxed.xyz")
    check_writable(output, "--output")
    structures = read_structures(args.structures, what="STRUCTURES argument")
    calculator = calculator_of(args, registry)
    relaxed, failed = [], []
    for index, atoms in enumerate(structures):
        started = time.perf_counter()
        atoms.calc = None
        try:
            result = relax(atoms, calculator, settings)
        except Exception as exc:  # not converged (SimulationFailed) or the calculator failed: reported, the rest go on
            failed.append(f"structure {index} ({atoms.get_chemical_formula()}): {exc}".splitlines()[0])
            print(f"{index:>4} {atoms.get_chemical_formula():<14} failed: {failed[-1]}")
            continue
        final = labeled_frame(result.atoms, result.energy, result.forces, result.stress)
        final.info.update(relax_steps=result.steps, max_force_eV_per_A=result.max_force, source_index=index)
        if result.max_stress_GPa is not None:
            final.info["max_stress_GPa"] = result.max_stress_GPa
        relaxed.append(final)
        stress = "" if result.max_stress_GPa is None else f", max stress {result.max_stress_GPa:.3f} GPa"
        print(f"{index:>4} {final.get_chemical_formula():<14} {result.energy / len(final):.5f} eV/atom in {result.steps} steps,"
              f" max force {result.max_force:.4f} eV/Å{stress} ({time.perf_counter() - started:.1f} s)")
    if relaxed:
        output.parent.mkdir(parents=True, exist_ok=True)  # check_writable accepted the folders still to make
        with atomic_path(output) as temporary:
            ase_files.write(temporary, relaxed, format="extxyz")
        print(f"wrote {len(relaxed)} relaxed structures to {output}" + (f"; {len(failed)} failed" if failed else ""))
    return EXIT_ALL_FAILED if failed and not relaxed else 0


def calculator_of(args: argparse.Namespace, registry: Registry):
    """The ASE calculator of ``--model`` or of ``--reference`` with its ``--option`` values."""
    if args.option and args.model:
        raise ConfigError("--option sets reference options; it does not apply to --model")
    if args.reference and (args.skin is not None or args.dtype is not None):
        raise ConfigError("--skin and --dtype set how a --model file is evaluated; they do not apply to --reference")
    if args.model:
        from pesmith.calculator import PesmithCalculator

        return PesmithCalculator.from_file(
            args.model, registry, skin=DEFAULT_SKIN if args.skin is None else args.skin, dtype=args.dtype or "float64"
        )
    from pesmith.config import PluginSettings
    from pesmith.labeling import build_reference

    reference = build_reference(PluginSettings(kind=args.reference, **reference_options(args.option)), registry, "--reference")
    if not reference.has_calculator():
        raise ConfigError(f"--reference {args.reference}: this reference has no ASE calculator to relax with")
    reference.prepare()
    return reference.make_calculator()
