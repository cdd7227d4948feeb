"""``pesmith neb INITIAL FINAL``: the climbing-image NEB barrier between two structures with a
model file or a reference plugin (:func:`pesmith.simulate.neb.run_neb`); writes ``band.xyz``,
``neb.json`` and ``neb.png`` to ``--output``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .common import ARGUMENT_PATHS, EXIT_ALL_FAILED
from .relax import add_calculator_arguments, calculator_of


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``neb`` verb to the ``pesmith`` parser's ``verbs``."""
    neb = verbs.add_parser("neb", help="climbing-image NEB barrier between two structures with a model or a reference")
    neb.add_argument("initial", type=Path, help="the initial structure (the last frame of the file)")
    neb.add_argument("final", type=Path, help="the final structure: the same atoms in the same order")
    add_calculator_arguments(neb)
    neb.add_argument("--images", type=int, default=5, help="images between the endpoints (default 5)")
    neb.add_argument("--fmax", type=float, default=0.05, help="eV/Å, for the band and the endpoints (default 0.05)")
    neb.add_argument("--steps", type=int, default=500, help="FIRE steps at most, for the band (in all) and each endpoint (default 500)")
    neb.add_argument("--spring", type=float, default=0.1, help="spring constant between images, eV/Å^2 (default 0.1)")
    neb.add_argument("--idpp", action="store_true", help="interpolate the first band with IDPP instead of a straight line")
    neb.add_argument("--no-relax-endpoints", action="store_true", help="take the endpoints as they are")
    neb.add_argument("--output", type=Path, required=True, help="folder of band.xyz, neb.json and neb.png")
    neb.add_argument("--resume", action="store_true", help="continue from the images of <output>/band.xyz")
    neb.set_defaults(run=run_neb_verb)


def run_neb_verb(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``pesmith neb`` for the parsed ``args``; return the exit code (1 when the band did not
    converge in ``--steps``)."""
    from pydantic import ValidationError

    from pesmith import ase_files
    from pesmith.atomic_io import write_text_atomic
    from pesmith.data import check_structure_file
    from pesmith.simulate.neb import NEBSettings, run_neb
    from pesmith.workflows import check_writable

    check_structure_file(args.initial, "INITIAL argument", paths=ARGUMENT_PATHS)
    check_structure_file(args.final, "FINAL argument", paths=ARGUMENT_PATHS)
    try:
        settings = NEBSettings(images=args.images, fmax=args.fmax, steps=args.steps, spring=args.spring, idpp=args.idpp, relax_endpoints=not args.no_relax_endpoints)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"pesmith neb: --{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}") from None
    band = args.output / "band.xyz"
    check_writable(band, "--output")
    initial, final = (ase_files.read(path, index=-1) for path in (args.initial, args.final))
    result = run_neb(initial, final, calculator_of(args, registry), settings, band, resume=args.resume, names=(f"INITIAL {args.initial}", f"FINAL {args.final}"))
    relative = result.energies - result.energies[0]
    write_text_atomic(args.output / "neb.json", json.dumps({
        "barrier_forward_eV": result.barrier_forward,
        "barrier_backward_eV": result.barrier_backward,
        "converged": result.converged,
        "steps": result.steps,
        "max_force_eV_per_A": result.max_force,
        "fmax_eV_per_A": settings.fmax,
        "climbing_image": result.climbing_image,
        "energies_eV": result.energies.tolist(),
        "reaction_coordinate_A": result.reaction_coordinate.tolist(),
    }, indent=2))
    _plot(args.output / "neb.png", result.reaction_coordinate, relative, result.climbing_image)
    state = f"converged in {result.steps} steps" if result.converged else f"NOT converged in {result.steps} steps (max force {result.max_force:.3f} > {settings.fmax} eV/Å; --resume with more --steps)"
    print(f"barrier {result.barrier_forward:.4f} eV forward, {result.barrier_backward:.4f} eV backward, {state}; wrote band.xyz, neb.json, neb.png to {args.output}")
    return 0 if result.converged else EXIT_ALL_FAILED


def _plot(path: Path, coordinate, energies, climbing: int) -> None:
    """Energy (eV, relative to the initial image) against the reaction coordinate (Å)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pesmith.atomic_io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(coordinate, energies, "o-")
    ax.plot(coordinate[climbing], energies[climbing], "r*", markersize=12, label="climbing image")
    ax.set_xlabel("reaction coordinate (Å)")
    ax.set_ylabel("energy - E(initial) (eV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=120, format="png")
    plt.close(fig)
