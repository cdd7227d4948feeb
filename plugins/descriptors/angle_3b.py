"""GAP's 3-body term (gap_fit's ``angle_3b``) in pesmith's per-atom feature-space form.

gap_fit puts a GP on each triplet j-i-k (center i, neighbors j != k within ``r_c``), on the
invariants that do not change when j and k swap (QUIP, ``descriptors.F90``, ``angle_3b``),

    q = (q1, q2, q3) = (r_ij + r_ik, (r_ij - r_ik)^2, r_jk)      (Å, Å^2, Å),

with the prior ``cov(f(q), f(q')) = delta^2 w w' exp(-sum_d (q_d - q'_d)^2 / (2 theta_d^2))``
(squared-exponential kernel with one length per invariant) and the weight
``w = fc(r_ij) fc(r_ik)`` (gap_fit's cosine switch ``fc``, as in ``distance_2b``). Here each
atom sums its triplets over a product basis on a 3-D grid of the invariants, one block per
unordered neighbor-element pair ``p = {Z_j, Z_k}``:

    G_{i,(p,a,b,c)} = sum_{j<k, {Z_j, Z_k} = p} fc(r_ij) fc(r_ik) phi1_a(q1) phi2_b(q2) phi3_c(q3),
    phid_a(x) = (h_d / (w_d sqrt(pi)))^(1/2) exp(-(x - mu_{d,a})^2 / (2 w_d^2)),   w_d = theta_d / sqrt(2),

on uniform grids ``mu_d`` of spacing ``h_d = theta_d`` reaching ``3 w_d`` beyond the ranges
``q1 in [2 r_min, 2 r_c]``, ``q2 in [0, (r_c - r_min)^2]``, ``q3 in [r_min, 2 r_c]``. With the
``gap`` model's ``linear`` kernel (``delta^2 G . G'``, one GP per center element) the energy is
a sum over triplets of GPs in q whose kernel is

    delta^2 w w' exp(-sum_d (q_d - q'_d)^2 / (2 theta_d^2)) prod_d S_d((q_d + q'_d) / 2),

where ``S_d`` is a sum of Gaussians of width ``w_d / sqrt(2)`` on a grid of spacing
``h_d = sqrt(2) w_d``: by Poisson summation it ripples by ``2 exp(-pi^2 / 2) = 1.4 %`` per
dimension around 1 (the edges of the grids add about 1e-5), so the product by at most
``1.0144^3 - 1 = 4.4 %``. This grid is twice as coarse as ``distance_2b``'s (whose ripple is
5e-9) because the feature count is a product of three: at ``h_d = theta_d / 2`` the default Si
block would hold 14,000 features instead of 1,100. The kernel is still a valid (slightly
non-stationary) prior; measured against the exact one on 350 random triplets with invariants in
range (tests/test_angle_3b.py) it differs by at most 4.3 % of ``delta^2 w w'``.

Features: ``n_pairs * n1 * n2 * n3`` with ``n_pairs = n_species (n_species + 1) / 2`` and
``n_d = ceil((range_d + 6 w_d) / h_d) + 1``. At the defaults (``r_c`` 3.5 Å, ``r_min`` 1.5 Å,
``theta`` 1 Å, 1 Å^2, 1 Å): 10 x 10 x 11 = 1,100 per pair, so 1,100 for Si and 3,300 for Li-Si.
The Jacobian the GAP fit stores is ``n_edges x F x 3`` float64 (24 kB per edge for Si), which
:func:`pesmith.features.featurize_dataset` keeps in memory, on disk or recomputes within its
budget.

gap_fit visits each triplet twice, as (j, k) and (k, j), with the same invariants: its energy is
``2 f(q)`` per triplet where this term's is ``f(q)``, so its ``delta`` is half of the ``gap``
model's ``delta`` for the same prior.

Derivatives are closed form (:meth:`Angle3b.features_and_jacobian`, and the backward of the
triplet sum, which runs in chunks without an autograd graph); tests/test_angle_3b.py holds them
equal to plain autograd of a direct evaluation and to finite differences.

Element restrictions: ``centers`` (e.g. ``[Li]``) keeps the triplets centered on those elements,
``neighbors`` (e.g. ``[C]``) those whose two neighbors are both of those elements; the blocks are
then the unordered pairs of ``neighbors`` (``n_pairs = n_n (n_n + 1) / 2``), each equal to the
unrestricted descriptor's block of that pair on a center atom. Any other atom has an all-zero row
and Jacobian, so with the ``linear`` kernel its energy in this term is exactly 0.

Units: distances, ``cutoff``, ``r_min``, ``cutoff_transition_width``, ``theta[0]`` and
``theta[2]`` in Å, ``theta[1]`` in Å^2; features are dimensionless (the model's ``delta``
carries eV).

References
----------
A. P. Bartók and G. Csányi, "Gaussian approximation potentials: a brief tutorial introduction",
Int. J. Quantum Chem. 115, 1051 (2015), doi:10.1002/qua.24927 (2- and 3-body descriptors).
QUIP/GAP, ``descriptors.F90``: ``angle_3b_calc`` (invariants, cutoff weight),
https://github.com/libAtoms/GAP.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.jacobian import add_to_jacobian, refuse_second_derivatives
from pesmith.structures import DTYPE, edge_pairs

from .cutoff import transition_cutoff, transition_cutoff_derivative

GRID_MARGIN = 3.0  # the grids extend this many basis widths w_d beyond the invariants' ranges
STEP_VALUES = 1 << 20  # triplet values per vectorised step: 8 MB, about 100 MB of temporaries with derivatives


class Angle3b(Descriptor):
    """GAP's 3-body term: sums over neighbor pairs of a Gaussian product basis in (r_ij + r_ik, (r_ij - r_ik)^2, r_jk), per neighbor-element pair.

    With the ``gap`` model's ``kernel: linear`` this is a GP on each triplet with gap_fit's
    squared-exponential kernel, to the grid's ripple (module docstring).

    Parameters
    ----------
    species
        Chemical symbols.
    cutoff
        Cutoff ``r_c`` of r_ij and r_ik, Å.
    theta
        Length scales of the kernel in ``q1`` (Å), ``q2`` (Å^2) and ``q3`` (Å): three numbers,
        or one for all three (gap_fit's ``theta_uniform``). They set the grid spacings.
    cutoff_transition_width
        Width ``d`` of the cosine switch below the cutoff, Å (gap_fit's default 0.5).
    r_min
        Shortest neighbor distance (and r_jk) the grid covers, Å; below it the prior decays.
    centers, neighbors
        Elements of ``species`` whose atoms are triplet centers, and whose atoms may be the two
        neighbors; ``None`` (default) all of ``species``.

    Raises
    ------
    ConfigError
        A ``theta`` that is not one or three positive numbers, a transition width outside
        ``(0, cutoff]``, ``r_min`` outside ``[0, cutoff)``, or ``centers`` / ``neighbors``
        that are not elements of ``species``.
    """

    def __init__(
        self,
        species: Sequence[str],
        cutoff: float = 3.5,
        theta: float | Sequence[float] = 1.0,
        cutoff_transition_width: float = 0.5,
        r_min: float = 1.5,
        centers: Sequence[str] | None = None,
        neighbors: Sequence[str] | None = None,
    ):
        super().__init__()
        self.species = normalize_species(species)
        self.cutoff = check_cutoff(cutoff, self.species, "cutoff")
        self.theta = _parse_theta(theta)
        if not 0 < cutoff_transition_width <= self.cutoff:
            raise ConfigError(
                f"descriptor.cutoff_transition_width must be in (0, cutoff = {self.cutoff}] Å, got {cutoff_transition_width!r}"
            )
        if not 0 <= r_min < self.cutoff:
            raise ConfigError(f"descriptor.r_min must be in [0, cutoff = {self.cutoff}) Å, got {r_min!r}")
        self.transition, self.r_min = float(cutoff_transition_width), float(r_min)
        ranges = ((2 * self.r_min, 2 * self.cutoff), (0.0, (self.cutoff - self.r_min) ** 2), (self.r_min, 2 * self.cutoff))
        self.widths = tuple(t / math.sqrt(2.0) for t in self.theta)  # w_d
        self.norms = tuple(math.sqrt(t / (w * math.sqrt(math.pi))) for t, w in zip(self.theta, self.widths))
        for d, ((low, high), spacing, width) in enumerate(zip(ranges, self.theta, self.widths)):
            start, stop = low - GRID_MARGIN * width, high + GRID_MARGIN * width
            n_grid = int(math.ceil((stop - start) / spacing)) + 1
            self.register_buffer(f"centers{d}", start + spacing * torch.arange(n_grid, dtype=DTYPE), persistent=False)  # (n_d,)
        self.centers = element_subset(centers, self.species, "centers")
        self.neighbors = element_subset(neighbors, self.species, "neighbors")
        self.neighbor_species = self.neighbors or self.species
        self.n_pairs = len(self.neighbor_species) * (len(self.neighbor_species) + 1) // 2
        self.register_buffer("lookup", species_lookup(self.neighbor_species), persistent=False)  # -1: not a neighbor element
        self.register_buffer("center_lookup", species_lookup(self.centers or self.species), persistent=False)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """``(n1, n2, n3)``: Gaussians per invariant."""
        return (int(self.centers0.shape[0]), int(self.centers1.shape[0]), int(self.centers2.shape[0]))

    @property
    def block_size(self) -> int:
        """Features per neighbor-element pair."""
        return math.prod(self.grid_shape)

    @property
    def n_features(self) -> int:
        return self.n_pairs * self.block_size

    def get_config(self) -> dict[str, Any]:
        return {
            "species": list(self.species),
            "cutoff": self.cutoff,
            "theta": list(self.theta),
            "cutoff_transition_width": self.transition,
            "r_min": self.r_min,
            "centers": list(self.centers) if self.centers is not None else None,
            "neighbors": list(self.neighbors) if self.neighbors is not None else None,
        }

    def describe(self) -> list[str]:
        pairs = [(a, b) for b in range(len(self.neighbor_species)) for a in range(b + 1)]  # slot order of _triplets
        names = self.neighbor_species
        return [
            f"{names[a]}-{names[b]} neighbor pairs: fc fc phi(q1={m0:.2f} A) phi(q2={m1:.2f} A^2) phi(q3={m2:.2f} A)"
            for a, b in pairs
            for m0 in self.centers0.tolist()
            for m1 in self.centers1.tolist()
            for m2 in self.centers2.tolist()
        ]

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        e1, e2, pair = self._triplets(numbers, edge_index, edge_vectors)
        rows = edge_index[0][e1] * self.n_pairs + pair  # (t,)
        sums = TripletSum.apply(edge_vectors, e1, e2, rows, numbers.shape[0] * self.n_pairs, self)  # (n_atoms * n_pairs, B)
        return sums.reshape(numbers.shape[0], self.n_features)

    @torch.no_grad()
    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n_atoms, F)`` and ``dG_center/dr_edge`` ``(n_edges, F, 3)`` (1/Å): each
        triplet's closed-form derivatives added onto its two edges."""
        n_atoms, n_edges, block = numbers.shape[0], edge_vectors.shape[0], self.block_size
        e1, e2, pair = self._triplets(numbers, edge_index, edge_vectors)
        rows = edge_index[0][e1] * self.n_pairs + pair
        sums = edge_vectors.new_zeros(n_atoms * self.n_pairs, block)
        jacobian = edge_vectors.new_zeros(n_edges, self.n_features, 3)
        for part in self._steps(e1.shape[0]):
            values, d_first, d_second = self.triplet_terms(edge_vectors[e1[part]], edge_vectors[e2[part]], derivatives=True)
            sums.index_add_(0, rows[part], values)
            columns = pair[part, None] * block + torch.arange(block)  # (t, B)
            add_to_jacobian(jacobian, e1[part], columns, d_first)
            add_to_jacobian(jacobian, e2[part], columns, d_second)
        return sums.reshape(n_atoms, self.n_features), jacobian

    def triplet_terms(
        self, first: torch.Tensor, second: torch.Tensor, derivatives: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """Each triplet's block ``fc(r_ij) fc(r_ik) phi1 phi2 phi3`` ``(t, B)`` from its edge
        vectors ``u = r_j - r_i`` and ``v = r_k - r_i`` ``(t, 3)`` (Å); with ``derivatives``
        also its derivatives with respect to ``u`` and ``v`` ``(t, B, 3)`` (1/Å)."""
        a, b = first.norm(dim=1), second.norm(dim=1)  # (t,) r_ij, r_ik
        jk = second - first  # (t, 3)
        c = jk.norm(dim=1).clamp_min(1e-12)  # (t,) r_jk
        fa, fb = transition_cutoff(a, self.cutoff, self.transition), transition_cutoff(b, self.cutoff, self.transition)
        weight = fa * fb  # (t,)
        invariants = (a + b, (a - b) ** 2, c)
        basis = [self._basis(q, d) for d, q in enumerate(invariants)]  # 3 x ((t, n_d), (t, n_d))
        (p1, s1), (p2, s2), (p3, s3) = basis
        t = a.shape[0]

        def product(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return (x[:, :, None, None] * y[:, None, :, None] * z[:, None, None, :]).reshape(t, -1)  # (t, B)

        gaussians = product(p1, p2, p3)  # (t, B)
        w = weight[:, None]
        values = w * gaussians
        if not derivatives:
            return (values,)
        d_q1, d_q2, d_q3 = w * product(s1, p2, p3), w * product(p1, s2, p3), w * product(p1, p2, s3)  # (t, B) d/dq_d
        da = transition_cutoff_derivative(a, self.cutoff, self.transition)
        db = transition_cutoff_derivative(b, self.cutoff, self.transition)
        asym = (2.0 * (a - b))[:, None]  # dq2/dr_ij = -dq2/dr_ik
        by_a = (da * fb)[:, None] * gaussians + d_q1 + asym * d_q2  # (t, B) d/dr_ij
        by_b = (fa * db)[:, None] * gaussians + d_q1 - asym * d_q2  # (t, B) d/dr_ik
        unit_jk = jk / c[:, None]  # (t, 3)
        d_first = by_a[:, :, None] * (first / a[:, None])[:, None, :] - d_q3[:, :, None] * unit_jk[:, None, :]
        d_second = by_b[:, :, None] * (second / b[:, None])[:, None, :] + d_q3[:, :, None] * unit_jk[:, None, :]
        return values, d_first, d_second

    def _basis(self, q: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t, n_d)`` Gaussians ``phid_a(q)`` and their derivatives in q."""
        offsets = q[:, None] - getattr(self, f"centers{d}")[None, :]
        width = self.widths[d]
        gaussians = self.norms[d] * torch.exp(-(offsets**2) / (2.0 * width**2))
        return gaussians, -offsets / width**2 * gaussians

    def _triplets(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges ``(e1, e2)`` ``(t,)`` of each triplet with both inside the cutoff, and its
        neighbor-element pair slot ``(t,)``; with ``centers`` / ``neighbors`` only the triplets they allow."""
        keep = edge_vectors.detach().norm(dim=1) < self.cutoff  # (e,)
        if self.centers is not None:
            keep &= self.center_lookup[numbers[edge_index[0]]] >= 0
        if self.neighbors is not None:
            keep &= self.lookup[numbers[edge_index[1]]] >= 0
        inside = torch.nonzero(keep).squeeze(1)  # (e_in,)
        first, second = edge_pairs(edge_index[0][inside])
        e1, e2 = inside[first], inside[second]
        neighbor = self.lookup[numbers[edge_index[1]]]  # (e,)
        high, low = torch.maximum(neighbor[e1], neighbor[e2]), torch.minimum(neighbor[e1], neighbor[e2])
        return e1, e2, high * (high + 1) // 2 + low

    def _steps(self, n_triplets: int) -> list[slice]:
        size = max(1, STEP_VALUES // self.block_size)
        return [slice(start, start + size) for start in range(0, n_triplets, size)]


class TripletSum(torch.autograd.Function):
    """Triplet blocks summed into ``(n_rows, B)`` rows (center x neighbor pair) in steps
    without an autograd graph; the backward recomputes each step's closed-form derivatives and
    contracts the incoming gradient with them. Differentiable once."""

    @staticmethod
    def forward(ctx, edge_vectors, e1, e2, rows, n_rows: int, descriptor: Angle3b):
        ctx.descriptor = descriptor
        ctx.save_for_backward(edge_vectors, e1, e2, rows)
        sums = edge_vectors.new_zeros(n_rows, descriptor.block_size)
        for part in descriptor._steps(e1.shape[0]):
            (values,) = descriptor.triplet_terms(edge_vectors[e1[part]], edge_vectors[e2[part]])
            sums.index_add_(0, rows[part], values)
        return sums

    @staticmethod
    def backward(ctx, grad_sums):
        refuse_second_derivatives("angle_3b features")
        edge_vectors, e1, e2, rows = ctx.saved_tensors
        descriptor = ctx.descriptor
        grad_vectors = torch.zeros_like(edge_vectors)
        for part in descriptor._steps(e1.shape[0]):
            _, d_first, d_second = descriptor.triplet_terms(edge_vectors[e1[part]], edge_vectors[e2[part]], derivatives=True)
            incoming = grad_sums[rows[part]]  # (t, B)
            grad_vectors.index_add_(0, e1[part], torch.einsum("tb,tbx->tx", incoming, d_first))
            grad_vectors.index_add_(0, e2[part], torch.einsum("tb,tbx->tx", incoming, d_second))
        return grad_vectors, None, None, None, None, None


def _parse_theta(theta: float | Sequence[float]) -> tuple[float, float, float]:
    """One length scale for all three invariants, or three (Å, Å^2, Å); all positive and finite."""
    values = [theta] if isinstance(theta, (int, float)) else list(theta) if isinstance(theta, (list, tuple)) else None
    try:
        numbers = [float(x) for x in values] if values is not None and len(values) in (1, 3) else None
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or not all(math.isfinite(x) and x > 0 for x in numbers):
        raise ConfigError(
            f"descriptor.theta must be one positive number or three [q1 Å, q2 Å^2, q3 Å], e.g. [1.0, 1.0, 1.0], got {theta!r}"
        )
    return tuple(numbers * 3 if len(numbers) == 1 else numbers)  # type: ignore[return-value]


def element_subset(value: Sequence[str] | None, species: Sequence[str], key: str) -> tuple[str, ...] | None:
    """``value`` (``descriptor.<key>``) as elements of ``species`` in its order, or None for all."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value or any(s not in species for s in value):
        raise ConfigError(f"descriptor.{key} must be a non-empty list of elements of species {list(species)}, e.g. [Li], got {value!r}")
    return tuple(s for s in species if s in value)
