"""Atom-centered symmetry functions (ACSF) of Behler, in torch.

References
----------
J. Behler, "Atom-centered symmetry functions for constructing high-dimensional neural network
potentials", J. Chem. Phys. 134, 074106 (2011), doi:10.1063/1.3553717.
G. Imbalzano et al., "Automatic selection of atomic fingerprints and reference configurations
for machine-learning potentials", J. Chem. Phys. 148, 241730 (2018), doi:10.1063/1.5024611
(the shifted radial grid).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.jacobian import add_to_jacobian, refuse_second_derivatives, row_derivatives
from pesmith.structures import DTYPE, edge_pairs

from .cutoff import cosine_cutoff, cosine_cutoff_derivative


TRIPLET_CHUNK = 16_384
"""Triplets per vectorised step. Measured on this project's 2-core machine: the triplet factors
with derivatives ran 2.4x faster per triplet in steps of 2,000-4,000 than of 50,000 (cache);
energy + forces of a 1,000-atom Li-Si cell took the same time at 1 thread with 4,096 and 16,384,
and 1.5x less with 16,384 at 2 threads (larger steps let both threads work)."""


def radial_grid(n_radial: int, cutoff: float, r_min: float) -> list[list[float]]:
    """Shifted radial grid: centers ``R_s,k = r_min + k d`` (k < n_radial), ``d = (r_c - r_min)/n_radial``.

    Each Gaussian has width ``d`` (``eta = 1 / (2 d^2)``, 1/Å^2), so neighbouring Gaussians
    overlap at half their height and together cover ``[r_min, r_c]`` evenly.
    """
    spacing = (cutoff - r_min) / n_radial
    eta = 1.0 / (2.0 * spacing**2)
    return [[eta, r_min + k * spacing] for k in range(n_radial)]


def angular_grid(n_angular: int, cutoff: float, zetas: Sequence[float]) -> list[list[float]]:
    """Angular grid: ``n_angular`` widths ``sigma_k = r_c k / n_angular`` (``eta = 1/(2 sigma_k^2)``),
    each combined with every ``zeta`` and ``lambda = -1, +1``.
    """
    params = []
    for k in range(1, n_angular + 1):
        eta = 1.0 / (2.0 * (cutoff * k / n_angular) ** 2)
        for zeta in zetas:
            for lam in (-1.0, 1.0):
                params.append([eta, float(zeta), lam])
    return params


class TripletPartials(NamedTuple):
    """Partial derivatives of the angular factors ``[radial4 | radial5 | angle]`` (K columns) of
    n triplets j-i-k with respect to R_ij (``d_r1``: radial columns), R_ik (``d_r2``), R_jk
    (``d_r3``: G4 radial columns) and cos theta_ijk (``d_cos``: angle columns), with the unit
    vectors ``u1 = r_ij/R_ij``, ``u2 = r_ik/R_ik``, ``u3 = (r_ik - r_ij)/R_jk`` and the gradients
    of cos theta with respect to the first (i->j) and second (i->k) edge vectors (1/Å)."""

    d_r1: torch.Tensor  # (n, 2 n_eta)
    d_r2: torch.Tensor  # (n, 2 n_eta)
    d_r3: torch.Tensor  # (n, n_eta)
    d_cos: torch.Tensor  # (n, n_zl)
    u1: torch.Tensor  # (n, 3)
    u2: torch.Tensor
    u3: torch.Tensor
    dcos_first: torch.Tensor
    dcos_second: torch.Tensor

    def _wrt(self, d_r: torch.Tensor, u: torch.Tensor, r3_sign: float, dcos: torch.Tensor) -> torch.Tensor:
        radial = d_r[:, :, None] * u[:, None]  # (n, 2 n_eta, 3)
        n_eta = self.d_r3.shape[1]
        radial[:, :n_eta] += r3_sign * self.d_r3[:, :, None] * self.u3[:, None]
        return torch.cat([radial, self.d_cos[:, :, None] * dcos[:, None]], dim=1)

    def wrt_first(self) -> torch.Tensor:
        """``(n, K, 3)`` derivatives of the factors with respect to the first edge vector."""
        return self._wrt(self.d_r1, self.u1, -1.0, self.dcos_first)

    def wrt_second(self) -> torch.Tensor:
        """``(n, K, 3)`` derivatives of the factors with respect to the second edge vector."""
        return self._wrt(self.d_r2, self.u2, 1.0, self.dcos_second)

    def contract(self, factor_gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients ``(n, 3)`` with respect to the first and second edge vectors of a scalar
        whose gradients with respect to the factors are ``factor_gradients`` ``(n, K)``."""
        n_radial, n_eta = self.d_r1.shape[1], self.d_r3.shape[1]
        radial, angle = factor_gradients[:, :n_radial], factor_gradients[:, n_radial:]
        s1 = (radial * self.d_r1).sum(1, keepdim=True)
        s2 = (radial * self.d_r2).sum(1, keepdim=True)
        s3 = (radial[:, :n_eta] * self.d_r3).sum(1, keepdim=True) * self.u3
        s_cos = (angle * self.d_cos).sum(1, keepdim=True)
        return s1 * self.u1 - s3 + s_cos * self.dcos_first, s2 * self.u2 + s3 + s_cos * self.dcos_second


class ACSF(Descriptor):
    """Behler's atom-centered symmetry functions: radial G2, angular G4 and G5.

    With ``f_c`` the cosine cutoff, for center i, neighbors j, k (all within the cutoff, Å)::

        G2 = sum_j exp(-eta (R_ij - R_s)^2) f_c(R_ij)
        G4 = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
             exp(-eta (R_ij^2 + R_ik^2 + R_jk^2)) f_c(R_ij) f_c(R_ik) f_c(R_jk)
        G5 = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
             exp(-eta (R_ij^2 + R_ik^2)) f_c(R_ij) f_c(R_ik)

    Feature order (the same as DScribe's ACSF without its G1/G3 columns): for each neighbor
    species in ``species`` order, all G2; then for each unordered species pair (a, b) with
    a >= b in the order (0,0), (1,0), (1,1), (2,0), ..., all G4 then all G5.

    Parameters
    ----------
    species
        Chemical symbols the descriptor handles (sorted by atomic number internally).
    cutoff
        Radial cutoff r_c, Å.
    angular_cutoff
        Cutoff of the angular terms, Å (defaults to ``cutoff``). A smaller one is much cheaper:
        the number of triplets grows with its sixth power.
    n_radial, r_min
        Size and inner radius (Å) of the default shifted G2 grid (:func:`radial_grid`).
    n_angular, zetas
        Size of the default G4 grid (:func:`angular_grid`).
    g2_params
        Explicit ``[[eta (1/Å^2), R_s (Å)], ...]``; replaces the default grid.
    g4_params, g5_params
        Explicit ``[[eta (1/Å^2), zeta, lambda], ...]``. ``g4_params`` replaces the default
        grid; G5 is off unless given.
    """

    def __init__(
        self,
        species: Sequence[str],
        cutoff: float = 6.0,
        angular_cutoff: float | None = None,
        n_radial: int = 12,
        r_min: float = 0.5,
        n_angular: int = 4,
        zetas: Sequence[float] = (1.0, 4.0, 16.0),
        g2_params: Sequence[Sequence[float]] | None = None,
        g4_params: Sequence[Sequence[float]] | None = None,
        g5_params: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        self.species = normalize_species(species)
        cutoff = check_cutoff(cutoff, self.species, "cutoff")
        angular_cutoff = cutoff if angular_cutoff is None else check_cutoff(angular_cutoff, self.species, "angular_cutoff")
        if not angular_cutoff <= cutoff:
            raise ConfigError(f"descriptor.angular_cutoff must not exceed cutoff = {cutoff} Å, got {angular_cutoff}")
        if n_radial < 1 or n_angular < 0:
            raise ConfigError(f"descriptor.n_radial must be >= 1 and n_angular >= 0, got {n_radial}, {n_angular}")
        if not 0 <= r_min < cutoff:
            raise ConfigError(f"descriptor.r_min must be in [0, cutoff) Å, got {r_min}")
        self.cutoff = float(cutoff)
        self.angular_cutoff = float(angular_cutoff)
        self.n_radial, self.r_min, self.n_angular, self.zetas = n_radial, float(r_min), n_angular, tuple(zetas)
        self._explicit = {"g2_params": g2_params, "g4_params": g4_params, "g5_params": g5_params}
        g2 = _check_params("g2_params", g2_params, 2) if g2_params is not None else radial_grid(n_radial, cutoff, r_min)
        g4 = (
            _check_params("g4_params", g4_params, 3)
            if g4_params is not None
            else angular_grid(n_angular, self.angular_cutoff, zetas)
        )
        g5 = _check_params("g5_params", g5_params, 3) if g5_params is not None else []
        self.g2 = torch.tensor(g2, dtype=DTYPE).reshape(-1, 2)
        self.g45 = torch.tensor(g4 + g5, dtype=DTYPE).reshape(-1, 3)
        self.n_g4 = len(g4)
        etas = sorted({p[0] for p in g4 + g5})
        zeta_lambdas = sorted({(p[1], p[2]) for p in g4 + g5})
        self.etas = torch.tensor(etas, dtype=DTYPE)  # (n_eta,) distinct angular etas
        self.lambdas = torch.tensor([zl[1] for zl in zeta_lambdas], dtype=DTYPE)  # (n_zl,)
        self.zeta_values = [zl[0] for zl in zeta_lambdas]
        columns = [etas.index(p[0]) * len(zeta_lambdas) + zeta_lambdas.index((p[1], p[2])) for p in g4 + g5]
        self.g4_columns = torch.tensor(columns[: len(g4)], dtype=torch.int64)  # into the (eta, zl) grid
        self.g5_columns = torch.tensor(columns[len(g4) :], dtype=torch.int64)
        n_species = len(self.species)
        self.n_pairs = n_species * (n_species + 1) // 2
        self.register_buffer("species_index", species_lookup(self.species), persistent=False)

    @property
    def n_features(self) -> int:
        return len(self.species) * self.g2.shape[0] + self.n_pairs * self.g45.shape[0]

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "species": list(self.species),
            "cutoff": self.cutoff,
            "angular_cutoff": self.angular_cutoff,
            "n_radial": self.n_radial,
            "r_min": self.r_min,
            "n_angular": self.n_angular,
            "zetas": list(self.zetas),
        }
        config.update({k: [list(map(float, p)) for p in v] for k, v in self._explicit.items() if v is not None})
        return config

    def describe(self) -> list[str]:
        names = [f"G2[{s}](eta={eta:.4g},Rs={rs:.4g})" for s in self.species for eta, rs in self.g2.tolist()]
        for a in range(len(self.species)):
            for b in range(a + 1):
                pair = f"{self.species[b]}-{self.species[a]}"
                for n, (eta, zeta, lam) in enumerate(self.g45.tolist()):
                    kind = "G4" if n < self.n_g4 else "G5"
                    names.append(f"{kind}[{pair}](eta={eta:.4g},zeta={zeta:g},lambda={lam:+g})")
        return names

    def radial_terms(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        """``(n_edges, n_g2)`` G2 terms of each edge (center -> neighbor vectors, Å)."""
        distances = torch.linalg.norm(edge_vectors, dim=1)
        eta, shift = self.g2[:, 0], self.g2[:, 1]
        return torch.exp(-eta * (distances[:, None] - shift) ** 2) * cosine_cutoff(distances, self.cutoff)[:, None]

    def angular_factors(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """``(n_triplets, 2 n_eta + n_zl)``: the G4 and G5 radial factors (one per distinct eta)
        and the angular factors (one per distinct (zeta, lambda)) of each pair of edges i->j,
        i->k (Å). Every G4/G5 term is a product of one radial and one angular factor."""
        r1, r2 = torch.linalg.norm(first, dim=1), torch.linalg.norm(second, dim=1)
        r3 = torch.linalg.norm(second - first, dim=1)
        cos = (first * second).sum(1) / (r1 * r2)
        radial5 = torch.exp(-self.etas * (r1**2 + r2**2)[:, None]) * (
            cosine_cutoff(r1, self.angular_cutoff) * cosine_cutoff(r2, self.angular_cutoff)
        )[:, None]  # (n_triplets, n_eta)
        radial4 = radial5 * (torch.exp(-self.etas * r3[:, None] ** 2) * cosine_cutoff(r3, self.angular_cutoff)[:, None])
        base = 0.5 * (1.0 + cos[:, None] * self.lambdas)  # (n_triplets, n_zl)
        angle = 2.0 * torch.stack([base[:, k] ** z for k, z in enumerate(self.zeta_values)], dim=1)
        return torch.cat([radial4, radial5, angle], dim=1)

    def angular_factors_with_partials(
        self, first: torch.Tensor, second: torch.Tensor
    ) -> tuple[torch.Tensor, "TripletPartials"]:
        """Closed-form :meth:`angular_factors` ``(n, K)`` and their partial derivatives with
        respect to the triplet's distances and angle (:class:`TripletPartials`)."""
        r1, r2 = torch.linalg.norm(first, dim=1), torch.linalg.norm(second, dim=1)
        third = second - first
        r3 = torch.linalg.norm(third, dim=1)
        u1, u2, u3 = first / r1[:, None], second / r2[:, None], third / r3[:, None]  # unit vectors
        cos = (u1 * u2).sum(1)
        rc, eta = self.angular_cutoff, self.etas
        fc1, fc2, fc3 = (cosine_cutoff(r, rc)[:, None] for r in (r1, r2, r3))
        dfc1, dfc2, dfc3 = (cosine_cutoff_derivative(r, rc)[:, None] for r in (r1, r2, r3))
        gauss12 = torch.exp(-eta * (r1**2 + r2**2)[:, None])  # (n, n_eta)
        gauss3 = torch.exp(-eta * (r3**2)[:, None])
        radial5 = gauss12 * (fc1 * fc2)
        third_factor = gauss3 * fc3
        radial4 = radial5 * third_factor
        d5_r1 = gauss12 * fc2 * (dfc1 - 2.0 * eta * r1[:, None] * fc1)
        d5_r2 = gauss12 * fc1 * (dfc2 - 2.0 * eta * r2[:, None] * fc2)
        base = 0.5 * (1.0 + cos[:, None] * self.lambdas)  # (n, n_zl)
        zeta = torch.tensor(self.zeta_values, dtype=base.dtype)
        power = base ** (zeta - 1.0)
        partials = TripletPartials(
            d_r1=torch.cat([d5_r1 * third_factor, d5_r1], dim=1),
            d_r2=torch.cat([d5_r2 * third_factor, d5_r2], dim=1),
            d_r3=radial5 * gauss3 * (dfc3 - 2.0 * eta * r3[:, None] * fc3),
            d_cos=zeta * power * self.lambdas,
            u1=u1,
            u2=u2,
            u3=u3,
            dcos_first=(u2 - cos[:, None] * u1) / r1[:, None],
            dcos_second=(u1 - cos[:, None] * u2) / r2[:, None],
        )
        return torch.cat([radial4, radial5, 2.0 * power * base], dim=1), partials

    def angular_terms(self, factors: torch.Tensor, derivatives: torch.Tensor | None = None) -> torch.Tensor:
        """``(n_triplets, n_g4 + n_g5)`` G4 then G5 terms from :meth:`angular_factors`, or, given the
        factors' derivatives ``(n_triplets, 2 n_eta + n_zl, 3)``, the terms' derivatives
        ``(n_triplets, n_g4 + n_g5, 3)`` by the product rule."""
        n_eta = self.etas.shape[0]
        radial4, radial5, angle = factors[:, :n_eta], factors[:, n_eta : 2 * n_eta], factors[:, 2 * n_eta :]
        parts = []
        for k, (radial_part, columns) in enumerate(((radial4, self.g4_columns), (radial5, self.g5_columns))):
            if columns.numel() == 0:  # no G4 or no G5 requested: skip its (eta, zeta, lambda) grid
                continue
            if derivatives is None:
                grid = radial_part[:, :, None] * angle[:, None, :]  # (n_triplets, n_eta, n_zl)
            else:
                d_radial = derivatives[:, k * n_eta : (k + 1) * n_eta]
                d_angle = derivatives[:, 2 * n_eta :]
                grid = d_radial[:, :, None] * angle[:, None, :, None] + radial_part[:, :, None, None] * d_angle[:, None]
            parts.append(grid.flatten(1, 2)[:, columns])  # the requested (eta, zeta, lambda)
        return torch.cat(parts, dim=1)

    def angular_factor_gradients(self, factors: torch.Tensor, term_gradients: torch.Tensor) -> torch.Tensor:
        """``(n_triplets, 2 n_eta + n_zl)`` gradients of a scalar with respect to the factors of
        :meth:`angular_factors`, given its gradients ``(n_triplets, n_g4 + n_g5)`` with respect to
        the terms of :meth:`angular_terms` (the transpose of the product rule there)."""
        n_eta, n_zl = self.etas.shape[0], self.lambdas.shape[0]
        radial4, radial5, angle = factors[:, :n_eta], factors[:, n_eta : 2 * n_eta], factors[:, 2 * n_eta :]
        gradients = torch.zeros_like(factors)
        term_start = 0
        for k, (radial_part, columns) in enumerate(((radial4, self.g4_columns), (radial5, self.g5_columns))):
            n_terms = columns.shape[0]
            if n_terms == 0:
                continue
            grid = factors.new_zeros(factors.shape[0], n_eta * n_zl)
            grid.index_add_(1, columns, term_gradients[:, term_start : term_start + n_terms])
            grid = grid.reshape(-1, n_eta, n_zl)  # d(scalar) / d(radial x angle) per (eta, zeta, lambda)
            gradients[:, k * n_eta : (k + 1) * n_eta] = torch.einsum("tez,tz->te", grid, angle)
            gradients[:, 2 * n_eta :] += torch.einsum("tez,te->tz", grid, radial_part)
            term_start += n_terms
        return gradients

    def triplets(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor):
        """Edge pairs ``(e1, e2)`` of each triplet inside the angular cutoff and their species-pair slot."""
        centers, neighbors = edge_index
        distances = torch.linalg.norm(edge_vectors.detach(), dim=1)
        angular_edges = torch.nonzero(distances < self.angular_cutoff).squeeze(1)  # (n_ang,)
        first, second = edge_pairs(centers[angular_edges])
        e1, e2 = angular_edges[first], angular_edges[second]  # (n_triplets,)
        neighbor_species = self.species_index[numbers[neighbors]]
        s1, s2 = neighbor_species[e1], neighbor_species[e2]
        high, low = torch.maximum(s1, s2), torch.minimum(s1, s2)
        return e1, e2, high * (high + 1) // 2 + low

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        n_atoms = numbers.shape[0]
        n_species = len(self.species)
        centers, neighbors = edge_index
        neighbor_species = self.species_index[numbers[neighbors]]  # (n_edges,)
        g2 = self.radial_terms(edge_vectors)
        radial = torch.zeros(n_atoms * n_species, g2.shape[1], dtype=g2.dtype, device=g2.device)
        radial = radial.index_add(0, centers * n_species + neighbor_species, g2)
        radial = radial.reshape(n_atoms, -1)  # (n_atoms, n_species * n_g2)
        if self.g45.shape[0] == 0:
            return radial
        e1, e2, pair = self.triplets(numbers, edge_index, edge_vectors)
        angular = AngularSum.apply(edge_vectors, e1, e2, centers[e1] * self.n_pairs + pair, n_atoms * self.n_pairs, self)
        return torch.cat([radial, angular.reshape(n_atoms, -1)], dim=1)

    @torch.no_grad()
    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and per-edge derivatives: forward mode on each G2 term, closed-form derivatives
        of each triplet's radial and angular factors (:data:`TRIPLET_CHUNK` at a time), the product
        rule for the G4/G5 terms, summed onto the edges they contain."""
        features = self(numbers, edge_index, edge_vectors)
        n_edges, n_g2 = edge_vectors.shape[0], self.g2.shape[0]
        jacobian = features.new_zeros(n_edges, self.n_features, 3)
        edges = torch.arange(n_edges, device=edge_vectors.device)
        neighbor_species = self.species_index[numbers[edge_index[1]]]
        radial_columns = neighbor_species[:, None] * n_g2 + torch.arange(n_g2)
        add_to_jacobian(jacobian, edges, radial_columns, row_derivatives(self.radial_terms, (edge_vectors,), 0))
        if self.g45.shape[0] == 0:
            return features, jacobian
        e1, e2, pair = self.triplets(numbers, edge_index, edge_vectors)
        n_g45 = self.g45.shape[0]
        for start in range(0, e1.shape[0], TRIPLET_CHUNK):
            part = slice(start, start + TRIPLET_CHUNK)
            factors, partials = self.angular_factors_with_partials(edge_vectors[e1[part]], edge_vectors[e2[part]])
            columns = len(self.species) * n_g2 + pair[part, None] * n_g45 + torch.arange(n_g45)
            for edge, d_factors in ((e1[part], partials.wrt_first()), (e2[part], partials.wrt_second())):
                add_to_jacobian(jacobian, edge, columns, self.angular_terms(factors, d_factors))
        return features, jacobian


class AngularSum(torch.autograd.Function):
    """G4/G5 terms of all triplets summed into ``(n_rows, n_g4 + n_g5)`` rows (center x species
    pair), :data:`TRIPLET_CHUNK` triplets at a time with no autograd graph. The backward recomputes
    each chunk's factors with their closed-form derivatives and contracts the incoming gradient
    through them, so neither pass keeps per-term intermediates (which autograd would hold for
    every triplet). Differentiable once: ``create_graph=True`` raises.
    """

    @staticmethod
    def forward(ctx, edge_vectors, e1, e2, rows, n_rows: int, descriptor: "ACSF"):
        ctx.descriptor = descriptor
        ctx.save_for_backward(edge_vectors, e1, e2, rows)
        sums = edge_vectors.new_zeros(n_rows, descriptor.g45.shape[0])
        for start in range(0, e1.shape[0], TRIPLET_CHUNK):
            part = slice(start, start + TRIPLET_CHUNK)
            factors = descriptor.angular_factors(edge_vectors[e1[part]], edge_vectors[e2[part]])
            sums.index_add_(0, rows[part], descriptor.angular_terms(factors))
        return sums

    @staticmethod
    def backward(ctx, grad_sums):
        refuse_second_derivatives("ACSF angular terms")
        edge_vectors, e1, e2, rows = ctx.saved_tensors
        descriptor = ctx.descriptor
        grad_vectors = torch.zeros_like(edge_vectors)
        for start in range(0, e1.shape[0], TRIPLET_CHUNK):
            part = slice(start, start + TRIPLET_CHUNK)
            factors, partials = descriptor.angular_factors_with_partials(edge_vectors[e1[part]], edge_vectors[e2[part]])
            factor_gradients = descriptor.angular_factor_gradients(factors, grad_sums[rows[part]])  # (n, K)
            grad_first, grad_second = partials.contract(factor_gradients)
            grad_vectors.index_add_(0, e1[part], grad_first)
            grad_vectors.index_add_(0, e2[part], grad_second)
        return grad_vectors, None, None, None, None, None


def _check_params(key: str, params: Sequence[Sequence[float]], width: int) -> list[list[float]]:
    rows = [list(map(float, p)) for p in params]
    if any(len(r) != width for r in rows):
        raise ConfigError(f"descriptor.{key} must be a list of rows with {width} numbers each, got {params!r}")
    if any(r[0] < 0 for r in rows):
        raise ConfigError(f"descriptor.{key}: eta must be >= 0 (1/Å^2), got {params!r}")
    if width == 3 and any(r[2] not in (-1.0, 1.0) for r in rows):
        raise ConfigError(f"descriptor.{key}: lambda must be -1 or +1, got {params!r}")
    return rows
