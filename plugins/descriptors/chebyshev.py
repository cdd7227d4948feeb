"""Chebyshev expansion of the radial and angular distribution functions (Artrith-Urban-Ceder), in torch.

References
----------
N. Artrith, A. Urban and G. Ceder, "Efficient and accurate machine-learning interpolation of
atomic energies in compositions with many species", Phys. Rev. B 96, 014112 (2017),
doi:10.1103/PhysRevB.96.014112.
N. Artrith and A. Urban, "An implementation of artificial neural-network potentials for
atomistic materials simulations: Performance for TiO2", Comput. Mater. Sci. 114, 135 (2016),
doi:10.1016/j.commatsci.2015.11.047 (aenet, whose conventions this module follows).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

import torch

from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.jacobian import add_to_jacobian, refuse_second_derivatives, row_derivatives
from pesmith.structures import DTYPE, edge_pairs

from .cutoff import cosine_cutoff, cosine_cutoff_derivative

TRIPLET_CHUNK = 16_384  # triplets per vectorised step (see the ACSF module for the measurements)
MAX_ORDER = 50  # beyond this the basis is far finer than any cutoff-smoothed distribution needs


def chebyshev_polynomials(x: torch.Tensor, order: int) -> torch.Tensor:
    """(n, order + 1) values ``T_0(x) ... T_order(x)`` by the recursion ``T_{n+1} = 2 x T_n - T_{n-1}``.

    A polynomial in ``x``, so its autograd derivative is exact and finite everywhere
    (unlike ``cos(n arccos x)`` at ``x = +-1``).
    """
    values = [torch.ones_like(x)]
    if order > 0:
        values.append(x)
    for _ in range(2, order + 1):
        values.append(2.0 * x * values[-1] - values[-2])
    return torch.stack(values, dim=1)


def chebyshev_polynomials_and_derivatives(x: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``T_0(x) ... T_order(x)`` and their derivatives ``T_n'(x) = n U_{n-1}(x)``, both
    ``(n, order + 1)``, with ``U`` (second kind) by ``U_{n+1} = 2 x U_n - U_{n-1}``."""
    second_kind = [torch.ones_like(x), 2.0 * x]  # U_0, U_1
    for _ in range(2, order):
        second_kind.append(2.0 * x * second_kind[-1] - second_kind[-2])
    derivatives = [torch.zeros_like(x)] + [n * second_kind[n - 1] for n in range(1, order + 1)]
    return chebyshev_polynomials(x, order), torch.stack(derivatives, dim=1)


def default_weights(species: Sequence[str]) -> dict[str, float]:
    """aenet's default type weights ("typespin") for species in the given order.

    Centered integers skipping 0 for an even count: 2 species -> -1, +1; 3 -> -1, 0, +1;
    4 -> -2, -1, +1, +2; 5 -> -2, -1, 0, +1, +2 (aenet ``new_SFBasis``, src/ext/sfbasis.f90).
    With an odd count the middle species has weight 0 and is absent from the typed set.
    """
    n = len(species)
    weights, s = {}, -(n // 2)
    for symbol in species:
        if s == 0 and n % 2 == 0:
            s += 1
        weights[symbol] = float(s)
        s += 1
    return weights


class Chebyshev(Descriptor):
    """Chebyshev expansion of the radial and angular distribution functions (aenet's descriptor).

    For a center i with neighbors j, k (every periodic image, distances R in Å) and the cosine
    cutoff ``f_c(R) = 0.5 (cos(pi R / R_c) + 1)`` for ``R < R_c``::

        RDF_i(r)     = sum_j delta(r - R_ij) f_c(R_ij)                    (R_c = radial_cutoff)
        ADF_i(theta) = sum_{j<k} delta(theta - theta_ijk) f_c(R_ij) f_c(R_ik)  (R_c = angular_cutoff)

    are projected onto Chebyshev polynomials T_n, which gives::

        radial[n]  = sum_j     w_j     f_c(R_ij) T_n(2 R_ij / R_c - 1)              n = 0..radial_order
        angular[n] = sum_{j<k} w_j w_k f_c(R_ij) f_c(R_ik) T_n(cos theta_ijk)      n = 0..angular_order

    The radial argument maps [0, R_c] onto [-1, 1]. The angular one is ``cos theta``, as in
    aenet's code (``sfb_angular``): ``T_n(cos theta) = cos(n theta)``, a cosine series on
    [0, pi]; unlike a linear map of theta it stays differentiable for collinear triplets
    (theta = 0 or pi, common in crystals). The angular sum runs over unordered pairs of
    neighbor images (j < k), as aenet's ``do k = j+1, nat``. Neither sum includes the
    orthogonality weight of the Chebyshev basis (aenet doesn't either).

    Two sets: the **structural** one with all ``w = 1`` and the **typed** one with one weight
    per species (``weights``; default aenet's scheme, :func:`default_weights`, which gives
    Li -1, Si +1 for Li-Si, the values of the LixSi study). With a single species the typed set
    would only repeat (a multiple of) the structural one, so it is left out (aenet does the same).

    Feature order (aenet's): structural radial T_0..T_Nr, structural angular T_0..T_Na, then,
    for more than one species, typed radial T_0..T_Nr and typed angular T_0..T_Na. That is
    ``(radial_order + 1) + (angular_order + 1)`` features for one species and twice that for
    more, independent of the number of species (e.g. 48 for Li-Si at order 11).

    Parameters
    ----------
    species
        Chemical symbols the descriptor handles (sorted by atomic number internally; this is
        also the order of the default weights).
    radial_cutoff
        Cutoff R_c of the radial expansion, Å.
    angular_cutoff
        Cutoff R_c of the angular expansion, Å. ``self.cutoff`` is the larger of the two.
    radial_order, angular_order
        Highest Chebyshev order (aenet's ``radial_N`` / ``angular_N``), 0..50; each expansion has
        ``order + 1`` terms.
    weights
        Species weights of the typed set, e.g. ``{Li: -1, Si: 1}``; one finite number for every
        species. Default: :func:`default_weights`. Not used for a single species.

    Raises
    ------
    ConfigError
        At construction, naming the key: a cutoff that is not positive or shorter than the
        shortest bond, an order that is not an integer in 0..50, unknown species, weights for
        species not in ``species`` or missing some of them.

    References
    ----------
    N. Artrith, A. Urban, G. Ceder, Phys. Rev. B 96, 014112 (2017), doi:10.1103/PhysRevB.96.014112.
    """

    def __init__(
        self,
        species: Sequence[str],
        radial_cutoff: float = 8.0,
        angular_cutoff: float = 6.5,
        radial_order: int = 16,
        angular_order: int = 4,
        weights: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.species = normalize_species(species)
        self.radial_cutoff = check_cutoff(radial_cutoff, self.species, "radial_cutoff")
        self.angular_cutoff = check_cutoff(angular_cutoff, self.species, "angular_cutoff")
        self.cutoff = max(self.radial_cutoff, self.angular_cutoff)
        self.radial_order = _check_order(radial_order, "radial_order")
        self.angular_order = _check_order(angular_order, "angular_order")
        self._explicit_weights = weights is not None
        self.weights = _check_weights(weights, self.species) if weights is not None else default_weights(self.species)
        self.typed = len(self.species) > 1
        self.register_buffer("species_index", species_lookup(self.species), persistent=False)
        # (n_species,) weight of each species, in species order
        self.register_buffer(
            "species_weights", torch.tensor([self.weights[s] for s in self.species], dtype=DTYPE), persistent=False
        )

    @property
    def n_features(self) -> int:
        per_set = self.radial_order + 1 + self.angular_order + 1
        return 2 * per_set if self.typed else per_set

    def get_config(self) -> dict[str, Any]:
        return {
            "species": list(self.species),
            "radial_cutoff": self.radial_cutoff,
            "angular_cutoff": self.angular_cutoff,
            "radial_order": self.radial_order,
            "angular_order": self.angular_order,
            "weights": dict(self.weights) if self.typed or self._explicit_weights else None,
        }

    def describe(self) -> list[str]:
        radial = [f"radial T{n}(2r/Rc-1) Rc={self.radial_cutoff:g}" for n in range(self.radial_order + 1)]
        angular = [f"angular T{n}(cos) Rc={self.angular_cutoff:g}" for n in range(self.angular_order + 1)]
        names = [f"structural {name}" for name in radial + angular]
        if self.typed:
            weights = ",".join(f"{s}{w:+g}" for s, w in self.weights.items())
            names += [f"typed[{weights}] {name}" for name in radial + angular]
        return names

    def radial_terms(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        """``(n, radial_order + 1)`` terms ``f_c(R) T_n(2R/R_c - 1)`` of edges inside the radial cutoff."""
        r = torch.linalg.norm(edge_vectors, dim=1)
        terms = chebyshev_polynomials(2.0 * r / self.radial_cutoff - 1.0, self.radial_order)
        return terms * cosine_cutoff(r, self.radial_cutoff)[:, None]

    def angular_terms(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """``(n, angular_order + 1)`` terms ``f_c(R_ij) f_c(R_ik) T_n(cos theta_ijk)`` of edge pairs (Å)."""
        r1, r2 = torch.linalg.norm(first, dim=1), torch.linalg.norm(second, dim=1)
        cos = (first * second).sum(1) / (r1 * r2)
        cut = cosine_cutoff(r1, self.angular_cutoff) * cosine_cutoff(r2, self.angular_cutoff)
        return chebyshev_polynomials(cos, self.angular_order) * cut[:, None]

    def angular_terms_with_partials(self, first: torch.Tensor, second: torch.Tensor):
        """:meth:`angular_terms` ``(n, Na + 1)`` and the closed-form parts of their derivatives:
        ``d_r1``, ``d_r2``, ``d_cos`` ``(n, Na + 1)`` (partials with respect to R_ij, R_ik and
        cos theta_ijk) and ``directions``: ``(u1, u2, dcos/d first, dcos/d second)``, each ``(n, 3)``."""
        r1, r2 = torch.linalg.norm(first, dim=1), torch.linalg.norm(second, dim=1)
        u1, u2 = first / r1[:, None], second / r2[:, None]
        cos = (u1 * u2).sum(1)
        fc1, fc2 = cosine_cutoff(r1, self.angular_cutoff)[:, None], cosine_cutoff(r2, self.angular_cutoff)[:, None]
        dfc1 = cosine_cutoff_derivative(r1, self.angular_cutoff)[:, None]
        dfc2 = cosine_cutoff_derivative(r2, self.angular_cutoff)[:, None]
        polynomials, slopes = chebyshev_polynomials_and_derivatives(cos, self.angular_order)
        directions = (u1, u2, (u2 - cos[:, None] * u1) / r1[:, None], (u1 - cos[:, None] * u2) / r2[:, None])
        return polynomials * (fc1 * fc2), polynomials * (dfc1 * fc2), polynomials * (fc1 * dfc2), slopes * (fc1 * fc2), directions

    def edge_groups(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor):
        """Edges inside the radial cutoff, edge pairs ``(e1, e2)`` (j < k) inside the angular one,
        and the type weight of every edge ``(n_edges,)``."""
        centers, neighbors = edge_index
        distances = torch.linalg.norm(edge_vectors.detach(), dim=1)
        weight = self.species_weights[self.species_index[numbers[neighbors]]]  # (n_edges,) w_j
        # radial: only edges inside the radial cutoff (T_n grows fast outside [-1, 1])
        radial_edges = torch.nonzero(distances < self.radial_cutoff).squeeze(1)
        angular_edges = torch.nonzero(distances < self.angular_cutoff).squeeze(1)
        first, second = edge_pairs(centers[angular_edges])
        return radial_edges, angular_edges[first], angular_edges[second], weight

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        n_atoms = numbers.shape[0]
        centers = edge_index[0]
        radial_edges, e1, e2, weight = self.edge_groups(numbers, edge_index, edge_vectors)
        radial = self.radial_terms(edge_vectors[radial_edges])  # (n_rad, Nr + 1)
        pair_weight = weight[e1] * weight[e2] if self.typed else None
        angular = AngularSums.apply(edge_vectors, e1, e2, centers[e1], pair_weight, n_atoms, self)
        n_a = self.angular_order + 1
        blocks = [torch.zeros(n_atoms, radial.shape[1], dtype=radial.dtype).index_add(0, centers[radial_edges], radial)]
        blocks.append(angular[:, :n_a])
        if self.typed:
            typed = radial * weight[radial_edges, None]
            blocks += [torch.zeros_like(blocks[0]).index_add(0, centers[radial_edges], typed), angular[:, n_a:]]
        # aenet's order: radial, angular of the structural set, then of the typed set
        return torch.cat(blocks, dim=1)

    @torch.no_grad()
    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and per-edge derivatives: forward mode on each radial term, closed-form
        derivatives of each triplet's angular terms (:data:`TRIPLET_CHUNK` at a time), summed
        onto their edges."""
        features = self(numbers, edge_index, edge_vectors)
        jacobian = features.new_zeros(edge_vectors.shape[0], self.n_features, 3)
        n_r, n_a = self.radial_order + 1, self.angular_order + 1
        radial_edges, e1, e2, weight = self.edge_groups(numbers, edge_index, edge_vectors)
        radial_columns = torch.arange(n_r).expand(radial_edges.shape[0], n_r)
        d_radial = row_derivatives(self.radial_terms, (edge_vectors[radial_edges],), 0)  # (n_rad, Nr + 1, 3)
        add_to_jacobian(jacobian, radial_edges, radial_columns, d_radial)
        if self.typed:
            typed_radial = d_radial * weight[radial_edges, None, None]
            add_to_jacobian(jacobian, radial_edges, radial_columns + n_r + n_a, typed_radial)
        for start in range(0, e1.shape[0], TRIPLET_CHUNK):
            pair = (e1[start : start + TRIPLET_CHUNK], e2[start : start + TRIPLET_CHUNK])
            _, d_r1, d_r2, d_cos, (u1, u2, dcos_1, dcos_2) = self.angular_terms_with_partials(
                edge_vectors[pair[0]], edge_vectors[pair[1]]
            )
            columns = n_r + torch.arange(n_a).expand(pair[0].shape[0], n_a)
            for edge, d_r, u, dcos in ((pair[0], d_r1, u1, dcos_1), (pair[1], d_r2, u2, dcos_2)):
                d_angular = d_r[:, :, None] * u[:, None] + d_cos[:, :, None] * dcos[:, None]  # (chunk, Na + 1, 3)
                add_to_jacobian(jacobian, edge, columns, d_angular)
                if self.typed:
                    typed_angular = d_angular * (weight[pair[0]] * weight[pair[1]])[:, None, None]
                    add_to_jacobian(jacobian, edge, columns + n_r + n_a, typed_angular)
        return features, jacobian


class AngularSums(torch.autograd.Function):
    """The angular terms of all triplets summed per center: ``(n_atoms, Na + 1)`` structural, then,
    given ``pair_weight`` ``w_j w_k``, ``(n_atoms, Na + 1)`` typed. Computed
    :data:`TRIPLET_CHUNK` triplets at a time with no autograd graph; the backward recomputes each
    chunk with closed-form derivatives and contracts the incoming gradient through them.
    Differentiable once: ``create_graph=True`` raises."""

    @staticmethod
    def forward(ctx, edge_vectors, e1, e2, centers, pair_weight, n_atoms: int, descriptor: "Chebyshev"):
        ctx.descriptor = descriptor
        ctx.save_for_backward(edge_vectors, e1, e2, centers, pair_weight)
        n_a = descriptor.angular_order + 1
        sums = edge_vectors.new_zeros(n_atoms, 2 * n_a if pair_weight is not None else n_a)
        for start in range(0, e1.shape[0], TRIPLET_CHUNK):
            part = slice(start, start + TRIPLET_CHUNK)
            terms = descriptor.angular_terms(edge_vectors[e1[part]], edge_vectors[e2[part]])
            if pair_weight is not None:
                terms = torch.cat([terms, terms * pair_weight[part, None]], dim=1)
            sums.index_add_(0, centers[part], terms)
        return sums

    @staticmethod
    def backward(ctx, grad_sums):
        refuse_second_derivatives("Chebyshev angular terms")
        edge_vectors, e1, e2, centers, pair_weight = ctx.saved_tensors
        n_a = ctx.descriptor.angular_order + 1
        grad_vectors = torch.zeros_like(edge_vectors)
        for start in range(0, e1.shape[0], TRIPLET_CHUNK):
            part = slice(start, start + TRIPLET_CHUNK)
            _, d_r1, d_r2, d_cos, (u1, u2, dcos_1, dcos_2) = ctx.descriptor.angular_terms_with_partials(
                edge_vectors[e1[part]], edge_vectors[e2[part]]
            )
            weights = grad_sums[centers[part]]  # (n, Na + 1) or (n, 2 (Na + 1))
            if pair_weight is not None:
                weights = weights[:, :n_a] + weights[:, n_a:] * pair_weight[part, None]
            s_cos = (weights * d_cos).sum(1, keepdim=True)
            grad_vectors.index_add_(0, e1[part], (weights * d_r1).sum(1, keepdim=True) * u1 + s_cos * dcos_1)
            grad_vectors.index_add_(0, e2[part], (weights * d_r2).sum(1, keepdim=True) * u2 + s_cos * dcos_2)
        return grad_vectors, None, None, None, None, None, None


def _check_order(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value != int(value):
        raise ConfigError(f"descriptor.{key} must be an integer Chebyshev order in 0..{MAX_ORDER}, got {value!r}")
    value = int(value)
    if not 0 <= value <= MAX_ORDER:
        raise ConfigError(
            f"descriptor.{key} must be in 0..{MAX_ORDER} (the highest Chebyshev polynomial; aenet's examples"
            f" use 4 to 16), got {value}"
        )
    return value


def _check_weights(weights: Any, species: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ConfigError(f"descriptor.weights must map every species to a number, e.g. {{Li: -1, Si: 1}}; got {weights!r}")
    unknown = [s for s in weights if s not in species]
    if unknown:
        raise ConfigError(
            f"descriptor.weights: species {unknown} not in the descriptor's species ({', '.join(species)});"
            " remove them or add them to species"
        )
    missing = [s for s in species if s not in weights]
    if missing:
        raise ConfigError(f"descriptor.weights: no weight for {missing}; give one for every species ({', '.join(species)})")
    result = {}
    for symbol in species:
        value = weights[symbol]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"descriptor.weights.{symbol} must be a finite number, got {value!r}")
        result[symbol] = float(value)
    return result
