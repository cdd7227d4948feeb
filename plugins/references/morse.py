"""A cheap analytic Li–Si reference: Morse pair potentials with a smooth cutoff.

ASE's EMT has no Li or Si parameters, so fast tests and pipeline checks use this instead. It
is **not** a physical model of Li–Si (a pair potential cannot stabilise diamond Si); it gives
consistent energies, forces and stress in microseconds per atom.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers

from pesmith.errors import LabelingFailed, ReferenceSetupError
from pesmith.structures import neighbor_pairs

from .base import CalculatorReference

# (D eV, alpha 1/Å, r0 Å) per pair: r0 near the PBE nearest-neighbour distances (Li bcc 2.97 Å,
# Si diamond 2.37 Å, Li–Si in Li15Si4 about 2.6 Å). The Li–Si depth makes the formation energies
# of the bundled Li12Si7, Li13Si4 and Li15Si4 at their PBE geometries -0.31 to -0.35 eV/atom,
# the magnitude DFT gives; relaxed with this potential they drift far from the PBE structures.
DEFAULT_PAIRS: dict[str, tuple[float, float, float]] = {
    "Li-Li": (0.15, 1.0, 3.0),
    "Li-Si": (0.3, 1.2, 2.6),
    "Si-Si": (0.9, 1.4, 2.35),
}


class MorseCalculator(Calculator):
    r"""Sum of Morse pair energies with a quintic switch to zero between ``cutoff - width`` and ``cutoff``.

    .. math::

        E = \sum_{i<j} D_{ab} \left[e^{-2\alpha_{ab}(r_{ij}-r_{0,ab})} - 2 e^{-\alpha_{ab}(r_{ij}-r_{0,ab})}\right] S(r_{ij}),
        \qquad S(x) = 1 - 10x^3 + 15x^4 - 6x^5,\; x = \frac{r - (r_c - w)}{w} \in [0, 1]

    Energy in eV, forces in eV/Å, stress in eV/Å^3 (ASE sign: positive = tensile).
    ``pairs`` maps ``"A-B"`` to ``(D eV, alpha 1/Å, r0 Å)``; a pair that is not listed does not
    interact. A larger ``cutoff`` (Å) costs more neighbours and changes the energies less.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters = {"pairs": DEFAULT_PAIRS, "cutoff": 6.0, "width": 1.0}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        cutoff, width = float(self.parameters.cutoff), float(self.parameters.width)
        table = pair_table(self.parameters.pairs)  # (119, 119, 3)
        i, j, shifts = neighbor_pairs(self.atoms, cutoff)  # full list: each pair twice (vesin, about 100x ase's on small cells)
        vectors = self.atoms.positions[j] - self.atoms.positions[i] + shifts @ self.atoms.cell.array
        d = np.linalg.norm(vectors, axis=1)
        numbers = self.atoms.numbers
        depth, alpha, r0 = table[numbers[i], numbers[j]].T  # (n_pairs,) each
        decay = np.exp(-alpha * (d - r0))
        morse = depth * (decay**2 - 2.0 * decay)
        dmorse = depth * (-2.0 * alpha * decay**2 + 2.0 * alpha * decay)  # dE/dr, eV/Å
        x = np.clip((d - (cutoff - width)) / width, 0.0, 1.0)
        switch = 1.0 - 10.0 * x**3 + 15.0 * x**4 - 6.0 * x**5
        dswitch = (-30.0 * x**2 + 60.0 * x**3 - 30.0 * x**4) / width
        energy = 0.5 * np.sum(morse * switch)
        dphi = dmorse * switch + morse * dswitch  # (n_pairs,) eV/Å
        pair_force = (dphi / d)[:, None] * vectors  # (n_pairs, 3): dphi/dr * unit vector i->j
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, pair_force)  # F_i = sum_j phi'(r_ij) r_ij_hat
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if self.atoms.cell.rank == 3:
            virial = 0.5 * pair_force.T @ vectors  # (3, 3) dE/d(strain), eV
            stress = virial / self.atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]


def pair_table(pairs: Mapping[str, Sequence[float]]) -> np.ndarray:
    """``(119, 119, 3)`` array of (D, alpha, r0) indexed by atomic numbers; zeros elsewhere."""
    table = np.zeros((119, 119, 3))
    table[..., 2] = 1.0  # r0 of a non-interacting pair (D = 0): any finite value
    for key, values in pairs.items():
        a, b = key.split("-")
        table[atomic_numbers[a], atomic_numbers[b]] = table[atomic_numbers[b], atomic_numbers[a]] = values
    return table


class Morse(CalculatorReference):
    """Morse pair potentials for Li–Si: an analytic reference for tests (not physical)."""

    def __init__(self, pairs: Mapping[str, Sequence[float]] | None = None, cutoff: float = 6.0, width: float = 1.0):
        self.pairs = {key: tuple(float(v) for v in values) for key, values in (pairs or DEFAULT_PAIRS).items()}
        self.cutoff = float(cutoff)
        self.width = float(width)
        for key, values in self.pairs.items():
            symbols = key.split("-")
            if len(symbols) != 2 or any(s not in atomic_numbers for s in symbols) or len(values) != 3:
                raise ReferenceSetupError(
                    f"morse: pair {key!r}: {values} is invalid; write 'A-B': [D_eV, alpha_per_A, r0_A], e.g. 'Li-Si': [0.55, 1.2, 2.6]"
                )
        if not 0 < self.width <= self.cutoff:
            raise ReferenceSetupError(f"morse: width must be in (0, cutoff={self.cutoff}] Å, got {self.width}")

    def label(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray | None]:
        known = {s for key in self.pairs for s in key.split("-")}
        unknown = sorted(set(atoms.get_chemical_symbols()) - known)
        if unknown:
            raise LabelingFailed(f"morse has no pair parameters for {unknown} in {atoms.get_chemical_formula()}")
        return super().label(atoms)

    def make_calculator(self) -> Calculator:
        return MorseCalculator(pairs=self.pairs, cutoff=self.cutoff, width=self.width)

    def get_config(self) -> dict[str, Any]:
        return {"pairs": {k: list(v) for k, v in self.pairs.items()}, "cutoff": self.cutoff, "width": self.width}

    def code_version(self) -> str:
        from pesmith import __version__

        return f"pesmith {__version__} (analytic)"
