"""Building blocks for fast ``Descriptor.features_and_jacobian`` overrides.

Most descriptors are sums over a center's edges (two-body terms) and pairs of edges (three-body
terms) of functions of those edge vectors only. The derivative of a feature with respect to
one edge is then the sum of the derivatives of the terms that contain that edge, which forward
mode gives for all terms at once, with no backward pass per feature.
"""

from __future__ import annotations

from typing import Callable

import torch


def row_derivatives(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], wrt: int) -> torch.Tensor:
    """``(n, K, 3)`` derivatives of a row-wise function with respect to its ``wrt``-th input.

    ``fn(*inputs)`` maps ``(n, 3)`` vectors (Å) to ``(n, K)`` values, row r of the output
    depending only on row r of each input; three Jacobian-vector products (one per Cartesian
    direction, vectorised) then give every row's derivative.
    """

    def along(direction: torch.Tensor) -> torch.Tensor:
        tangents = tuple(direction.expand_as(x) if i == wrt else torch.zeros_like(x) for i, x in enumerate(inputs))
        return torch.func.jvp(fn, inputs, tangents)[1]

    directions = torch.eye(3, dtype=inputs[wrt].dtype, device=inputs[wrt].device)[:, None, :]
    return torch.func.vmap(along)(directions).permute(1, 2, 0)


def add_to_jacobian(jacobian: torch.Tensor, edges: torch.Tensor, columns: torch.Tensor, derivatives: torch.Tensor) -> None:
    """``jacobian[edges[t], columns[t, k]] += derivatives[t, k]`` for an ``(n_edges, F, 3)`` tensor.

    ``columns`` is ``(n, K)`` feature columns of each term (rows may repeat: terms are summed).
    """
    n_features = jacobian.shape[1]
    index = (edges[:, None] * n_features + columns).reshape(-1)
    jacobian.view(-1, 3).index_add_(0, index, derivatives.reshape(-1, 3))
