"""``pesmith hull``: formation energies of labeled structures and their convex hull, as a table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS, write_json


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``hull`` verb to the ``pesmith`` parser's ``verbs``."""
    hull = verbs.add_parser("hull", help="formation energies (eV/atom) vs bcc Li and diamond Si, and the convex hull")
    hull.add_argument("data", type=Path, help="labeled structures (extxyz or ase.db from `pesmith label`)")
    hull.add_argument("--elements", nargs=2, default=["Li", "Si"], metavar=("A", "B"))
    hull.add_argument("--json", type=Path, help="also write the table to this JSON file")
    hull.add_argument(
        "--references",
        metavar="A=E,B=E",
        help="energies per atom (eV/atom) of the pure elements, e.g. Li=-1.90,Si=-5.42 (default: the lowest"
        " energy per atom among the pure structures in DATA)",
    )
    hull.set_defaults(run=run_hull)


def parse_references(text: str | None, elements: tuple[str, str]) -> dict[str, float]:
    """``--references Li=-1.90,Si=-5.42`` as ``{"Li": -1.9, "Si": -5.42}`` (eV/atom); ``None`` gives ``{}``.

    Raises
    ------
    ConfigError
        If a pair is not ``ELEMENT=NUMBER`` or names an element outside ``elements``.
    """
    if not text:
        return {}
    references: dict[str, float] = {}
    for pair in text.split(","):
        element, _, value = pair.partition("=")
        try:
            references[element.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--references {text!r}: expected ELEMENT=ENERGY pairs (eV/atom) separated by commas,"
                f" e.g. {elements[0]}=-1.90,{elements[1]}=-5.42"
            ) from None
    unknown = sorted(set(references) - set(elements))
    if unknown:
        raise ConfigError(f"--references names {unknown}, not among --elements {' '.join(elements)}")
    return references


def hull_command(
    data_path: Path, elements: tuple[str, str], json_path: Path | None, references: dict[str, float] | None = None
) -> None:
    """``pesmith hull``: print (and with ``json_path`` write) formation energies and the hull;
    ``references`` (eV/atom) replace the lowest-energy pure structures as elemental references."""
    from pesmith.data import check_structure_file, read_dataset
    from pesmith.search.hull import formation_energies
    from pesmith.workflows import check_writable

    check_structure_file(data_path, "DATA argument", paths=ARGUMENT_PATHS)
    if json_path:
        check_writable(json_path, "--json")
    dataset = read_dataset(data_path)
    entries = formation_energies(dataset.structures, dataset.energies, elements, references)
    print_hull(entries, elements[0])
    if json_path:
        write_json(json_path, [e.as_dict() for e in entries])


def print_hull(entries: Sequence, element: str) -> None:
    """Table of :class:`pesmith.search.hull.HullEntry` rows, sorted by Li fraction (energies eV/atom)."""
    print(f"{'formula':<14}{'x_' + element:>8}{'E (eV/atom)':>14}{'E_f (eV/atom)':>15}{'above hull':>12}  on hull")
    for e in sorted(entries, key=lambda e: (e.x, e.formation_energy)):
        print(f"{e.formula:<14}{e.x:>8.3f}{e.energy_per_atom:>14.4f}{e.formation_energy:>15.4f}{e.e_above_hull:>12.4f}  {'yes' if e.on_hull else ''}")


def run_hull(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith hull`` for the parsed ``args``; return the exit code (``registry`` is unused:
    the hull needs no plugin)."""
    elements = tuple(args.elements)
    hull_command(args.data, elements, args.json, parse_references(args.references, elements))
    return 0
