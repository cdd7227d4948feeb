"""ASE Calculator around a pesmith potential."""

from __future__ import annotations

import warnings
from pathlib import Path

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from .model_file import load_potential
from .potential import ATOM_ENERGIES, ENERGY, ENERGY_STD, FEATURES, FORCES, FORCES_STD, STRESS, Potential
from .registry import Registry
from .structures import Batch, check_close_pairs, check_finite_geometry
from .verlet import VerletList

DEFAULT_SKIN = 1.0  # Å, the margin of the calculator's Verlet neighbor list


class ExtrapolationWarning(UserWarning):
    """A structure's descriptors fall outside the range seen in training."""


class PesmithCalculator(Calculator):
    """Energy (eV), per-atom energies, forces (eV/Å) and stress (eV/Å^3) from a pesmith potential.

    A structure with a NaN or infinite position, or two atoms closer than
    :data:`pesmith.structures.MIN_DISTANCE`, raises :class:`~pesmith.errors.DataError` instead of
    returning NaN. Stress is computed for fully periodic cells only. A model with an uncertainty
    estimate adds ``results["energy_std"]`` (eV), the standard deviation of the energy. A model
    with a force uncertainty (``Model.has_forces_std``) gives ``results["forces_std"]`` (eV/Å,
    (n_atoms, 3)) when it is asked for, by ``calc.get_property("forces_std", atoms)`` or for every
    structure with ``forces_std=True``: it needs the feature derivatives, about the cost of the
    forces again, so MD and relaxations do not pay for it by default. The first structure whose
    features fall outside the per-feature range of the training data triggers one
    :class:`ExtrapolationWarning` per calculator, naming how many atoms and features.

    ``skin`` (Å, default 1.0) makes MD cheaper: it keeps a Verlet neighbor list
    (:class:`~pesmith.verlet.VerletList`): pairs are searched within cutoff + skin and searched
    again only when an atom moved more than skin / 2 or the cell, numbers or pbc changed; the
    results equal a list built every call (``skin=0``). A relaxation of the cell changes the cell
    every step and searches every step.

    Parameters
    ----------
    potential
        The potential (float64).
    forces_std
        Compute ``forces_std`` for every structure.
    skin
        Å, ``>= 0``: the Verlet list's margin; 0 searches the pairs at every call.

    Raises
    ------
    ConfigError
        ``skin`` negative.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "forces_std"]

    def __init__(self, potential: Potential, forces_std: bool = False, skin: float = DEFAULT_SKIN, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.forces_std = forces_std
        self.skin = skin
        self.neighbors = VerletList(potential.cutoff, skin)
        self._warned = False

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        registry: Registry | None = None,
        forces_std: bool = False,
        skin: float = DEFAULT_SKIN,
    ) -> "PesmithCalculator":
        """Load a model file written by ``pesmith train``; ``skin`` (Å) as in the class."""
        potential, _ = load_potential(path, registry)
        return cls(potential, forces_std=forces_std, skin=skin)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        batch = self._checked_batch()
        periodic = bool(self.atoms.pbc.all()) and self.atoms.cell.volume > 0
        results = self.potential(batch, forces=True, stress=periodic)
        self._check_range(results[FEATURES])
        energy = float(results[ENERGY][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": results[ATOM_ENERGIES].numpy().copy(),
            "forces": results[FORCES].numpy().copy(),
        }
        if periodic:
            self.results["stress"] = results[STRESS][0].numpy().copy()
        if ENERGY_STD in results:
            self.results["energy_std"] = float(results[ENERGY_STD][0])
        if self.forces_std or FORCES_STD in properties:
            std = self.potential.forces_std(batch)
            if std is not None:
                self.results[FORCES_STD] = std.numpy().copy()

    def _checked_batch(self) -> Batch:
        """The :class:`~pesmith.structures.Batch` of ``self.atoms``, after checking that its positions
        are finite and no two atoms overlap (which would give NaN or meaningless energies).

        Raises
        ------
        DataError
            Naming the structure and the offending atom(s).
        """
        where = f"PesmithCalculator, structure {self.atoms.get_chemical_formula()}"
        check_finite_geometry(self.atoms, where)
        batch = self.neighbors.batch(self.atoms)
        centers, neighbors = batch.edge_index.numpy()
        distances = batch.edge_vectors().norm(dim=1).numpy()  # (n_edges,) Å
        check_close_pairs(self.atoms, where, centers, neighbors, distances)
        return batch

    def rearm_extrapolation_warning(self) -> None:
        """Warn again for the next structure that extrapolates (e.g. once per candidate)."""
        self._warned = False

    def _check_range(self, features) -> None:
        if self._warned:
            return
        atoms_out, features_out = self.potential.out_of_range(features)
        if atoms_out:
            self._warned = True
            warnings.warn(
                f"{atoms_out} of {len(self.atoms)} atoms have descriptors outside the training range"
                f" ({features_out} of {features.shape[1]} features); predictions there are extrapolations",
                ExtrapolationWarning,
                stacklevel=3,
            )
