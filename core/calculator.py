"""ASE Calculator around a pesmith potential."""

from __future__ import annotations

import warnings
from pathlib import Path

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from .calculator_settings import DEFAULT_SKIN, Precision
from .model_file import load_potential
from .potential import ATOM_ENERGIES, ENERGY, ENERGY_STD, FEATURES, FORCES, FORCES_STD, STRESS, Potential
from .precision import check_precision, inference_copy
from .registry import Registry
from .structures import Batch, check_close_pairs, check_finite_geometry
from .verlet import VerletList


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

    Two options make MD cheaper. ``skin`` (Å, default 1.0) keeps a Verlet neighbor list
    (:class:`~pesmith.verlet.VerletList`): pairs are searched within cutoff + skin and searched
    again only when an atom moved more than skin / 2 or the cell, numbers or pbc changed; the
    results equal a list built every call (``skin=0``). A relaxation of the cell changes the cell
    every step and searches every step. ``dtype="float32"`` evaluates the descriptors and models in
    float32 (:mod:`pesmith.precision`; results float64; ``forces_std`` stays float64). On the
    trained Si NN + ACSF of the tests it moves energies by 1-2e-7 eV/atom on 64- and 1,000-atom
    cells (up to 1e-6 eV/atom on a 2-atom cell) and forces by up to 7e-6 eV/Å
    (``tests/test_precision.py``); float64 is the default.

    Parameters
    ----------
    potential
        The potential (float64).
    forces_std
        Compute ``forces_std`` for every structure.
    skin
        Å, ``>= 0``: the Verlet list's margin; 0 searches the pairs at every call.
    dtype
        ``"float64"`` or ``"float32"``: the precision of the descriptors and models.

    Raises
    ------
    ConfigError
        ``skin`` negative, ``dtype`` unknown, or a potential whose descriptor or model cannot
        compute in float32.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "forces_std"]

    def __init__(
        self, potential: Potential, forces_std: bool = False, skin: float = DEFAULT_SKIN, dtype: Precision = "float64", **kwargs
    ):
        super().__init__(**kwargs)
        self.potential = potential
        self.forces_std = forces_std
        self.skin = skin
        self.dtype = check_precision(dtype)
        self.neighbors = VerletList(potential.cutoff, skin)
        self.evaluated = inference_copy(potential, dtype)  # what computes the results: the potential itself in float64
        self._warned = False

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        registry: Registry | None = None,
        forces_std: bool = False,
        skin: float = DEFAULT_SKIN,
        dtype: Precision = "float64",
    ) -> "PesmithCalculator":
        """Load a model file written by ``pesmith train``; ``skin`` (Å) and ``dtype`` as in the class."""
        potential, _ = load_potential(path, registry)
        return cls(potential, forces_std=forces_std, skin=skin, dtype=dtype)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        batch = self._checked_batch()
        periodic = bool(self.atoms.pbc.all()) and self.atoms.cell.volume > 0
        results = self.evaluated(batch, forces=True, stress=periodic)
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
