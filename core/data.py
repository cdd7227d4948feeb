"""Labeled structures: reading extxyz / ase.db, checking labels, splits, reference energies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from . import ase_files
from .errors import DataError
from .reference_db import structure_hash
from .structures import check_structure

Provenance = tuple[str | None, str | None]  # (method, reference_hash) of a label; (None, None): not recorded


@dataclass
class Dataset:
    """Structures with total energies (eV), forces (eV/Å) and, where known, stress (eV/Å^3).

    ``stresses[i]`` is ``None`` for a structure without a stress label.
    """

    structures: list[Atoms]
    energies: np.ndarray  # (n_structures,) eV
    forces: list[np.ndarray]  # n_structures x (n_atoms_i, 3) eV/Å
    stresses: list[np.ndarray | None]  # n_structures x (6,) eV/Å^3, ASE Voigt order
    source: str = "<memory>"
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # rows of the source

    def __post_init__(self) -> None:
        if len(self.indices) == 0:
            self.indices = np.arange(len(self.structures))

    def __len__(self) -> int:
        return len(self.structures)

    @property
    def species(self) -> tuple[str, ...]:
        """Chemical symbols present, sorted by atomic number."""
        symbols = {s for atoms in self.structures for s in atoms.get_chemical_symbols()}
        return tuple(sorted(symbols, key=lambda s: atomic_numbers[s]))

    @property
    def n_atoms(self) -> int:
        return sum(len(a) for a in self.structures)

    @property
    def config_types(self) -> list[str | None]:
        """Each structure's ``atoms.info["config_type"]`` (an extxyz key, or an ase.db row's
        key-value pair) as a string, ``None`` where absent."""
        return [None if a.info.get("config_type") is None else str(a.info["config_type"]) for a in self.structures]

    def labeled_structures(self, keep_info: bool = True) -> list[Atoms]:
        """Copies of the structures carrying their labels as a :class:`SinglePointCalculator`
        (energy, forces and, where known, stress), ready for ``ase.io.write``; without
        ``keep_info`` their ``info`` is emptied (for codes that reject unknown extxyz keys)."""
        from ase.calculators.singlepoint import SinglePointCalculator

        labeled = []
        for atoms, energy, forces, stress in zip(self.structures, self.energies, self.forces, self.stresses):
            atoms = atoms.copy()
            if not keep_info:
                atoms.info = {}
            atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=forces, **({} if stress is None else {"stress": stress}))
            labeled.append(atoms)
        return labeled

    def subset(self, rows: Sequence[int]) -> "Dataset":
        """The structures at positions ``rows`` (source indices are kept)."""
        rows = [int(r) for r in rows]
        return Dataset(
            structures=[self.structures[r] for r in rows],
            energies=self.energies[rows],
            forces=[self.forces[r] for r in rows],
            stresses=[self.stresses[r] for r in rows],
            source=self.source,
            indices=self.indices[rows],
        )

    def split(self, validation_fraction: float, seed: int) -> tuple["Dataset", "Dataset"]:
        """Split by structure into (train, validation), reproducibly for a given ``seed``.

        The structures with the lowest keyed hashes of their content (numbers, positions, cell,
        energy; :func:`split_key`) are the validation set, so the split does not depend on the
        order of the rows, and a structure stays on its side when data is added (unless enough
        new structures with lower keys push it out): a model warm-started on the previous
        training set is not validated on what it was trained on.
        """
        if not 0 <= validation_fraction < 1:
            raise DataError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
        order = np.array(sorted(range(len(self)), key=lambda i: split_key(self.structures[i], float(self.energies[i]), seed)), dtype=int)
        n_validation = int(round(validation_fraction * len(self)))
        if validation_fraction > 0:  # at least one structure on each side, when there are two
            n_validation = min(max(n_validation, 1), len(self) - 1)
        return self.subset(np.sort(order[n_validation:])), self.subset(np.sort(order[:n_validation]))


def split_key(atoms: Atoms, energy: float, seed: int) -> str:
    """sha256 of ``seed`` and a structure's content (:func:`pesmith.reference_db.structure_hash`)
    and energy (eV): the structure's place in :meth:`Dataset.split`'s order."""
    return hashlib.sha256(f"{seed}:{structure_hash(atoms)}:{energy!r}".encode()).hexdigest()


def read_structures(path: Path, skip_failed: bool = False, what: str = "data file") -> list[Atoms]:
    """Structures from an extxyz file (or anything ase.io reads) or an ase.db, with any labels the
    file stores. ``skip_failed`` leaves out ase.db rows that ``pesmith label`` marked
    ``status="failed"`` or ``"running"`` (they have no labels); ``what`` names the file in errors."""
    return [atoms for atoms, _ in _read_with_provenance(path, skip_failed, what)]


def _read_with_provenance(path: Path, skip_failed: bool, what: str) -> list[tuple[Atoms, Provenance]]:
    """The structures of :func:`read_structures`, each with its ``(method, reference_hash)``: the
    key-value pairs of an ase.db row, the ``info`` keys of an extxyz frame, ``(None, None)`` when
    the file does not say."""
    check_structure_file(path, what)
    try:
        if path.suffix == ".db":
            with ase_files.connect(path) as db:
                rows = sorted(db.select(), key=_written_order)
                read = [
                    (_row_atoms(row), (row.get("method"), row.get("reference_hash")))
                    for row in rows
                    if not (skip_failed and row.get("status", "ok") != "ok")
                ]
        else:
            read = [(a, (a.info.get("method"), a.info.get("reference_hash"))) for a in ase_files.read(path, index=":")]
    except Exception as exc:
        raise DataError(f"cannot read structures from {path}: {type(exc).__name__}: {exc}") from exc
    if not read:
        raise DataError(f"{path} contains no structures")
    for index, (atoms, _) in enumerate(read):
        check_structure(atoms, f"{path}, structure {index} ({atoms.get_chemical_formula()})")
    return read


def _row_atoms(row) -> Atoms:
    """The structure of an ase.db row, with its ``config_type`` key (if any) in ``atoms.info``
    as an extxyz frame carries it."""
    atoms = row.toatoms()
    if row.get("config_type") is not None:
        atoms.info["config_type"] = row.get("config_type")
    return atoms


def _written_order(row) -> tuple[bool, str, int, int]:
    """Rows of an ase.db by (``source``, ``source_index``, id): the order their structures were
    made in, not the order parallel workers happened to finish them in, so that a database filled
    in completion order gives the same dataset (split, batches) on every run. Rows without a
    ``source`` follow, in id order."""
    source, index = row.get("source"), row.get("source_index")
    return (source is None, str(source or ""), -1 if index is None else int(index), row.id)


def check_structure_file(
    path: Path, what: str = "data file", paths: str = "relative paths resolve against the config"
) -> None:
    """Raise :class:`DataError` if ``path`` is a directory or does not exist; ``what`` names the
    file in the message and ``paths`` says what relative paths are relative to."""
    if path.is_dir():
        raise DataError(f"{what} {path} is a directory; give a file of structures (extxyz or ase.db)")
    if not path.is_file():
        raise DataError(f"{what} {path} not found; check the path ({paths})")


def read_dataset(path: str | Path | Sequence[str | Path], allow_mixed_references: bool = False) -> Dataset:
    """Read labeled structures from an extxyz file (or anything ase.io reads) or an ase.db.

    ``path`` may also be a list of files, read in order and concatenated
    (:func:`concatenate_datasets`). Rows of an ase.db that ``pesmith label`` marked
    ``status="failed"`` are skipped.

    Labels of different reference methods or parameters do not belong in one training set:
    every structure's provenance (``method`` and ``reference_hash`` of an ase.db row written by
    ``pesmith label``, or the same keys in an extxyz frame's info) must be the same, where "none
    recorded" counts as one provenance of its own, unless ``allow_mixed_references``.

    Raises
    ------
    DataError
        If a file is missing or unreadable, a structure lacks a valid energy or forces (the
        message names the file and the structure index), or the labels come from two references.
    """
    if isinstance(path, (str, Path)):
        paths = [Path(path)]
    else:
        paths = [Path(p) for p in path]
        if not paths:
            raise DataError("data.train is an empty list; give one or more files of labeled structures")
    datasets: list[Dataset] = []
    first_of: dict[Provenance, Path] = {}  # each provenance seen -> the first file it came from
    for file in paths:
        dataset, provenances = _read_labeled(file)
        datasets.append(dataset)
        for provenance in provenances:
            first_of.setdefault(provenance, file)
        if len(first_of) > 1 and not allow_mixed_references:
            (a, file_a), (b, file_b) = list(first_of.items())[:2]
            raise DataError(
                f"the training data mixes labels of two references: {_describe_reference(a)} in {file_a}"
                f" and {_describe_reference(b)} in {file_b}; label everything with one reference, or set"
                " data.allow_mixed_references: true in the training config to train on both"
            )
    return concatenate_datasets(datasets)


def _read_labeled(path: Path) -> tuple[Dataset, list[Provenance]]:
    """One file's labeled structures and the provenance of each."""
    read = _read_with_provenance(path, skip_failed=True, what="data file")
    energies, forces, stresses = [], [], []
    for index, (atoms, _) in enumerate(read):
        energy, force, stress = _labels(atoms, f"{path}, structure {index}")
        energies.append(energy)
        forces.append(force)
        stresses.append(stress)
    dataset = Dataset([a for a, _ in read], np.array(energies), forces, stresses, source=str(path))
    return dataset, [provenance for _, provenance in read]


def _describe_reference(provenance: Provenance) -> str:
    method, key = provenance
    if method is None and key is None:
        return "no recorded reference"
    return f"method {method!r} (reference_hash {str(key)[:12]})"


def concatenate_datasets(datasets: Sequence[Dataset]) -> Dataset:
    """One dataset with the structures of ``datasets`` in order.

    Its ``source`` lists the sources joined by ``", "``; its ``indices`` number the rows of
    that concatenation (the rows of the first file, then those of the second, ...).
    """
    if len(datasets) == 1:
        return datasets[0]
    return Dataset(
        structures=[a for d in datasets for a in d.structures],
        energies=np.concatenate([d.energies for d in datasets]),
        forces=[f for d in datasets for f in d.forces],
        stresses=[s for d in datasets for s in d.stresses],
        source=", ".join(d.source for d in datasets),
    )


def _labels(atoms: Atoms, where: str) -> tuple[float, np.ndarray, np.ndarray | None]:
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    energy = results.get("energy", atoms.info.get("energy"))
    if energy is None:
        raise DataError(f"{where} ({atoms.get_chemical_formula()}): no energy label; every structure needs one")
    energy = float(energy)
    if not np.isfinite(energy):
        raise DataError(f"{where}: energy is {energy}; remove or relabel this structure")
    forces = results.get("forces", atoms.arrays.get("forces"))
    if forces is None:
        raise DataError(f"{where}: no forces label; every structure needs forces (eV/Å)")
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise DataError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    if not np.isfinite(forces).all():
        raise DataError(f"{where}: forces contain NaN or inf; remove or relabel this structure")
    stress = results.get("stress", atoms.info.get("stress"))
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        if stress.shape == (9,):
            stress = stress.reshape(3, 3)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if stress.shape != (6,) or not np.isfinite(stress).all():
            raise DataError(f"{where}: stress must be 6 finite numbers (eV/Å^3, Voigt), got {stress!r}")
    return energy, forces, stress


def reference_energies(
    dataset: Dataset, species: Sequence[str], isolated: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per-element reference energies (eV) that models subtract before learning.

    ``isolated`` (isolated-atom energies) is used when given for every element. Otherwise a
    least-squares fit of total energy vs composition, ``E_s ~ sum_Z n_sZ e_Z``, as aenet and
    n2p2 do; the model then learns the (small) residual.
    """
    if isolated:
        missing = [s for s in species if s not in isolated]
        if missing:
            raise DataError(f"data.isolated_atom_energies lacks {missing}; give one for every element or none")
        return {s: float(isolated[s]) for s in species}
    counts = np.array([[np.count_nonzero(a.numbers == atomic_numbers[s]) for s in species] for a in dataset.structures])
    solution, *_ = np.linalg.lstsq(counts.astype(float), dataset.energies, rcond=None)
    return {s: float(e) for s, e in zip(species, solution)}
