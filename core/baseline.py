"""Delta learning: a fixed baseline potential under the learned terms.

A potential with a baseline predicts ``E = E_baseline + sum_t E_t + sum_i e_ref(Z_i) (+ E_core)``.
Before a fit the baseline's energies (eV), forces (eV/Å) and stress (eV/Å^3) are subtracted from
the labels (:func:`subtract_baseline`), so the terms and the per-element reference energies learn
the residual; in prediction the baseline is part of :meth:`pesmith.potential.Potential.energy`,
so forces and stress by autograd include it, and the metrics of a fitted potential are those of
the total. Two kinds, both pure torch:

* :class:`PairBaseline` (``kind: pair``): an analytic Born-Mayer repulsion per element pair,
  ``A exp(-r / rho)`` switched off smoothly below a cutoff;
* :class:`ModelBaseline` (``kind: model``): a fitted pesmith potential (any model file), whose
  whole state the model file of the delta-learned potential embeds;

and one outside torch:

* :class:`ReferenceBaseline` (``kind: reference``): a registered reference plugin (an analytic
  or semi-empirical method such as ``morse`` or ``xtb``), rebuilt from its kind and options when
  the model file is read.

A torch baseline computes per-atom energies ``(n_atoms,)`` from the potential's neighbor list,
which is built at the largest of the terms' and the baseline's cutoffs; autograd gives its forces
and stress with the learned terms'. An external baseline (``external = True``) labels whole
structures instead (:meth:`Baseline.labels`), and the potential adds its energies, forces and
stress to the learned terms' after autograd.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers

from .data import Dataset
from .errors import ConfigError, DataError, LabelingFailed
from .grad import forces_and_stress
from .repulsion import smoothstep_off
from .structures import DTYPE, Batch, build_batch, has_full_cell

if TYPE_CHECKING:
    from .reference import Reference

DEFAULT_SWITCH_WIDTH = 0.5  # Å over which a pair term is switched off below its cutoff
CHUNK_STRUCTURES = 64  # structures per batch when the baseline labels a dataset


class FittedPotential(Protocol):
    """What :class:`ModelBaseline` uses of a :class:`pesmith.potential.Potential` (which imports
    this module, so it is not imported here)."""

    cutoff: float
    species: tuple[str, ...]

    def eval(self) -> "FittedPotential": ...

    def atom_energies(self, batch: Batch, edge_vectors: torch.Tensor) -> torch.Tensor: ...


class Baseline(torch.nn.Module):
    """A fixed potential under the learned terms: per-atom energies (eV) from edge vectors (Å)."""

    kind = ""
    external = False  # True: not differentiable in torch; the potential adds its labels after autograd

    @property
    def cutoff(self) -> float:
        """The largest distance the baseline sees, Å."""
        raise NotImplementedError

    @property
    def species(self) -> tuple[str, ...]:
        """The elements the baseline is defined for."""
        raise NotImplementedError

    def atom_energies(self, batch: Batch, edge_vectors: torch.Tensor) -> torch.Tensor:
        """(n_atoms,) baseline energies, eV, differentiable in ``edge_vectors`` (n_edges, 3) Å,
        the vectors of ``batch.edge_index`` (built at :attr:`cutoff` or beyond)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON description for reports: ``kind`` and the parameters or source."""
        raise NotImplementedError

    def labels(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
        """The baseline's energies (n_structures,) eV, forces (n_atoms_i, 3) eV/Å and stress (6,)
        eV/Å^3 (ASE Voigt; ``None`` without a full 3D cell) of each structure, by autograd of
        :meth:`atom_energies` in chunks of :data:`CHUNK_STRUCTURES`."""
        energies, forces, stresses = [], [], []
        for start in range(0, len(structures), CHUNK_STRUCTURES):
            chunk = list(structures[start : start + CHUNK_STRUCTURES])
            batch = build_batch(chunk, self.cutoff)
            with torch.enable_grad():
                vectors = batch.edge_vectors().detach().requires_grad_(True)
                atom_energies = self.atom_energies(batch, vectors)
                energy = torch.zeros(batch.n_structures, dtype=DTYPE).index_add(0, batch.structure_index, atom_energies)
                force, stress = forces_and_stress(energy, vectors, batch, stress=True)
            energy = energy.detach()
            offsets = np.cumsum([0] + [len(a) for a in chunk])
            for k, atoms in enumerate(chunk):
                energies.append(float(energy[k]))
                forces.append(force[offsets[k] : offsets[k + 1]].detach().numpy())
                stresses.append(stress[k].detach().numpy() if has_full_cell(atoms) else None)
        return np.array(energies, dtype=np.float64), forces, stresses

    def check_species(self, species: Sequence[str]) -> None:
        """Raise :class:`ConfigError` unless the baseline covers every element of ``species``."""
        missing = [s for s in species if s not in self.species]
        if missing:
            raise ConfigError(
                f"the {self.kind} baseline is defined for {list(self.species)} but the potential also has {missing};"
                " use a baseline that covers every element of the data"
            )


class PairBaseline(Baseline):
    """Born-Mayer repulsion per element pair with a smooth cutoff:

        E = sum_{i<j} A_ab exp(-r_ij / rho_ab) s(r_ij),

    ``A`` in eV, ``rho`` in Å, ``s`` the quintic smoothstep of :mod:`pesmith.repulsion` from 1
    below ``cutoff - switch_width`` to 0 at ``cutoff`` (Å). A pair that is not listed does not
    interact.

    Parameters
    ----------
    pairs
        ``{"Li-Si": {"A": eV, "rho": Å, "cutoff": Å}, ...}``; ``"Li-Si"`` and ``"Si-Li"`` are one pair.
    switch_width
        Width of the switch below each cutoff, Å.

    Raises
    ------
    ConfigError
        An unknown element, a pair given twice, or ``A``, ``rho``, ``cutoff`` not positive or a
        cutoff not longer than ``switch_width`` (the message names the pair and value).
    """

    kind = "pair"

    def __init__(self, pairs: Mapping[str, Mapping[str, float]], switch_width: float = DEFAULT_SWITCH_WIDTH):
        super().__init__()
        self.pairs = {key: {name: float(value) for name, value in parameters.items()} for key, parameters in pairs.items()}
        self.switch_width = float(switch_width)
        for name in ("A_table", "rho_table", "cutoff_table"):  # (119, 119) each, symmetric
            self.register_buffer(name, torch.zeros(119, 119, dtype=DTYPE), persistent=False)
        self.rho_table.fill_(1.0)
        seen: dict[tuple[int, int], str] = {}
        for key, parameters in self.pairs.items():
            a, b = pair_numbers(key)
            check_pair_parameters(key, parameters, self.switch_width)
            if (min(a, b), max(a, b)) in seen:
                raise ConfigError(f"pair '{key}' is the same pair as '{seen[min(a, b), max(a, b)]}'; give each pair once")
            seen[min(a, b), max(a, b)] = key
            for table, name in ((self.A_table, "A"), (self.rho_table, "rho"), (self.cutoff_table, "cutoff")):
                table[a, b] = table[b, a] = parameters[name]

    @property
    def cutoff(self) -> float:
        return max((p["cutoff"] for p in self.pairs.values()), default=0.0)

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(sorted({s for key in self.pairs for s in key.split("-")}, key=lambda s: atomic_numbers[s]))

    def check_species(self, species: Sequence[str]) -> None:
        """Raise :class:`ConfigError` if a pair names an element the potential does not have
        (a pair term may leave elements out: those pairs do not interact)."""
        extra = [s for s in self.species if s not in species]
        if extra:
            raise ConfigError(f"the pair baseline names {extra}, which the potential's species {list(species)} lack; remove those pairs")

    def atom_energies(self, batch: Batch, edge_vectors: torch.Tensor) -> torch.Tensor:
        centers, neighbors = batch.edge_index
        zi, zj = batch.numbers[centers], batch.numbers[neighbors]  # (n_edges,)
        cutoff = self.cutoff_table[zi, zj]
        r = edge_vectors.norm(dim=1)
        active = ((cutoff > 0) & (r < cutoff)).nonzero().squeeze(1)
        ra, za, zb, ca = r[active], zi[active], zj[active], cutoff[active]
        pair = self.A_table[za, zb] * torch.exp(-ra / self.rho_table[za, zb]) * smoothstep_off(ra, ca - self.switch_width, ca)
        edge_energies = torch.zeros_like(r).index_add(0, active, 0.5 * pair)  # half a pair per direction
        return torch.zeros(batch.n_atoms, dtype=r.dtype).index_add(0, centers, edge_energies)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "pairs": self.pairs, "switch_width": self.switch_width}


class ModelBaseline(Baseline):
    """A fitted pesmith potential as the baseline (kept in eval mode); ``source`` records the
    file it was read from, for reports only. Its uncertainty estimates are not used."""

    kind = "model"

    def __init__(self, potential: FittedPotential, source: str = ""):
        super().__init__()
        self.potential = potential.eval()
        self.source = source

    def train(self, mode: bool = True) -> "ModelBaseline":
        super().train(mode)
        self.potential.eval()
        return self

    @property
    def cutoff(self) -> float:
        return self.potential.cutoff

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(self.potential.species)

    def atom_energies(self, batch: Batch, edge_vectors: torch.Tensor) -> torch.Tensor:
        keep = torch.nonzero(edge_vectors.detach().norm(dim=1) < self.cutoff).squeeze(1)  # (e,)
        within = dataclasses.replace(batch, edge_index=batch.edge_index[:, keep], edge_shifts=batch.edge_shifts[keep], cutoff=self.cutoff)
        return self.potential.atom_energies(within, edge_vectors[keep])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "file": self.source, "species": list(self.species), "cutoff": self.cutoff}


class ReferenceBaseline(Baseline):
    """A registered reference plugin as the baseline (``kind: reference``): its energies, forces
    and stress of each whole structure are subtracted from the labels before the fit and added to
    the learned terms' in prediction. It is not a torch function, so it has no per-atom energies
    of its own: each atom's share of the reference energy is E / N.

    Parameters
    ----------
    reference
        The reference plugin instance (its ``label`` gives eV, eV/Å, eV/Å^3).
    settings
        ``{"kind": name, **options}`` that rebuild it from the registry (stored in model files).
    """

    kind = "reference"
    external = True

    def __init__(self, reference: "Reference", settings: Mapping[str, Any]):
        super().__init__()
        self.reference = reference
        self.settings = dict(settings)

    @property
    def cutoff(self) -> float:
        return 0.0  # it needs no neighbor list of the potential's

    @property
    def species(self) -> tuple[str, ...]:
        return ()

    def check_species(self, species: Sequence[str]) -> None:
        """A reference method takes any element; the reference itself fails on those it lacks."""

    def atom_energies(self, batch: Batch, edge_vectors: torch.Tensor) -> torch.Tensor:
        raise TypeError("a reference baseline has no differentiable per-atom energies; use labels()")

    def labels(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
        """The reference's labels of each structure (stress only with a full 3D cell).

        Raises
        ------
        DataError
            A structure the reference fails on, naming it and the reason.
        """
        energies, forces, stresses = [], [], []
        for index, atoms in enumerate(structures):
            try:
                energy, force, stress = self.reference.label(atoms)
            except LabelingFailed as exc:
                raise DataError(
                    f"the reference baseline ({self.settings['kind']}) failed on structure {index}"
                    f" ({atoms.get_chemical_formula()}): {exc}"
                ) from None
            energies.append(float(energy))
            forces.append(np.asarray(force, dtype=np.float64))
            stresses.append(np.asarray(stress, dtype=np.float64) if stress is not None and has_full_cell(atoms) else None)
        return np.array(energies, dtype=np.float64), forces, stresses

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "reference": self.settings}


def pair_numbers(key: str) -> tuple[int, int]:
    """Atomic numbers of a pair key ``"Li-Si"``; :class:`ConfigError` for anything else."""
    symbols = key.split("-")
    if len(symbols) != 2 or any(s not in atomic_numbers or s == "X" for s in symbols):
        raise ConfigError(f"pair '{key}' is not two element symbols joined by '-' (e.g. 'Li-Si')")
    return atomic_numbers[symbols[0]], atomic_numbers[symbols[1]]


def check_pair_parameters(key: str, parameters: Mapping[str, float], switch_width: float) -> None:
    """Raise :class:`ConfigError` unless ``parameters`` are exactly ``A`` (eV), ``rho`` and
    ``cutoff`` (Å), all positive and finite, with ``cutoff > switch_width``."""
    if set(parameters) != {"A", "rho", "cutoff"}:
        raise ConfigError(f"pair '{key}' has keys {sorted(parameters)}; give exactly A (eV), rho (Å) and cutoff (Å)")
    bad = [f"{name}={value}" for name, value in parameters.items() if not (np.isfinite(value) and value > 0)]
    if bad:
        raise ConfigError(f"pair '{key}': {', '.join(bad)}; A (eV), rho and cutoff (Å) must be positive and finite")
    if not switch_width > 0 or parameters["cutoff"] <= switch_width:
        raise ConfigError(f"pair '{key}': cutoff {parameters['cutoff']} Å must exceed switch_width {switch_width} Å (> 0)")


def subtract_baseline(dataset: Dataset, baseline: Baseline) -> Dataset:
    """``dataset`` with the baseline's energies, forces and (where labeled) stress subtracted:
    the residual the learned terms fit."""
    if not len(dataset):
        return dataset
    energies, forces, stresses = baseline.labels(dataset.structures)
    return dataclasses.replace(
        dataset,
        energies=dataset.energies - energies,
        forces=[label - f for label, f in zip(dataset.forces, forces)],
        stresses=[label - s if label is not None and s is not None else label for label, s in zip(dataset.stresses, stresses)],
    )
