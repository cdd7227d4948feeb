"""Precomputed features and their derivatives, the input of model fitting, within a memory budget.

Training on forces and stress needs ``dG_i/dr`` for every atom i, stored sparsely as
``(n_edges, n_features, 3)`` (as aenet and n2p2 store symmetry-function derivatives); see
:meth:`pesmith.descriptor.Descriptor.features_and_jacobian`. Forces and stress then follow from
the chain rule without rebuilding the descriptor graph in every epoch. Featurization runs in
chunks of at most :attr:`FeaturePlan.chunk_edges` edges; the derivatives go to a
:class:`~pesmith.jacobian_store.JacobianStore` (memory, a float32 disk cache, or recomputed per
minibatch) chosen by :func:`pesmith.memory.plan_features`, and are read back per minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from ase import Atoms
from tqdm.auto import tqdm

from .data import Dataset
from .descriptor import Descriptor
from .distributed import Ranks, balanced_blocks, broadcast_blocks, current_ranks, run_on_every_rank
from .errors import DataError
from .fit_settings import FitSettings
from .jacobian_store import (
    ConcatenatedJacobian,
    DiskJacobian,
    JacobianStore,
    MemoryJacobian,
    RecomputeJacobian,
    feature_jacobian,
)
from .memory import FeaturePlan, plan_features
from .structures import DTYPE, build_batch, has_full_cell, neighbor_pairs

@dataclass
class FeatureSet:
    """Features, labels and (a store of) feature derivatives of several structures, flat over
    atoms and edges. Structures without a stress label have a NaN row in ``stresses``."""

    features: torch.Tensor  # (n_atoms, n_features)
    numbers: torch.Tensor  # (n_atoms,)
    structure_index: torch.Tensor  # (n_atoms,)
    edge_index: torch.Tensor  # (2, n_edges) center, neighbor
    edge_vectors: torch.Tensor  # (n_edges, 3) Å
    energies: torch.Tensor  # (n_structures,) eV, reference energies already subtracted
    forces: torch.Tensor  # (n_atoms, 3) eV/Å
    stresses: torch.Tensor  # (n_structures, 6) eV/Å^3, ASE Voigt order; NaN: no label
    volumes: torch.Tensor  # (n_structures,) Å^3; 0 without a full 3D cell
    atom_offsets: torch.Tensor  # (n_structures + 1,)
    edge_offsets: torch.Tensor  # (n_structures + 1,)
    jacobian: JacobianStore | None = None  # dG_center/dr_edge; None when the fit needs none
    jacobian_rows: torch.Tensor | None = None  # (n_structures,) each structure's number in the store
    chunk_edges: int = 1 << 62  # most edges per chunk and minibatch part (the memory budget)
    config_types: tuple[str | None, ...] | None = None  # (n_structures,) atoms.info["config_type"]; None: not recorded
    descriptor: Descriptor | None = None  # what made the features: a model may turn geometry into features (GAP's pair sparse points)

    @property
    def n_structures(self) -> int:
        return int(self.energies.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.features.shape[0])

    @property
    def atoms_per_structure(self) -> torch.Tensor:
        return self.atom_offsets[1:] - self.atom_offsets[:-1]

    @property
    def edges_per_structure(self) -> torch.Tensor:
        return self.edge_offsets[1:] - self.edge_offsets[:-1]

    @property
    def has_stress(self) -> torch.Tensor:
        """(n_structures,) bool: a stress label and a full 3D cell."""
        return torch.isfinite(self.stresses).all(1) & (self.volumes > 0)

    def load_jacobian(self) -> torch.Tensor:
        """``(n_edges, F, 3)`` float64 derivatives of these structures, read from the store."""
        if self.jacobian is None:
            raise ValueError("this feature set has no feature derivatives (the fit has no force or stress term)")
        return self.jacobian.read(self.jacobian_rows.tolist())

    def select(self, rows: Sequence[int] | torch.Tensor) -> "FeatureSet":
        """The structures at positions ``rows``, renumbered from zero, sharing the derivative store."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        atoms = _ranges(self.atom_offsets, rows)
        edges = _ranges(self.edge_offsets, rows)
        n_atoms, n_edges = self.atoms_per_structure[rows], self.edges_per_structure[rows]
        atom_offsets = _offsets(n_atoms)
        shift = torch.repeat_interleave(atom_offsets[:-1] - self.atom_offsets[rows], n_edges)
        subset = FeatureSet(
            features=self.features[atoms],
            numbers=self.numbers[atoms],
            structure_index=torch.repeat_interleave(torch.arange(len(rows)), n_atoms),
            edge_index=self.edge_index[:, edges] + shift,
            edge_vectors=self.edge_vectors[edges],
            energies=self.energies[rows],
            forces=self.forces[atoms],
            stresses=self.stresses[rows],
            volumes=self.volumes[rows],
            atom_offsets=atom_offsets,
            edge_offsets=_offsets(n_edges),
            chunk_edges=self.chunk_edges,
            config_types=tuple(self.config_types[r] for r in rows.tolist()) if self.config_types is not None else None,
            descriptor=self.descriptor,
        )
        if self.jacobian is not None:
            subset.jacobian, subset.jacobian_rows = self.jacobian, self.jacobian_rows[rows]
        return subset

    def parts(self, rows: Sequence[int] | torch.Tensor) -> list["FeatureSet"]:
        """``rows`` split into consecutive groups of at most ``chunk_edges`` edges. Each part shares
        the store and reads its derivatives only when used, so one part at a time is in memory."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        order = rows.tolist()
        groups = groups_within(self.edges_per_structure[rows].tolist(), self.chunk_edges)
        return [self.select([order[i] for i in group]) for group in groups]

    def chunks(self) -> list["FeatureSet"]:
        """The whole set in order, as parts within the memory budget."""
        return self.parts(torch.arange(self.n_structures))

    def minibatches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Shuffled minibatches of ``batch_size`` structures, as their positions ``(n,)`` in this
        set (:meth:`parts` splits one within the budget); the same order for the same generator state."""
        order = torch.randperm(self.n_structures, generator=generator)
        for start in range(0, self.n_structures, batch_size):
            yield order[start : start + batch_size]

    def label_counts(self, rows: Sequence[int] | torch.Tensor) -> dict[str, int]:
        """What the errors of the structures at ``rows`` average over (the counts of
        :func:`error_sums`): ``n_energy`` structures, ``n_force`` force components and
        ``n_stress`` stress components of structures with a stress label."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        return {
            "n_energy": len(rows),
            "n_force": 3 * int(self.atoms_per_structure[rows].sum()),
            "n_stress": 6 * int(self.has_stress[rows].sum()),
        }


def _offsets(sizes: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(sizes, 0)])


def _ranges(offsets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Concatenated ``arange(offsets[r], offsets[r + 1])`` for each row."""
    starts, stops = offsets[rows], offsets[rows + 1]
    sizes = stops - starts
    if int(sizes.sum()) == 0:
        return torch.zeros(0, dtype=torch.int64)
    within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(_offsets(sizes)[:-1], sizes)
    return torch.repeat_interleave(starts, sizes) + within


def count_edges(structures: Sequence[Atoms], cutoff: float) -> list[int]:
    """Number of directed neighbor pairs within ``cutoff`` (Å) of each structure."""
    return [len(neighbor_pairs(atoms, cutoff)[0]) for atoms in structures]


def plan_for(
    descriptor: Descriptor, datasets: Sequence[Dataset], settings: FitSettings, cache_dir: Path | None
) -> tuple[FeaturePlan, list[list[int]]]:
    """The :class:`FeaturePlan` of fitting on ``datasets`` together, and their edge counts."""
    edges = [count_edges(d.structures, descriptor.cutoff) for d in datasets]
    sizes = [len(a) for d in datasets for a in d.structures]
    where = " + ".join(d.source for d in datasets if len(d)) or "the training data"
    plan = plan_features([n for e in edges for n in e], sizes, descriptor.n_features, settings, cache_dir, where)
    return plan, edges


def featurize_dataset(
    descriptor: Descriptor,
    dataset: Dataset,
    reference: dict[str, float],
    plan: FeaturePlan | None = None,
    cache_path: Path | None = None,
    edges: Sequence[int] | None = None,
    progress: bool = False,
) -> FeatureSet:
    """Features, labels and (stored) derivatives of every structure of ``dataset``.

    ``reference`` (eV per element) is subtracted from the energies. Without a ``plan`` the
    derivatives are kept in memory and chunks hold about 100,000 edges. ``cache_path`` is the
    float32 file of a ``disk`` plan; ``edges`` the structures' edge counts if already known.

    In a process group (:func:`pesmith.distributed.current_ranks`) with derivatives kept in
    memory, each rank featurizes a consecutive block of about ``1 / size`` of the edges and the
    blocks are broadcast, so every rank ends with the whole set (with ``disk`` and
    ``recompute`` storage every rank featurizes everything).
    """
    edges = list(edges) if edges is not None else count_edges(dataset.structures, descriptor.cutoff)
    storage = plan.storage if plan is not None else "memory"
    chunk_edges = plan.chunk_edges if plan is not None else max(100_000, max(edges, default=1))
    if storage == "disk":
        if cache_path is None:
            raise ValueError("a disk plan needs cache_path")
        store: JacobianStore | None = DiskJacobian(cache_path, descriptor.n_features)
    elif storage == "recompute":
        store = RecomputeJacobian(descriptor, dataset.structures)
    else:
        store = None
    ranks = current_ranks() if storage == "memory" else None
    if ranks is None:
        features, jacobian, edge_index, vectors = _featurize(descriptor, dataset, range(len(dataset)), edges, chunk_edges, store, progress)
    else:
        features, jacobian, edge_index, vectors = _featurize_shared(descriptor, dataset, edges, chunk_edges, progress, ranks)
    if storage == "memory":
        store = MemoryJacobian(jacobian, _offsets(torch.tensor(edges, dtype=torch.int64)))
    sizes = torch.tensor([len(a) for a in dataset.structures], dtype=torch.int64)
    ref = np.array([sum(reference[s] for s in a.get_chemical_symbols()) for a in dataset.structures], dtype=np.float64)
    return FeatureSet(
        features=features,
        numbers=torch.as_tensor(np.concatenate([a.numbers for a in dataset.structures]), dtype=torch.int64),
        structure_index=torch.repeat_interleave(torch.arange(len(dataset)), sizes),
        edge_index=edge_index,
        edge_vectors=vectors,
        energies=torch.as_tensor(dataset.energies - ref, dtype=DTYPE),
        forces=torch.as_tensor(np.concatenate(dataset.forces), dtype=DTYPE),
        stresses=torch.as_tensor(np.stack([_stress_or_nan(s) for s in dataset.stresses]), dtype=DTYPE),
        volumes=torch.tensor([abs(a.cell.volume) if has_full_cell(a) else 0.0 for a in dataset.structures], dtype=DTYPE),
        atom_offsets=_offsets(sizes),
        edge_offsets=_offsets(torch.tensor(edges, dtype=torch.int64)),
        jacobian=store,
        jacobian_rows=torch.arange(len(dataset)) if store is not None else None,
        chunk_edges=chunk_edges,
        config_types=tuple(dataset.config_types),
        descriptor=descriptor,
    )


def _featurize(
    descriptor: Descriptor,
    dataset: Dataset,
    positions: Sequence[int],
    edges: Sequence[int],
    chunk_edges: int,
    store: JacobianStore | None,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Features ``(n_atoms, F)``, derivatives ``(n_edges, F, 3)`` (``None`` unless kept in memory:
    ``store`` is ``None``; a disk store gets them appended), edge index ``(2, n_edges)`` (atoms
    numbered from 0) and edge vectors ``(n_edges, 3)`` Å of the structures at ``positions``, in
    chunks of at most ``chunk_edges`` edges."""
    positions = list(positions)
    features, jacobians, edge_index, vectors = [], [], [], []
    offset = 0
    bar = tqdm(total=sum(len(dataset.structures[i]) for i in positions), desc="features", unit="atom", disable=not progress, leave=False)
    for group in groups_within([edges[i] for i in positions], chunk_edges):
        rows = [positions[i] for i in group]
        chunk = [dataset.structures[i] for i in rows]
        if store is None or store.storage == "disk":
            f, j, batch = feature_jacobian(descriptor, chunk)
            if store is None:
                jacobians.append(j)
            else:
                store.append(j, [edges[i] for i in rows])
        else:
            batch = build_batch(chunk, descriptor.cutoff)
            with torch.no_grad():
                f = descriptor.featurize(batch)
        with torch.no_grad():
            vectors.append(batch.edge_vectors())
        features.append(f)
        edge_index.append(batch.edge_index + offset)
        offset += batch.n_atoms
        bar.update(batch.n_atoms)
    bar.close()
    return (
        _cat(features, (0, descriptor.n_features)),
        _cat(jacobians, (0, descriptor.n_features, 3)) if store is None else None,
        torch.cat(edge_index, dim=1) if edge_index else torch.zeros(2, 0, dtype=torch.int64),
        _cat(vectors, (0, 3)),
    )


def _featurize_shared(
    descriptor: Descriptor, dataset: Dataset, edges: Sequence[int], chunk_edges: int, progress: bool, ranks: Ranks
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_featurize` of every structure (derivatives in memory), each rank computing its
    block (:func:`~pesmith.distributed.balanced_blocks` of the edges) and broadcasting it. An
    error on any rank (an element the descriptor lacks) is raised on every rank."""
    blocks = balanced_blocks(edges, ranks.size)
    mine = run_on_every_rank(
        lambda: _featurize(descriptor, dataset, blocks[ranks.rank], edges, chunk_edges, None, progress), ranks
    )
    n_atoms = [sum(len(dataset.structures[i]) for i in block) for block in blocks]
    n_edges = [sum(edges[i] for i in block) for block in blocks]
    n_features = descriptor.n_features
    features = broadcast_blocks(mine[0], [(n, n_features) for n in n_atoms], ranks)
    jacobian = broadcast_blocks(mine[1], [(n, n_features, 3) for n in n_edges], ranks)
    edge_index = broadcast_blocks(mine[2], [(2, n) for n in n_edges], ranks)
    vectors = broadcast_blocks(mine[3], [(n, 3) for n in n_edges], ranks)
    atom_shift = _offsets(torch.tensor(n_atoms, dtype=torch.int64))
    return (
        torch.cat(features),
        torch.cat(jacobian),
        torch.cat([index + atom_shift[k] for k, index in enumerate(edge_index)], dim=1),
        torch.cat(vectors),
    )


def groups_within(edges: Sequence[int], chunk_edges: int) -> Iterator[list[int]]:
    """Consecutive positions of ``edges`` in groups of at most ``chunk_edges`` edges (a larger
    single item is a group of its own)."""
    group, size = [], 0
    for index, n in enumerate(edges):
        if group and size + n > chunk_edges:
            yield group
            group, size = [], 0
        group.append(index)
        size += n
    if group:
        yield group


def _cat(tensors: list[torch.Tensor], empty_shape: tuple[int, ...]) -> torch.Tensor:
    return torch.cat(tensors) if tensors else torch.zeros(empty_shape, dtype=DTYPE)


def _stress_or_nan(stress: np.ndarray | None) -> np.ndarray:
    return np.full(6, np.nan) if stress is None else np.asarray(stress, dtype=np.float64)


def concatenate_feature_sets(sets: Sequence[FeatureSet]) -> FeatureSet:
    """One feature set with the structures of ``sets`` in order, sharing their derivative stores,
    so a retraining loop featurizes only its new structures."""
    sets = [s for s in sets if s.n_structures]
    if not sets:
        raise ValueError("nothing to concatenate")
    if len({s.jacobian is None for s in sets}) > 1:
        raise ValueError("cannot concatenate feature sets with and without derivatives")
    atom_shift = torch.cumsum(torch.tensor([0] + [s.n_atoms for s in sets[:-1]]), 0)
    structure_shift = torch.cumsum(torch.tensor([0] + [s.n_structures for s in sets[:-1]]), 0)
    combined = FeatureSet(
        features=torch.cat([s.features for s in sets]),
        numbers=torch.cat([s.numbers for s in sets]),
        structure_index=torch.cat([s.structure_index + k for s, k in zip(sets, structure_shift)]),
        edge_index=torch.cat([s.edge_index + k for s, k in zip(sets, atom_shift)], dim=1),
        edge_vectors=torch.cat([s.edge_vectors for s in sets]),
        energies=torch.cat([s.energies for s in sets]),
        forces=torch.cat([s.forces for s in sets]),
        stresses=torch.cat([s.stresses for s in sets]),
        volumes=torch.cat([s.volumes for s in sets]),
        atom_offsets=_offsets(torch.cat([s.atoms_per_structure for s in sets])),
        edge_offsets=_offsets(torch.cat([s.edges_per_structure for s in sets])),
        chunk_edges=min(s.chunk_edges for s in sets),
        config_types=tuple(t for s in sets for t in (s.config_types or (None,) * s.n_structures)),
        descriptor=sets[0].descriptor,
    )
    if sets[0].jacobian is not None:
        combined.jacobian = ConcatenatedJacobian([_RowView(s.jacobian, s.jacobian_rows) for s in sets])
        combined.jacobian_rows = torch.arange(combined.n_structures)
    return combined


class _RowView(JacobianStore):
    """The rows ``rows`` of another store, renumbered from zero."""

    def __init__(self, store: JacobianStore, rows: torch.Tensor):
        self.store, self.rows, self.storage = store, rows.tolist(), store.storage

    @property
    def n_structures(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return self.store.nbytes

    def read(self, structures: Sequence[int]) -> torch.Tensor:
        return self.store.read([self.rows[s] for s in structures])


def check_stress_labels(data: FeatureSet, settings: FitSettings, source: str) -> None:
    """``stress_weight > 0`` needs periodic structures with stress labels."""
    if settings.stress_weight > 0 and not bool(data.has_stress.any()):
        raise DataError(
            f"training.stress_weight is {settings.stress_weight:g} but {source} has no periodic structure with a"
            " stress label (eV/Å^3, extxyz key 'stress'); label stress or set stress_weight: 0"
        )
