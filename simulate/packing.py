"""Random periodic packings that do not jam, and the minimum-image distance.

:func:`random_cell` packs atoms into a cube: uniform random positions, then the overlaps below
``min_distance`` are removed by minimizing a soft-sphere energy (L-BFGS, :func:`push_apart`),
which works up to packing fractions far beyond where random sequential addition stalls (about
0.38, i.e. 2.1 Å at 12 Å^3/atom; :func:`pesmith.testing.random_positions` already crawls at 15.5).
Every random draw comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list
from scipy.optimize import minimize

from pesmith.errors import ConfigError

# Packing fraction pi d^3 / (6 v) of spheres of diameter d at v Å^3/atom: no disordered packing
# is denser than random close packing (about 0.64; fcc, the densest of all, is 0.7405).
RANDOM_CLOSE_PACKING = 0.64
PUSH_MARGIN = 0.03  # overlaps are removed up to (1 + PUSH_MARGIN) * min_distance


def packing_fraction(volume_per_atom: float, min_distance: float) -> float:
    """Fraction of the volume filled by spheres of diameter ``min_distance`` (Å) at
    ``volume_per_atom`` (Å^3)."""
    return math.pi * min_distance**3 / (6.0 * volume_per_atom)


def random_cell(
    symbols_counts: dict[str, int],
    volume_per_atom: float,
    rng: np.random.Generator,
    min_distance: float = 2.0,
    max_attempts: int = 5,
) -> Atoms:
    """A random periodic packing in a cubic cell, no two atoms closer than ``min_distance``.

    Parameters
    ----------
    symbols_counts
        Atoms per element, e.g. ``{"Li": 15, "Si": 4}``; elements are shuffled over the sites.
    volume_per_atom
        Å^3 per atom; the cube edge is ``(n_atoms * volume_per_atom) ** (1/3)`` Å.
    rng
        Source of every random number (positions, element order).
    min_distance
        Å, between any two atoms including periodic images.
    max_attempts
        Fresh random starts before giving up; each is one bounded L-BFGS minimization.

    Returns
    -------
    Atoms
        Positions wrapped into the cell, ``pbc=True``, no calculator.

    Raises
    ------
    ConfigError
        Counts or volume invalid, a packing fraction above random close packing (such a packing
        cannot be disordered), or no packing found in ``max_attempts`` starts.
    """
    symbols = [s for s, n in symbols_counts.items() for _ in range(int(n))]
    if not symbols or any(int(n) < 0 for n in symbols_counts.values()):
        raise ConfigError(f"random_cell: atom counts must be >= 0 with at least one atom, got {symbols_counts}")
    if not (volume_per_atom > 0 and min_distance > 0):
        raise ConfigError(f"random_cell: volume_per_atom ({volume_per_atom} Å^3) and min_distance ({min_distance} Å) must be > 0")
    fraction = packing_fraction(volume_per_atom, min_distance)
    if fraction > RANDOM_CLOSE_PACKING:
        densest = math.pi * min_distance**3 / (6.0 * RANDOM_CLOSE_PACKING)
        raise ConfigError(
            f"random_cell: min_distance {min_distance} Å at {volume_per_atom} Å^3/atom fills {fraction:.2f} of the"
            f" volume, beyond random close packing ({RANDOM_CLOSE_PACKING}); raise volume_per_atom to at least"
            f" {densest:.1f} Å^3 or lower min_distance"
        )
    n_atoms = len(symbols)
    cell = np.eye(3) * (n_atoms * volume_per_atom) ** (1.0 / 3.0)
    target = min_distance * (1.0 + PUSH_MARGIN)
    closest = 0.0
    for _ in range(max_attempts):
        start = rng.uniform(0.0, 1.0, (n_atoms, 3)) @ cell
        positions = push_apart(start, cell, target)
        closest = min_image_distance(positions, cell, min_distance)
        if closest >= min_distance:
            atoms = Atoms(list(rng.permutation(symbols)), positions=positions, cell=cell, pbc=True)
            atoms.wrap()
            return atoms
    raise ConfigError(
        f"random_cell: no packing of {n_atoms} atoms at {volume_per_atom} Å^3/atom with min_distance {min_distance} Å"
        f" in {max_attempts} attempts (closest pair {closest:.2f} Å, packing fraction {fraction:.2f});"
        " raise volume_per_atom or lower min_distance"
    )


def push_apart(positions: np.ndarray, cell: np.ndarray, distance: float, max_iterations: int = 2000) -> np.ndarray:
    """Positions ``(n, 3)`` (Å) moved to a minimum of ``sum_pairs max(0, distance - r)^2``:
    every pair closer than ``distance`` (Å, periodic images included) pushed apart."""
    pbc = np.array([True, True, True])

    def energy_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = flat.reshape(-1, 3)
        i, vectors = primitive_neighbor_list("iD", pbc, cell, x, distance, self_interaction=False)
        r = np.linalg.norm(vectors, axis=1)  # (n_pairs,), each pair twice
        overlap = distance - r
        gradient = np.zeros_like(x)
        np.add.at(gradient, i, (2.0 * overlap / np.maximum(r, 1e-12))[:, None] * vectors)  # (n, 3)
        return 0.5 * float(np.sum(overlap**2)), gradient.ravel()

    result = minimize(
        energy_and_gradient, positions.ravel(), jac=True, method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": 1e-10, "ftol": 1e-16},
    )
    return result.x.reshape(-1, 3)


def min_image_distance(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> float:
    """Shortest distance (Å) between two atoms or an atom and an image, or ``cutoff`` if none
    is closer than ``cutoff``."""
    d = primitive_neighbor_list("d", np.array([True] * 3), cell, positions, cutoff, self_interaction=False)
    return float(d.min()) if len(d) else float(cutoff)
