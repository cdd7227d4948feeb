"""``pesmith vacancy STRUCTURE``: Li vacancy formation energies with a model file or a reference
plugin (:func:`pesmith.simulate.vacancy.vacancy_formation`); writes ``vacancies.csv`` and
``vacancies.json`` to ``--output``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
from pathlib import Path

from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS
from .relax import add_calculator_arguments, calculator_of


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``vacancy`` verb to the ``pesmith`` parser's ``verbs``."""
    vacancy = verbs.add_parser("vacancy", help="Li vacancy formation energies (relaxed, fixed cell) with a model or a reference")
    vacancy.add_argument("structure", type=Path, help="the bulk supercell (the last frame of the file)")
    add_calculator_arguments(vacancy)
    vacancy.add_argument("--mu-li", type=float, help="Li chemical potential, eV/atom (default: relaxed bcc Li with the same calculator)")
    vacancy.add_argument("--sites", default="all", help="'all' (one Li site of each class of equivalent sites) or 0-based indices i,j,k (default all)")
    vacancy.add_argument("--fmax", type=float, default=0.01, help="eV/Å, every relaxation (default 0.01)")
    vacancy.add_argument("--steps", type=int, default=1000, help="FIRE steps at most per relaxation (default 1000)")
    vacancy.add_argument("--output", type=Path, required=True, help="folder of vacancies.csv and vacancies.json")
    vacancy.set_defaults(run=run_vacancy)


def run_vacancy(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith vacancy`` for the parsed ``args``; return the exit code."""
    from pydantic import ValidationError

    from pesmith import ase_files
    from pesmith.atomic_io import write_text_atomic
    from pesmith.data import check_structure_file
    from pesmith.errors import DataError
    from pesmith.simulate.relax import RelaxSettings
    from pesmith.simulate.vacancy import Vacancy, vacancy_formation
    from pesmith.workflows import check_writable

    check_structure_file(args.structure, "STRUCTURE argument", paths=ARGUMENT_PATHS)
    try:
        settings = RelaxSettings(fmax=args.fmax, steps=args.steps)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"pesmith vacancy: --{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    sites = None if args.sites == "all" else _indices(args.sites)
    check_writable(args.output / "vacancies.csv", "--output")
    bulk = ase_files.read(args.structure, index=-1)
    bulk.calc = None
    if "Li" not in bulk.symbols:
        raise DataError(f"STRUCTURE {args.structure} ({bulk.get_chemical_formula()}) has no Li atom: give a structure with Li to remove")
    vacancies = vacancy_formation(bulk, calculator_of(args, registry), sites, "Li", args.mu_li, settings)
    columns = [field.name for field in fields(Vacancy)]
    rows = [",".join(str(getattr(v, name)) for name in columns) for v in vacancies]
    args.output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output / "vacancies.csv", "\n".join([",".join(columns), *rows]) + "\n")
    write_text_atomic(args.output / "vacancies.json", json.dumps({"structure": str(args.structure), "units": "eV", "vacancies": [asdict(v) for v in vacancies]}, indent=2))
    for v in vacancies:
        print(f"Li site {v.site:>4} (x{v.multiplicity}): E_f {v.formation_energy:.4f} eV (mu_Li {v.chemical_potential:.4f} eV, {v.steps} steps)")
    print(f"wrote {len(vacancies)} vacancies to {args.output}/vacancies.csv and vacancies.json")
    return 0


def _indices(text: str) -> list[int]:
    """``"3,7,12"`` as ``[3, 7, 12]``."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--sites {text!r}: write 'all' or 0-based atom indices separated by commas, e.g. 0,5,12") from None
