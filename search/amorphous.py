"""Compositions and densities of amorphous Li_x Si cells: atoms per element of a cell of about a
given size, and the volume per atom interpolated between crystals. The cells themselves are
packed by :func:`pesmith.simulate.packing.random_cell` and melt-quenched by
:func:`pesmith.simulate.md.melt_quench`.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from pesmith.errors import ConfigError


def composition_counts(x: float, n_atoms: int, elements: tuple[str, str] = ("Li", "Si")) -> dict[str, int]:
    """Atoms per element of a cell of about ``n_atoms`` atoms of composition A_x B (``x`` = n_A / n_B).

    Every size within 25 % of ``n_atoms`` is tried; the one whose ratio is nearest ``x`` wins,
    ties going to the size nearest ``n_atoms`` (x = 3.75 and 32 atoms gives Li30Si8).

    Raises
    ------
    ConfigError
        ``x`` < 0 or not finite, or so large that no cell of that size has one B atom.
    """
    a, b = elements
    if not (np.isfinite(x) and x >= 0):
        raise ConfigError(f"composition x = {x} (n_{a} / n_{b}) must be a finite number >= 0")
    best: tuple[tuple[float, int], dict[str, int]] | None = None
    for n in range(max(1, n_atoms - n_atoms // 4), n_atoms + n_atoms // 4 + 1):
        n_b = round(n / (1.0 + x))
        if n_b < 1:
            continue
        key = (round(abs((n - n_b) / n_b - x), 9), abs(n - n_atoms))
        if best is None or key < best[0]:
            best = (key, {a: n - n_b, b: n_b})
    if best is None:
        raise ConfigError(f"composition x = {x}: a cell of about {n_atoms} atoms has no {b} atom; raise the atoms per cell")
    return best[1]


def interpolated_volume_per_atom(x: float, crystals: list[Atoms], elements: tuple[str, str] = ("Li", "Si")) -> float:
    """Å^3 per atom at composition A_x B, linear in the A fraction ``x / (1 + x)`` between the
    crystals made only of A and B (averaged per composition; constant beyond the outermost).

    Raises
    ------
    ConfigError
        No crystal consists of A and B only.
    """
    points: dict[float, list[float]] = {}
    for crystal in crystals:
        symbols = crystal.get_chemical_symbols()
        if not symbols or not set(symbols) <= set(elements):
            continue
        fraction = round(symbols.count(elements[0]) / len(symbols), 6)
        points.setdefault(fraction, []).append(crystal.get_volume() / len(crystal))
    if not points:
        raise ConfigError(f"no crystal of {elements[0]} and {elements[1]} only to interpolate the volume per atom from; give volume_per_atom (Å^3)")
    fractions = sorted(points)
    return float(np.interp(x / (1.0 + x), fractions, [np.mean(points[f]) for f in fractions]))
