"""Derivatives of a GAP's predictions with respect to atomic positions and strain.

With ``E = sum_i sum_m alpha_m k(x_i, x_m)`` (eV), ``x_i`` the kernel-space features of atom i
and ``J_e = dx_center(e)/dr_e`` the kernel-space Jacobian of edge e (center i -> neighbor j,
``r_e = r_j - r_i + shift @ cell``, Å), the energy gradient along an edge is
``g_e = sum_m alpha_m dk(x_i, x_m)/dx_i . J_e`` (eV/Å). Everything here is linear in alpha:

* force rows ``(n_atoms, 3, M)``: ``F_k = sum_{e: i=k} g_e - sum_{e: j=k} g_e`` (the sign
  convention of :mod:`pesmith.grad`), per unit alpha;
* virial rows ``(n_structures, 6, M)``: ``W = sum_e sym(r_e (x) g_e)`` = ``dE/d(strain)`` =
  ``V * stress`` (eV, ASE Voigt order and sign, as :func:`pesmith.grad.virial_stress`), per
  unit alpha;
* the prior variance of each force component, ``(n_atoms, 3)`` eV^2/Å^2:
  ``var F_kc = sum_{p,q} D_p[:, c]^T (d^2 k(x_p, x_q) / dx_p dx_q) D_q[:, c]`` over the atoms
  p, q whose features move with atom k, ``D_p = dx_p/dr_k`` (the kernel's second derivative
  contracted with the descriptor Jacobian on both sides).

The closed forms are equal to autograd through the model (tested). Edges (and, for the variance,
atoms) are taken in blocks, so memory stays within one block of work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from pesmith.grad import VOIGT
from pesmith.structures import DTYPE

if TYPE_CHECKING:
    from .gap import GAPModel

VARIANCE_BLOCK_BYTES = 1 << 26  # ~67 MB: the largest (atoms x entries^2 x 3) block of force-variance work


def kernel_space_jacobian(
    model: "GAPModel", features: torch.Tensor, x: torch.Tensor, index: torch.Tensor, centers: torch.Tensor, jacobian: torch.Tensor
) -> torch.Tensor:
    """``(e, F, 3)`` derivatives ``dx_center/dr_edge``, 1/Å in kernel-space units, from the
    descriptor's ``jacobian`` ``(e, F, 3)`` of edges with ``centers`` ``(e,)``.

    Standardized features divide by the per-element scale; unit-normalised features project
    out the direction of ``x`` and divide by ``|q|``.
    """
    if model.kernel == "squared_exponential":
        return jacobian / model.feature_scale[index[centers]][:, :, None]
    if model.kernel == "linear":
        return jacobian
    along = torch.einsum("ef,efc->ec", x[centers], jacobian)  # (e, 3)
    norm = features[centers].norm(dim=1).clamp_min(1e-300)  # (e,) |q_center|
    return (jacobian - x[centers][:, :, None] * along[:, None, :]) / norm[:, None, None]


def edge_gradient_blocks(
    model: "GAPModel", features: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor, jacobian: torch.Tensor, block_edges: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """``(edges, d g_e / d alpha)`` per block of at most ``block_edges`` edges: a slice of the
    edges and the ``(e, M, 3)`` derivatives of their energy gradients ``g_e`` (eV/Å per unit
    alpha)."""
    x, index = model._transform(features, numbers)
    kernel = model._sparse_kernel(x, index)  # (n_atoms, M)
    # dk(x_i, x_m)/dx_i = a_im x_m + b_im x_i, both (n_atoms, M)
    if model.kernel == "squared_exponential":
        a = kernel / (model.n_features * model.theta**2)
        b = -a
    elif model.kernel == "linear":
        a = model.delta**2 * (index[:, None] == model.sparse_species[None, :]).to(DTYPE)
        b = None
    else:
        same = (index[:, None] == model.sparse_species[None, :]).to(DTYPE)
        a = model.delta**2 * model.zeta * (x @ model.sparse_points.T) ** (model.zeta - 1) * same
        b = None  # the unit-norm projection of the Jacobian makes x_i . dx_i/dr zero
    centers = edge_index[0]
    for start in range(0, jacobian.shape[0], block_edges):
        edges = slice(start, start + block_edges)
        c = centers[edges]
        jx = kernel_space_jacobian(model, features, x, index, c, jacobian[edges])  # (e, F, 3)
        gradient = a[c][:, :, None] * torch.einsum("mf,efc->emc", model.sparse_points, jx)  # (e, M, 3)
        if b is not None:
            gradient = gradient + b[c][:, :, None] * torch.einsum("ef,efc->ec", x[c], jx)[:, None, :]
        yield edges, gradient


def force_and_virial_rows(
    model: "GAPModel",
    features: torch.Tensor,
    numbers: torch.Tensor,
    edge_index: torch.Tensor,
    jacobian: torch.Tensor,
    block_edges: int,
    virial: tuple[torch.Tensor, torch.Tensor, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Force rows ``(n_atoms, 3, M)`` (eV/Å per unit alpha) and, if ``virial`` is given as
    ``(edge_vectors (n_edges, 3) Å, edge_owner (n_edges,), n_structures)``, virial rows
    ``(n_structures, 6, M)`` (eV per unit alpha, ``V * stress`` in ASE Voigt order), in one pass
    over the edges."""
    n_atoms, m = features.shape[0], model.n_sparse
    centers, neighbors = edge_index
    forces = torch.zeros(n_atoms, m, 3, dtype=DTYPE)
    virials = torch.zeros(virial[2], 3, 3, m, dtype=DTYPE) if virial is not None else None
    for edges, gradient in edge_gradient_blocks(model, features, numbers, edge_index, jacobian, block_edges):
        forces.index_add_(0, centers[edges], gradient)  # F_k = sum_{e: i=k} g_e - sum_{e: j=k} g_e
        forces.index_add_(0, neighbors[edges], -gradient)
        if virials is not None:
            vectors, owner = virial[0][edges], virial[1][edges]
            virials.index_add_(0, owner, torch.einsum("ea,emb->eabm", vectors, gradient))  # r_e (x) g_e
    if virials is None:
        return forces.transpose(1, 2), None
    voigt = torch.stack([0.5 * (virials[:, a, b] + virials[:, b, a]) for a, b in VOIGT], dim=1)  # (n_structures, 6, M)
    return forces.transpose(1, 2), voigt


def force_prior_variance(
    model: "GAPModel", features: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor, jacobian: torch.Tensor
) -> torch.Tensor:
    """``(n_atoms, 3)`` prior variance of each force component, eV^2/Å^2 (module docstring).

    The atoms whose features move with atom k are k itself (``D = -sum_{e: i=k} J_e``) and the
    centers of the edges pointing at k (``D = J_e``, one entry per edge). Target atoms are taken
    in blocks with their entries padded with zeros (which add nothing).
    """
    n_atoms = features.shape[0]
    x, index = model._transform(features, numbers)
    centers, neighbors = edge_index
    jx = kernel_space_jacobian(model, features, x, index, centers, jacobian)  # (n_edges, F, 3)
    own = torch.zeros(n_atoms, *jx.shape[1:], dtype=DTYPE).index_add_(0, centers, -jx)  # (n_atoms, F, 3)
    order = torch.argsort(neighbors, stable=True)  # edges grouped by the atom they point at
    counts = torch.bincount(neighbors, minlength=n_atoms)  # (n_atoms,)
    first = torch.cumsum(counts, 0) - counts
    n_entries = 1 + int(counts.max()) if n_atoms and edge_index.shape[1] else 1
    per_atom = n_entries * (jx.shape[1] + 3 * n_entries) * 3 * 8 * 2  # bytes of one target atom's work
    block = max(1, VARIANCE_BLOCK_BYTES // per_atom)
    variance = torch.zeros(n_atoms, 3, dtype=DTYPE)
    for start in range(0, n_atoms, block):
        targets = torch.arange(start, min(start + block, n_atoms))
        d, owners = _entries(targets, own, jx, centers, order, counts, first, n_entries)
        variance[targets] = _quadratic_form(model, x[owners], index[owners], d)
    return variance


def _entries(
    targets: torch.Tensor,
    own: torch.Tensor,
    jx: torch.Tensor,
    centers: torch.Tensor,
    order: torch.Tensor,
    counts: torch.Tensor,
    first: torch.Tensor,
    n_entries: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``D`` ``(B, P, F, 3)`` = dx_owner/dr_target and the owners ``(B, P)`` of a block of
    target atoms: entry 0 the target itself, then the centers of the edges pointing at it."""
    b = targets.shape[0]
    d = torch.zeros(b, n_entries, *own.shape[1:], dtype=DTYPE)
    owners = targets[:, None].repeat(1, n_entries)  # padding: the target (with D = 0)
    d[:, 0] = own[targets]
    slot = torch.arange(n_entries - 1)  # (P - 1,)
    valid = slot[None, :] < counts[targets][:, None]  # (B, P - 1)
    rows, slots = torch.nonzero(valid, as_tuple=True)
    edges = order[first[targets][rows] + slots]
    d[rows, slots + 1] = jx[edges]
    owners[rows, slots + 1] = centers[edges]
    return d, owners


def _quadratic_form(model: "GAPModel", x: torch.Tensor, index: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` ``sum_pq D_p[:, c]^T H(x_p, x_q) D_q[:, c]`` with ``H = d^2 k / dx dx'``, for
    entries with features ``x`` ``(B, P, F)``, species ``index`` ``(B, P)`` and ``D`` ``(B, P, F, 3)``."""
    same = (index[:, :, None] == index[:, None, :]).to(DTYPE)  # (B, P, P)
    dots = torch.einsum("bpf,bqf->bpq", x, x)  # (B, P, P)
    gram = torch.einsum("bpfc,bqfc->bpqc", d, d)  # (B, P, P, 3) D_p . D_q
    cross = torch.einsum("bpfc,bqf->bpqc", d, x)  # (B, P, P, 3) D_p^T x_q
    cross_t = cross.transpose(1, 2)  # D_q^T x_p
    if model.kernel == "squared_exponential":
        # H = k (I / l^2 - (x_p - x_q)(x_p - x_q)^T / l^4), l^2 = F theta^2
        length2 = model.n_features * model.theta**2
        squares = dots.diagonal(dim1=1, dim2=2)  # (B, P)
        distance2 = (squares[:, :, None] + squares[:, None, :] - 2.0 * dots).clamp_min(0.0)
        kernel = model.delta**2 * torch.exp(-distance2 / (2.0 * length2)) * same  # (B, P, P)
        own = cross.diagonal(dim1=1, dim2=2).transpose(1, 2)  # (B, P, 3) D_p^T x_p
        left = own[:, :, None, :] - cross  # D_p^T (x_p - x_q)
        right = cross_t - own[:, None, :, :]  # D_q^T (x_p - x_q)
        terms = kernel[..., None] * (gram / length2 - left * right / length2**2)
    elif model.kernel == "linear":
        terms = model.delta**2 * same[..., None] * gram  # H = delta^2 I
    else:
        # H = delta^2 (zeta s^(zeta-1) I + zeta (zeta-1) s^(zeta-2) x_q x_p^T), s = x_p . x_q
        zeta = model.zeta
        terms = (zeta * dots ** (zeta - 1) * same)[..., None] * gram
        if zeta >= 2:
            terms = terms + (zeta * (zeta - 1) * dots ** (zeta - 2) * same)[..., None] * cross * cross_t
        terms = model.delta**2 * terms
    return terms.sum((1, 2))
