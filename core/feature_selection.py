"""Choosing a subset of a descriptor's features from the training data (``pesmith select-features``).

The features of the training atoms are standardized per element (mean 0, standard deviation 1,
as the ``nn`` and ``linear`` models see them) and stacked into ``X`` ``(n_atoms, F)``. Two
deterministic column selections:

* ``cur`` (Imbalzano et al. 2018): the column with the largest leverage on the top ``k``
  right singular vectors of ``X`` (``k = n_keep``), then every column is orthogonalized against
  it and the next is chosen the same way;
* ``greedy``: QR with column pivoting of ``X``, the first ``n_keep`` pivots (each the column with
  the most variance left after projecting out those already chosen).

Columns with no variance in the training data (constant features) are never chosen.

References
----------
G. Imbalzano, A. Anelli, D. Giofré, S. Klees, J. Behler, M. Ceriotti, "Automatic selection of
atomic fingerprints and reference configurations for machine-learning potentials", J. Chem.
Phys. 148, 241730 (2018), doi:10.1063/1.5024611.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import scipy.linalg
import torch
from ase import Atoms
from ase.data import chemical_symbols

from .descriptor import Descriptor
from .errors import ConfigError
from .features import count_edges, groups_within
from .model import standardization
from .structures import build_batch

Method = Literal["cur", "greedy"]
MAX_ATOMS = 20_000  # atoms sampled (seeded) for the selection: X is then at most 20,000 x F


def training_features(descriptor: Descriptor, structures: Sequence[Atoms], chunk_edges: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """``(n_atoms, F)`` features and ``(n_atoms,)`` atomic numbers of ``structures``, computed
    in chunks of at most ``chunk_edges`` edges without derivatives."""
    features, numbers = [], []
    edges = count_edges(structures, descriptor.cutoff)
    for group in groups_within(edges, chunk_edges):
        batch = build_batch([structures[i] for i in group], descriptor.cutoff)
        with torch.no_grad():
            features.append(descriptor.featurize(batch).numpy())
        numbers.append(batch.numbers.numpy())
    return np.concatenate(features), np.concatenate(numbers)


def standardized(features: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Features standardized per element exactly as the models do it
    (:func:`pesmith.model.standardization`): a feature constant within an element is 0 there, and
    one that varies by no more than 1e-8 (rounding noise) stays that small instead of being blown
    up to unit variance."""
    elements = np.unique(numbers)
    mean, scale = standardization(torch.from_numpy(features), torch.from_numpy(numbers), [chemical_symbols[z] for z in elements])
    index = np.searchsorted(elements, numbers)  # each atom's row of mean and scale
    return (features - mean.numpy()[index]) / scale.numpy()[index]


def select_columns(x: np.ndarray, n_keep: int, method: Method) -> np.ndarray:
    """``n_keep`` column indices of ``x`` ``(n, F)`` in the order chosen (module docstring).

    Raises
    ------
    ConfigError
        ``n_keep`` outside ``1 .. the number of columns that vary``, or an unknown method.
    """
    varying = np.flatnonzero(x.std(0) > 0)
    if not 1 <= n_keep <= varying.size:
        raise ConfigError(f"--keep must be in 1..{varying.size} (the features that vary in the training data), got {n_keep}")
    x = x[:, varying]
    if method == "greedy":
        _, _, pivots = scipy.linalg.qr(x, mode="economic", pivoting=True)
        return varying[pivots[:n_keep]]
    if method != "cur":
        raise ConfigError(f"--method must be cur or greedy, got {method!r}")
    residual, chosen = x.copy(), []
    for _ in range(n_keep):
        _, singular, vt = np.linalg.svd(residual, full_matrices=False)
        rank = int((singular > singular[0] * 1e-10).sum()) if singular.size else 0
        leverage = (vt[: max(1, min(n_keep, rank))] ** 2).sum(0)
        leverage[chosen] = -1.0
        best = int(np.argmax(leverage))
        chosen.append(best)
        column = residual[:, best] / max(np.linalg.norm(residual[:, best]), 1e-300)
        residual = residual - np.outer(column, column @ residual)
    return varying[np.array(chosen)]


def sample_rows(n_rows: int, limit: int = MAX_ATOMS, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all of ``n_rows``, or ``limit`` of them drawn without replacement."""
    if n_rows <= limit:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=limit, replace=False))
