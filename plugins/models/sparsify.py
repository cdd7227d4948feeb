"""Choosing the sparse points of a sparse Gaussian process: CUR, furthest-point, uniform random,
and gap_fit's ``uniform`` grid over a scalar (the pair distances of a 2-body term).

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

from pathlib import Path
from typing import Literal

import numpy as np

from pesmith.atomic_io import write_text_atomic
from pesmith.errors import ConfigError

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


def select_uniform(values: np.ndarray, n_sparse: int, rng: np.random.Generator) -> np.ndarray:
    """``n_sparse`` distinct indices of ``values`` ``(n,)`` spread evenly over their range, sorted:
    gap_fit's ``sparse_method=uniform`` for a one-dimensional descriptor (its ``select_uniform``).

    The range from the smallest to the largest value is cut into ``n_sparse`` bins centred on
    an even grid (bin ``round((v - min) / (max - min) (n_sparse - 1))``); the first value of each
    bin in the given order is taken, then, while points are missing, one more not yet taken from
    a non-empty bin drawn at random (uniformly over the bins that still have one, then uniformly
    within it).
    """
    n = values.shape[0]
    assert 1 <= n_sparse <= n, (n_sparse, n)
    low, span = float(values.min()), float(values.max() - values.min())
    bins = np.rint((values - low) / span * (n_sparse - 1)).astype(np.int64) if span > 0 else np.zeros(n, dtype=np.int64)
    _, first = np.unique(bins, return_index=True)  # the first value of each non-empty bin
    taken = np.zeros(n, dtype=bool)
    taken[first[:n_sparse]] = True
    while taken.sum() < n_sparse:  # O(n) per point: fine for the tens of points of a 2-body term
        bin_ = rng.choice(np.unique(bins[~taken]))
        taken[rng.choice(np.flatnonzero((bins == bin_) & ~taken))] = True
    return np.flatnonzero(taken)


def sparse_file_path(template: str, element: str, n_elements: int, key: str) -> Path:
    """The file of ``element``'s sparse indices: ``template`` with ``{element}`` replaced by its
    symbol (required when ``n_elements`` > 1 elements have sparse points; ``key`` names the setting)."""
    if "{element}" not in template:
        if n_elements > 1:
            raise ConfigError(
                f"{key} {template!r} must contain {{element}} (e.g. sparse_{{element}}.idx): the training data has"
                f" {n_elements} elements (or element pairs), each with its own sparse points and file"
            )
        return Path(template)
    return Path(template.replace("{element}", element))


def read_sparse_index(path: Path, n_environments: int, key: str) -> np.ndarray:
    """Sorted 0-based row indices from a gap_fit index file (``sparse_method=index_file``): one
    1-based index per line into the element's ``n_environments`` training environments, in
    training-set order (structure by structure, atoms in order). Raises a one-line
    :class:`ConfigError` naming ``key`` and the file when it is missing or malformed."""
    where = f"{key} {str(path)!r}"
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror or exc}); give an existing index file") from None
    try:
        indices = np.array([int(line) for line in lines], dtype=np.int64)
    except ValueError:
        bad = next(line for line in lines if not line.lstrip("+-").isdigit())
        raise ConfigError(f"{where}: line {bad[:40]!r} is not an integer; the file holds one 1-based index per line") from None
    if indices.size == 0:
        raise ConfigError(f"{where} holds no indices; it needs one 1-based index per line")
    out_of_range = indices[(indices < 1) | (indices > n_environments)]
    if out_of_range.size:
        raise ConfigError(
            f"{where}: index {int(out_of_range[0])} is outside 1..{n_environments} (the element's training"
            " environments; indices are 1-based, as gap_fit's)"
        )
    unique, counts = np.unique(indices, return_counts=True)
    if (counts > 1).any():
        raise ConfigError(f"{where}: index {int(unique[counts > 1][0])} appears more than once; list each sparse point once")
    return unique - 1


def write_sparse_values(path: Path, cutoffs: np.ndarray, values: np.ndarray) -> None:
    """Write sparse points as gap_fit's sparse file of descriptor values (its
    ``sparse_method=file``): for each point its cutoff weight ``cutoffs`` (dimensionless), then its
    descriptor values (the rows of ``values`` ``(M, d)``), one number per line, full precision."""
    rows = np.column_stack([cutoffs, values.reshape(len(cutoffs), -1)])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"{v!r}\n" for v in rows.ravel().tolist()))


def write_sparse_index(path: Path, rows: np.ndarray) -> None:
    """Write 0-based ``rows`` as a gap_fit index file (1-based, one per line, sorted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"{int(r) + 1}\n" for r in np.sort(rows)))
