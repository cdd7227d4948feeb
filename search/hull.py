"""Formation energies and the lower convex hull of a binary system (Li–Si by default).

For a structure with ``n_A`` atoms of A and ``n_B`` of B and total energy ``E`` (eV),

    E_f = (E - n_A e_A - n_B e_B) / (n_A + n_B)        (eV/atom)

where ``e_A``, ``e_B`` are the energies per atom of the elemental references (bcc Li and
diamond Si: by default the lowest energy per atom among the pure structures given). The hull
is the lower convex envelope of ``(x_A, E_f)``; ``e_above_hull`` is the vertical distance to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms
from scipy.spatial import ConvexHull

from pesmith.errors import DataError


@dataclass(frozen=True)
class HullEntry:
    """One structure on the formation-energy diagram (energies in eV/atom)."""

    formula: str
    x: float  # fraction of the first element, n_A / (n_A + n_B)
    energy_per_atom: float
    formation_energy: float
    e_above_hull: float

    @property
    def on_hull(self) -> bool:
        return self.e_above_hull < 1e-6

    def as_dict(self) -> dict:
        return asdict(self) | {"on_hull": self.on_hull}


def elemental_references(
    structures: Sequence[Atoms], energies: Sequence[float], elements: Sequence[str]
) -> dict[str, float]:
    """Lowest energy per atom (eV) among the pure structures of each element.

    Raises
    ------
    DataError
        If an element has no pure structure; the message says what to add.
    """
    references = {}
    for element in elements:
        pure = [e / len(a) for a, e in zip(structures, energies) if set(a.get_chemical_symbols()) == {element}]
        if not pure:
            raise DataError(
                f"no pure {element} structure among the {len(structures)} given; add one (e.g. bcc Li, diamond Si)"
                f" or give its energy per atom (eV/atom) as a reference (`pesmith hull --references {element}=...`)"
            )
        references[element] = min(pure)
    return references


def formation_energies(
    structures: Sequence[Atoms],
    energies: Sequence[float],
    elements: tuple[str, str] = ("Li", "Si"),
    references: Mapping[str, float] | None = None,
) -> list[HullEntry]:
    """Formation energy per atom and distance to the hull of each structure (same order).

    Parameters
    ----------
    structures, energies
        Structures made of ``elements`` only, and their total energies (eV).
    references
        Energies per atom (eV) of some or all of the pure elements; the others come from
        :func:`elemental_references`.
    """
    if len(structures) != len(energies):
        raise DataError(f"{len(structures)} structures but {len(energies)} energies")
    for index, atoms in enumerate(structures):
        other = set(atoms.get_chemical_symbols()) - set(elements)
        if other:
            raise DataError(f"structure {index} ({atoms.get_chemical_formula()}) contains {sorted(other)}; the hull is of {'-'.join(elements)}")
    given = dict(references or {})
    refs = given | elemental_references(structures, energies, [e for e in elements if e not in given])
    a, b = elements
    x, e_f, e_atom = [], [], []
    for atoms, energy in zip(structures, energies):
        symbols = atoms.get_chemical_symbols()
        n_a, n = symbols.count(a), len(symbols)
        x.append(n_a / n)
        e_atom.append(energy / n)
        e_f.append((energy - n_a * refs[a] - (n - n_a) * refs[b]) / n)
    hull = hull_energy(np.array(x), np.array(e_f))
    return [
        HullEntry(atoms.get_chemical_formula(), xi, ei, fi, float(fi - hull(xi)))
        for atoms, xi, ei, fi in zip(structures, x, e_atom, e_f)
    ]


def hull_energy(x: np.ndarray, e_f: np.ndarray):
    """The lower convex hull of ``(x, e_f)`` and the end points ``(0, 0)``, ``(1, 0)``, as a function of x.

    The hull is :class:`scipy.spatial.ConvexHull` of the points plus one point far above them
    (so that collinear inputs still span a plane); its lower facets are those whose outward
    normal points down.
    """
    points = np.column_stack([np.r_[np.asarray(x, float), 0.0, 1.0], np.r_[np.asarray(e_f, float), 0.0, 0.0]])
    above = [0.5, points[:, 1].max() + 1.0 + np.ptp(points[:, 1])]
    hull = ConvexHull(np.vstack([points, above]))
    lower = hull.simplices[hull.equations[:, 1] < 0]
    vertices = np.unique(lower.ravel())
    hx, he = points[vertices[np.argsort(points[vertices, 0])]].T
    return lambda value: float(np.interp(value, hx, he))


@dataclass(frozen=True)
class VoltageStep:
    """The average voltage (V vs Li/Li+) between two neighbouring hull compositions, x = Li per Si."""

    x_low: float
    x_high: float
    voltage: float

    def as_dict(self) -> dict:
        return asdict(self)


def voltage_profile(entries: Sequence[HullEntry]) -> list[VoltageStep]:
    """Average voltages between neighbouring hull vertices of a Li–Si diagram (``x`` of the
    entries is the Li fraction; pure Si is always the first vertex).

    With ``ΔE(x) = E(Li_x Si) - x e_Li - e_Si`` per Si (eV), from the formation energy per atom
    ``E_f`` as ``ΔE = (1 + x) E_f``, the voltage between ``x1 < x2`` is
    ``V = -[E(Li_x2 Si) - E(Li_x1 Si) - (x2 - x1) e_Li] / ((x2 - x1) e) = -(ΔE(x2) - ΔE(x1)) / (x2 - x1)``.
    """
    lowest: dict[float, float] = {0.0: 0.0}
    for entry in entries:
        if entry.on_hull and entry.x < 1.0 - 1e-12:
            x = round(entry.x / (1.0 - entry.x), 10)  # Li per Si
            lowest[x] = min(lowest.get(x, np.inf), (1.0 + x) * entry.formation_energy)
    xs = sorted(lowest)
    return [
        VoltageStep(x1, x2, -(lowest[x2] - lowest[x1]) / (x2 - x1))
        for x1, x2 in zip(xs, xs[1:])
    ]
