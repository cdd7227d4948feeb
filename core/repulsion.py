"""A screened-nuclear core below the shortest distances a potential was trained on.

A machine-learned potential knows nothing about atoms closer than any pair in its training
data; there it may be attractive, and MD at a few thousand K then fuses atoms. As LAMMPS users
overlay ``pair_style zbl inner outer`` on an MLIP (and pacemaker, NequIP or GAP's core potential
do), pesmith adds the Ziegler-Biersack-Littmark (ZBL) universal screened-nuclear repulsion,
switched off smoothly between ``outer - width`` and ``outer``, where ``outer`` of each element
pair is the shortest distance of that pair in the training data. The core is exactly zero on
every training structure, so the fit never sees it.

    E = sum_{i<j} s(r_ij) Z_i Z_j e^2 / (4 pi eps0 r_ij) phi(r_ij / a_ij),
    a_ij = 0.46850 Å / (Z_i^0.23 + Z_j^0.23),
    phi(x) = 0.18175 e^(-3.19980 x) + 0.50986 e^(-0.94229 x) + 0.28022 e^(-0.40290 x) + 0.02817 e^(-0.20162 x),

s = 1 below ``outer - width``, 0 above ``outer``, and the quintic smoothstep 1 - 10t^3 + 15t^4 - 6t^5
(t from 0 to 1 across the switch, continuous to the second derivative) in between. eV and Å.

Reference: J. F. Ziegler, J. P. Biersack and U. Littmark, *The Stopping and Range of Ions in
Solids* (Pergamon, 1985), ch. 2.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from ase.neighborlist import neighbor_list

COULOMB_EV_A = 14.399645  # e^2 / (4 pi eps0), eV Å
ZBL_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)
SWITCH_WIDTH = 0.5  # Å over which the core is switched off below the shortest training distance
UNSEEN_CUTOFF = 4.0  # Å: a pair never this close in the training data gets the covalent fallback
UNSEEN_FRACTION = 0.75  # of the sum of covalent radii: the fallback outer radius


def zbl_energy(r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
    """ZBL pair energy (eV) at distances ``r`` (Å) between atomic numbers ``zi`` and ``zj``."""
    a = 0.46850 / (zi.to(r.dtype) ** 0.23 + zj.to(r.dtype) ** 0.23)
    x = r / a
    phi = sum(c * torch.exp(-e * x) for c, e in zip(ZBL_COEFFICIENTS, ZBL_EXPONENTS))
    return COULOMB_EV_A * zi.to(r.dtype) * zj.to(r.dtype) / r * phi


def smoothstep_off(r: torch.Tensor, inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """1 below ``inner``, 0 above ``outer``, quintic smoothstep between (Å)."""
    t = ((r - inner) / (outer - inner)).clamp(0.0, 1.0)
    return 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t**2)


def core_edge_energies(r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor, outer_table: torch.Tensor) -> torch.Tensor:
    """Switched ZBL energy (eV) of each directed edge: half a pair's, so that summing over both
    directions gives the pair energy once. ``outer_table[Z_i, Z_j]`` is the pair's outer radius
    (Å; 0 for no core)."""
    outer = outer_table[zi, zj]
    active = ((outer > 0) & (r < outer)).nonzero().squeeze(1)
    ra, oa = r[active], outer[active]
    pair = zbl_energy(ra, zi[active], zj[active]) * smoothstep_off(ra, oa - SWITCH_WIDTH, oa)
    return torch.zeros_like(r).index_add(0, active, 0.5 * pair)


def shortest_distances(structures: Iterable[Atoms], species: Iterable[str], cutoff: float) -> dict[tuple[str, str], float]:
    """The shortest distance (Å) of each element pair within ``cutoff`` over ``structures``;
    pairs never closer than ``cutoff`` are left out. Keys are sorted by atomic number."""
    numbers = sorted(atomic_numbers[s] for s in species)
    shortest: dict[tuple[int, int], float] = {}
    for atoms in structures:
        if len(atoms) < 2 and not atoms.pbc.any():
            continue
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        if not len(d):
            continue
        zi, zj = atoms.numbers[i], atoms.numbers[j]
        lo, hi = np.minimum(zi, zj), np.maximum(zi, zj)
        for a in numbers:
            for b in numbers:
                if b < a:
                    continue
                mask = (lo == a) & (hi == b)
                if mask.any():
                    shortest[(a, b)] = min(shortest.get((a, b), np.inf), float(d[mask].min()))
    symbols = {atomic_numbers[s]: s for s in species}
    return {(symbols[a], symbols[b]): r for (a, b), r in sorted(shortest.items())}


def core_radii(structures: Iterable[Atoms], species: Iterable[str]) -> dict[str, float]:
    """The core's outer radius (Å) of every pair of ``species``, keyed ``"Li-Si"`` (sorted by
    atomic number): the pair's shortest distance in ``structures``, or, for a pair never closer
    than :data:`UNSEEN_CUTOFF` there, :data:`UNSEEN_FRACTION` of the sum of covalent radii."""
    species = sorted(species, key=lambda s: atomic_numbers[s])
    seen = shortest_distances(structures, species, UNSEEN_CUTOFF)
    radii = {}
    for k, a in enumerate(species):
        for b in species[k:]:
            fallback = UNSEEN_FRACTION * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
            radii[f"{a}-{b}"] = seen.get((a, b), fallback)
    return radii
