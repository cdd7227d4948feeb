"""Choosing the sparse points of a sparse Gaussian process: CUR, furthest-point, uniform random.

Each selector takes the environments of one element as rows of ``x`` ``(n, F)`` (already in the
space the kernel sees: standardized features for a squared-exponential kernel, unit-normalised
ones for a dot-product kernel) and returns ``n_sparse`` distinct row indices. All three are
seeded through a :class:`numpy.random.Generator`; none touches a global RNG.

References
----------
M. W. Mahoney and P. Drineas, "CUR matrix decompositions for improved data analysis",
PNAS 106, 697 (2009), doi:10.1073/pnas.0803205106 (leverage-score column sampling).
A. P. Bartók et al., "Machine learning unifies the modeling of materials and molecules",
Sci. Adv. 3, e1701816 (2017), doi:10.1126/sciadv.1701816 (CUR for GAP sparse points).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SparseMethod = Literal["cur", "fps", "random"]
SPARSE_METHODS: tuple[str, ...] = ("cur", "fps", "random")


def select_sparse(x: np.ndarray, n_sparse: int, method: SparseMethod, rng: np.random.Generator) -> np.ndarray:
    """``n_sparse`` distinct row indices of ``x`` ``(n, F)`` chosen by ``method``, sorted.

    Parameters
    ----------
    x
        Environments as rows, in the kernel's feature space (dimensionless).
    n_sparse
        How many to choose, ``1 <= n_sparse <= n``.
    method
        ``cur``: sampling without replacement with probabilities proportional to the rows'
        statistical leverage on the top ``min(n_sparse, rank)`` left singular vectors of ``x``;
        ``fps``: furthest-point sampling in Euclidean distance (the same order as the kernel
        distance for a squared-exponential kernel, and for a dot-product kernel on unit vectors
        with non-negative overlaps such as SOAP), from a random first point;
        ``random``: uniform without replacement.
    rng
        The source of randomness (its state advances).
    """
    n = x.shape[0]
    assert 1 <= n_sparse <= n, (n_sparse, n)
    if method == "random":
        chosen = rng.choice(n, size=n_sparse, replace=False)
    elif method == "fps":
        chosen = _furthest_points(x, n_sparse, rng)
    elif method == "cur":
        chosen = _cur(x, n_sparse, rng)
    else:
        raise ValueError(f"unknown sparse method {method!r}; valid: {', '.join(SPARSE_METHODS)}")
    return np.sort(chosen)


def _furthest_points(x: np.ndarray, n_sparse: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy max-min selection: each new point is the one furthest from all chosen so far."""
    chosen = np.empty(n_sparse, dtype=np.int64)
    chosen[0] = rng.integers(x.shape[0])
    distance2 = ((x - x[chosen[0]]) ** 2).sum(1)  # (n,) squared distance to the nearest chosen point
    for k in range(1, n_sparse):
        distance2[chosen[k - 1]] = -1.0  # never choose a point twice, even among duplicates
        chosen[k] = int(np.argmax(distance2))
        distance2 = np.minimum(distance2, ((x - x[chosen[k]]) ** 2).sum(1))
    return chosen


def _cur(x: np.ndarray, n_sparse: int, rng: np.random.Generator) -> np.ndarray:
    """Rows sampled with probability proportional to their leverage scores (Mahoney & Drineas)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)  # u: (n, min(n, F))
    rank = int((s > s.max(initial=0.0) * 1e-12).sum())
    k = max(1, min(n_sparse, rank))
    leverage = (u[:, :k] ** 2).sum(1) / k  # (n,), sums to 1
    # A floor keeps every row selectable, so n_sparse beyond the rank still finds distinct rows.
    probability = leverage + 1e-12
    return rng.choice(x.shape[0], size=n_sparse, replace=False, p=probability / probability.sum())
