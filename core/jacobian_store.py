"""Where the feature derivatives of a training set live: in memory, on disk, or recomputed.

The derivatives ``dG_center/dr_edge`` of every edge, ``(n_edges, F, 3)``, are by far the largest
array of a fit (SOAP with 952 features on mlearn Li + Si: 16 GB in float64). A store hands out
the derivatives of the structures a minibatch needs, as float64, and holds the rest:

* :class:`MemoryJacobian`: one float64 tensor (fastest; used when it fits the budget);
* :class:`DiskJacobian`: a float32 file per featurization run, read per structure with
  ``numpy.fromfile`` (so the page cache, not the process, holds what was read recently);
* :class:`RecomputeJacobian`: nothing stored; the descriptor recomputes each request;
* :class:`ConcatenatedJacobian`: several stores one after the other (a retraining loop
  featurizes only the new structures and concatenates).

Structures are numbered within each store from zero in the order they were added.
:func:`feature_jacobian` computes what the stores hold (and what ``RecomputeJacobian`` hands out).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from .descriptor import Descriptor
from .structures import DTYPE, Batch, build_batch

DISK_DTYPE = np.float32


def feature_jacobian(descriptor: Descriptor, structures: Sequence[Atoms]) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """Features ``(n_atoms, F)``, their edge derivatives ``(n_edges, F, 3)`` and the batch."""
    batch = build_batch(structures, descriptor.cutoff)
    descriptor.check_numbers(batch.numbers)
    with torch.no_grad():
        vectors = batch.edge_vectors()
    features, jacobian = descriptor.features_and_jacobian(batch.numbers, batch.edge_index, vectors)
    return features.detach(), jacobian.detach(), batch


class JacobianStore(ABC):
    """Per-structure feature derivatives ``(n_edges_s, F, 3)``, 1/Å in feature units."""

    storage: str  # "memory", "disk" or "recompute"

    @property
    @abstractmethod
    def n_structures(self) -> int:
        """Structures held."""

    @abstractmethod
    def read(self, structures: Sequence[int]) -> torch.Tensor:
        """Derivatives of ``structures`` (store numbering), concatenated in that order, float64."""

    @property
    def nbytes(self) -> int:
        """Bytes of memory the store holds (disk and recompute hold none)."""
        return 0


class MemoryJacobian(JacobianStore):
    """All derivatives in one float64 tensor, with per-structure edge offsets."""

    storage = "memory"

    def __init__(self, jacobian: torch.Tensor, edge_offsets: torch.Tensor):
        self.jacobian = jacobian
        self.edge_offsets = edge_offsets.tolist()

    @property
    def n_structures(self) -> int:
        return len(self.edge_offsets) - 1

    @property
    def nbytes(self) -> int:
        return self.jacobian.numel() * self.jacobian.element_size()

    def read(self, structures: Sequence[int]) -> torch.Tensor:
        starts = self.edge_offsets
        return torch.cat([self.jacobian[starts[s] : starts[s + 1]] for s in structures])


class DiskJacobian(JacobianStore):
    """Derivatives appended to one float32 file, structure after structure.

    The file is created (or truncated) by the constructor and deleted with the folder the caller
    owns; ``append`` adds the derivatives of consecutive structures.
    """

    storage = "disk"

    def __init__(self, path: str | Path, n_features: int):
        self.path = Path(path)
        self.n_features = int(n_features)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self._edge_offsets = [0]

    @property
    def n_structures(self) -> int:
        return len(self._edge_offsets) - 1

    def append(self, jacobian: torch.Tensor, edges_per_structure: Sequence[int]) -> None:
        """Write the derivatives ``(n_edges, F, 3)`` of structures with ``edges_per_structure`` edges."""
        with self.path.open("ab") as handle:
            handle.write(jacobian.detach().numpy().astype(DISK_DTYPE, copy=False).tobytes())
        for n in edges_per_structure:
            self._edge_offsets.append(self._edge_offsets[-1] + int(n))

    def read(self, structures: Sequence[int]) -> torch.Tensor:
        row = self.n_features * 3
        item = np.dtype(DISK_DTYPE).itemsize
        parts = []
        with self.path.open("rb") as handle:
            for s in structures:
                start, stop = self._edge_offsets[s], self._edge_offsets[s + 1]
                handle.seek(start * row * item)
                parts.append(np.fromfile(handle, dtype=DISK_DTYPE, count=(stop - start) * row))
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=DISK_DTYPE)
        return torch.from_numpy(flat.astype(np.float64)).view(-1, self.n_features, 3)


class RecomputeJacobian(JacobianStore):
    """No storage: each request runs the descriptor's ``features_and_jacobian`` again."""

    storage = "recompute"

    def __init__(self, descriptor: Descriptor, structures: Sequence[Atoms]):
        self.descriptor = descriptor
        self.structures = list(structures)

    @property
    def n_structures(self) -> int:
        return len(self.structures)

    def read(self, structures: Sequence[int]) -> torch.Tensor:
        if not structures:
            return torch.zeros(0, self.descriptor.n_features, 3, dtype=DTYPE)
        _, jacobian, _ = feature_jacobian(self.descriptor, [self.structures[s] for s in structures])
        return jacobian


class ConcatenatedJacobian(JacobianStore):
    """Several stores one after the other; structure numbering runs on across them."""

    def __init__(self, stores: Sequence[JacobianStore]):
        self.stores = list(stores)
        self.starts = np.cumsum([0] + [s.n_structures for s in self.stores])
        kinds = {s.storage for s in self.stores}
        self.storage = kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def n_structures(self) -> int:
        return int(self.starts[-1])

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.stores)

    def read(self, structures: Sequence[int]) -> torch.Tensor:
        parts = []
        owners = np.searchsorted(self.starts, structures, side="right") - 1
        for s, owner in zip(structures, owners):  # one read per run of structures in one store
            local = int(s - self.starts[owner])
            if parts and parts[-1][0] == owner:
                parts[-1][1].append(local)
            else:
                parts.append((owner, [local]))
        return torch.cat([self.stores[owner].read(local) for owner, local in parts])
