"""Precomputed features and their derivatives, the input of model fitting.

Training on forces needs ``dG_i/dr`` for every atom i, stored sparsely as
``(n_edges, n_features, 3)`` (as aenet and n2p2 store symmetry-function derivatives); see
:meth:`pesmith.descriptor.Descriptor.features_and_jacobian`. Forces then follow from the chain rule without rebuilding the
descriptor graph in every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from .data import Dataset
from .descriptor import Descriptor
from .grad import forces_from_edge_gradients
from .structures import DTYPE, Batch, build_batch


@dataclass
class FeatureSet:
    """Features, feature derivatives and labels of several structures, flat over atoms/edges."""

    features: torch.Tensor  # (n_atoms, n_features)
    jacobian: torch.Tensor  # (n_edges, n_features, 3) dG_center/dr_edge, 1/Å units of G
    numbers: torch.Tensor  # (n_atoms,)
    structure_index: torch.Tensor  # (n_atoms,)
    edge_index: torch.Tensor  # (2, n_edges)
    energies: torch.Tensor  # (n_structures,) eV, reference energies already subtracted
    forces: torch.Tensor  # (n_atoms, 3) eV/Å
    atom_offsets: torch.Tensor  # (n_structures + 1,)
    edge_offsets: torch.Tensor  # (n_structures + 1,)

    @property
    def n_structures(self) -> int:
        return int(self.energies.shape[0])

    @property
    def atoms_per_structure(self) -> torch.Tensor:
        return self.atom_offsets[1:] - self.atom_offsets[:-1]

    def select(self, rows: Sequence[int] | torch.Tensor) -> "FeatureSet":
        """The structures at positions ``rows``, renumbered from zero."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        atom_slices = [torch.arange(self.atom_offsets[r], self.atom_offsets[r + 1]) for r in rows.tolist()]
        edge_slices = [torch.arange(self.edge_offsets[r], self.edge_offsets[r + 1]) for r in rows.tolist()]
        atoms = torch.cat(atom_slices)
        edges = torch.cat(edge_slices)
        n_atoms = torch.tensor([len(s) for s in atom_slices])
        n_edges = torch.tensor([len(s) for s in edge_slices])
        atom_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n_atoms, 0)])
        edge_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n_edges, 0)])
        shift = torch.repeat_interleave(atom_offsets[:-1] - self.atom_offsets[rows], n_edges)
        return FeatureSet(
            features=self.features[atoms],
            jacobian=self.jacobian[edges],
            numbers=self.numbers[atoms],
            structure_index=torch.repeat_interleave(torch.arange(len(rows)), n_atoms),
            edge_index=self.edge_index[:, edges] + shift,
            energies=self.energies[rows],
            forces=self.forces[atoms],
            atom_offsets=atom_offsets,
            edge_offsets=edge_offsets,
        )

    def minibatches(self, batch_size: int, generator: torch.Generator) -> Iterator["FeatureSet"]:
        """Shuffled minibatches of ``batch_size`` structures."""
        order = torch.randperm(self.n_structures, generator=generator)
        for start in range(0, self.n_structures, batch_size):
            yield self.select(order[start : start + batch_size])


def feature_jacobian(descriptor: Descriptor, structures: Sequence[Atoms]) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """Features ``(n_atoms, F)``, their edge derivatives ``(n_edges, F, 3)`` and the batch."""
    batch = build_batch(structures, descriptor.cutoff)
    descriptor.check_numbers(batch.numbers)
    with torch.no_grad():
        vectors = batch.edge_vectors()
    features, jacobian = descriptor.features_and_jacobian(batch.numbers, batch.edge_index, vectors)
    return features.detach(), jacobian.detach(), batch


def featurize_dataset(
    descriptor: Descriptor, dataset: Dataset, reference: dict[str, float], chunk_atoms: int = 2000
) -> FeatureSet:
    """Compute features and derivatives of every structure of ``dataset``.

    ``reference`` (eV per element) is subtracted from the energies. Structures are processed
    in chunks of about ``chunk_atoms`` atoms to bound memory.
    """
    features, jacobians, edges, n_atoms, n_edges = [], [], [], [], []
    chunk: list[Atoms] = []
    offset = 0

    def flush() -> None:
        nonlocal offset
        if not chunk:
            return
        f, j, batch = feature_jacobian(descriptor, chunk)
        features.append(f)
        jacobians.append(j)
        edges.append(batch.edge_index + offset)
        n_atoms.extend(batch.atoms_per_structure.tolist())
        edge_owner = batch.structure_index[batch.edge_index[0]]
        n_edges.extend(torch.bincount(edge_owner, minlength=batch.n_structures).tolist())
        offset += batch.n_atoms
        chunk.clear()

    for atoms in dataset.structures:
        chunk.append(atoms)
        if sum(len(a) for a in chunk) >= chunk_atoms:
            flush()
    flush()
    numbers = torch.as_tensor(np.concatenate([a.numbers for a in dataset.structures]), dtype=torch.int64)
    ref = np.array(
        [sum(reference[s] for s in a.get_chemical_symbols()) for a in dataset.structures], dtype=np.float64
    )
    sizes = torch.tensor(n_atoms)
    return FeatureSet(
        features=torch.cat(features),
        jacobian=torch.cat(jacobians),
        numbers=numbers,
        structure_index=torch.repeat_interleave(torch.arange(len(dataset)), sizes),
        edge_index=torch.cat(edges, dim=1),
        energies=torch.as_tensor(dataset.energies - ref, dtype=DTYPE),
        forces=torch.as_tensor(np.concatenate(dataset.forces), dtype=DTYPE),
        atom_offsets=torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(sizes, 0)]),
        edge_offsets=torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(torch.tensor(n_edges), 0)]),
    )


def predict_energies_forces(
    atomic_energy: torch.nn.Module, data: FeatureSet, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Structure energies (n_structures,) eV and forces (n_atoms, 3) eV/Å of a model on ``data``.

    ``atomic_energy(features, numbers)`` returns per-atom energies; forces use the chain rule
    through the stored feature derivatives.
    """
    features = data.features.detach().requires_grad_(True)
    atom_energies = atomic_energy(features, data.numbers)  # (n_atoms,)
    energies = torch.zeros(data.n_structures, dtype=atom_energies.dtype).index_add(
        0, data.structure_index, atom_energies
    )
    (d_energy,) = torch.autograd.grad(atom_energies.sum(), features, create_graph=create_graph)  # (n_atoms, F)
    edge_gradients = torch.einsum("ef,efc->ec", d_energy[data.edge_index[0]], data.jacobian)  # (n_edges, 3)
    forces = forces_from_edge_gradients(edge_gradients, data.edge_index, features.shape[0])
    return energies, forces
