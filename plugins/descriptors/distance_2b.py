"""GAP's 2-body term (gap_fit's ``distance_2b``) in pesmith's per-atom form.

gap_fit puts a GP on each pair distance: ``E_2b = sum_{i<j} f(r_ij)`` with the prior
``cov(f(r), f(r')) = delta^2 fc(r) fc(r') exp(-(r - r')^2 / (2 theta^2))`` (squared-exponential
kernel of length ``theta``, Å; smooth cutoff ``fc``). Here each atom gets half of its pairs,

    q_{i,(c,k)} = 1/2 sum_{j of element c, r_ij < r_c} fc(r_ij) phi_k(r_ij),
    phi_k(r) = (h / (w sqrt(pi)))^(1/2) exp(-(r - mu_k)^2 / (2 w^2)),   w = theta / sqrt(2),

on a uniform grid ``mu_k`` of spacing ``h`` (default ``theta / 2``) from ``r_min - 5 w`` to ``r_c + 5 w``
(Å), one block of the grid per neighbor element ``c``. With the ``gap`` model's ``linear``
kernel (``delta^2 q . q'``) an atom's energy is ``1/2 sum_j g_{Z_i Z_j}(r_ij)`` and the
structure's ``E_2b = sum_{i<j} (g_{Z_i Z_j} + g_{Z_j Z_i})(r_ij) / 2``, a sum over pairs of GPs in
the pair distance whose kernel is

    delta^2 fc(r) fc(r') sum_k phi_k(r) phi_k(r') = delta^2 fc(r) fc(r') exp(-(r - r')^2 / (2 theta^2)) S((r + r') / 2),

with ``S = 1`` to within 1e-8 for ``r_min <= (r + r') / 2 <= r_c`` (Poisson summation: the
ripple of a sum of Gaussians of width ``w / sqrt(2)`` on a grid of spacing ``h`` is
``2 exp(-pi^2 w^2 / h^2)``, ``5e-9`` at ``h = theta / 2``, below float64's 1e-16 at
``h = theta / 3``). The finer grid matters when the sparse points are many close pair
distances (the ``gap`` model's ``sparse_method: uniform``, gap_fit's own 2-body sparse points):
their ``K_MM`` is then ill-conditioned, ``alpha`` large, and a 5e-9 kernel error can reach
1e-4 eV/atom in the energies. This is gap_fit's kernel in its feature-space form (a finite
basis of ``n_grid`` Gaussians per element pair), so the GAP machinery (sparse points, forces,
virials, uncertainty) applies unchanged. The prior standard deviation of a like-element pair
energy is ``delta`` eV, of an unlike pair ``delta / sqrt(2)`` (the mean of two independent GPs).

The cutoff is gap_fit's: ``fc = 1`` below ``r_c - d``, ``(cos(pi (r - r_c + d) / d) + 1) / 2``
up to ``r_c`` and 0 beyond, ``d = cutoff_transition_width`` (Å).

Element restrictions: ``pairs`` (e.g. ``[[Li, Li]]`` or ``[[C, Li]]``) keeps only the pairs of those
unordered element pairs. An atom's features then hold only the blocks of neighbor elements that
occur in some allowed pair (``F = n_blocks * n_grid``), and its row of a block is zero unless its
own element and the block's form an allowed pair; an atom in no allowed pair has an all-zero row,
so with the ``linear`` kernel its energy in this term is exactly 0 (each allowed pair's energy
is still shared half and half between its two atoms). The blocks kept equal the unrestricted
descriptor's.

Units: distances, ``theta``, ``cutoff``, ``r_min`` in Å; features are dimensionless (the model's
``delta`` carries eV).

References
----------
A. P. Bartók and G. Csányi, "Gaussian approximation potentials: a brief tutorial introduction",
Int. J. Quantum Chem. 115, 1051 (2015), doi:10.1002/qua.24927 (2-body descriptor and kernel).
V. L. Deringer and G. Csányi, Phys. Rev. B 95, 094203 (2017), doi:10.1103/PhysRevB.95.094203
(2b + SOAP GAP).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.structures import DTYPE

from .cutoff import transition_cutoff, transition_cutoff_derivative

GRID_MARGIN = 5.0  # the grid extends this many basis widths w beyond [r_min, cutoff] (tails below 1e-12)


class Distance2b(Descriptor):
    """GAP's 2-body term: half sums of smooth-cutoff Gaussians of the pair distances (Å), per neighbor element.

    With the ``gap`` model's ``kernel: linear`` this is a GP on each pair distance with a
    squared-exponential kernel (module docstring).

    Parameters
    ----------
    species
        Chemical symbols.
    cutoff
        Pair cutoff ``r_c``, Å.
    theta
        Length scale of the squared-exponential kernel in the pair distance, Å.
    cutoff_transition_width
        Width ``d`` of the cosine switch below the cutoff, Å (gap_fit's default 0.5).
    r_min
        Shortest distance at which the kernel is exact, Å; below it the prior variance decays.
    grid_spacing
        Spacing ``h`` of the Gaussians, Å; default ``theta / 2`` (kernel exact to 5e-9);
        ``theta / 3`` makes it exact to float64 precision at 1.5x the features.
    pairs
        Unordered element pairs whose distances the term sees, e.g. ``[["C", "Li"]]``; ``None``
        (default) all pairs of ``species``.

    Raises
    ------
    ConfigError
        A non-positive ``theta``, a transition width outside ``(0, cutoff]``, ``r_min``
        outside ``[0, cutoff)``, ``grid_spacing`` outside ``(0, theta / 2]``, or a pair that is
        not two elements of ``species``.
    """

    def __init__(
        self,
        species: Sequence[str],
        cutoff: float = 5.0,
        theta: float = 0.5,
        cutoff_transition_width: float = 0.5,
        r_min: float = 0.5,
        pairs: Sequence[Sequence[str]] | None = None,
        grid_spacing: float | None = None,
    ):
        super().__init__()
        self.species = normalize_species(species)
        self.cutoff = check_cutoff(cutoff, self.species, "cutoff")
        if not theta > 0:
            raise ConfigError(f"descriptor.theta must be a positive length scale in Å, got {theta!r}")
        if not 0 < cutoff_transition_width <= self.cutoff:
            raise ConfigError(
                f"descriptor.cutoff_transition_width must be in (0, cutoff = {self.cutoff}] Å, got {cutoff_transition_width!r}"
            )
        if not 0 <= r_min < self.cutoff:
            raise ConfigError(f"descriptor.r_min must be in [0, cutoff = {self.cutoff}) Å, got {r_min!r}")
        self.theta, self.transition, self.r_min = float(theta), float(cutoff_transition_width), float(r_min)
        self.width = self.theta / math.sqrt(2.0)  # w, Å
        spacing = self.theta / 2.0 if grid_spacing is None else grid_spacing  # h, Å
        if not 0 < spacing <= self.theta / 2.0:
            raise ConfigError(
                f"descriptor.grid_spacing must be in (0, theta / 2 = {self.theta / 2.0:g}] Å (coarser grids do not"
                f" reproduce the kernel), got {grid_spacing!r}"
            )
        self.grid_spacing = float(spacing)
        start, stop = self.r_min - GRID_MARGIN * self.width, self.cutoff + GRID_MARGIN * self.width
        n_grid = int(math.ceil((stop - start) / spacing)) + 1
        self.register_buffer("centers", start + spacing * torch.arange(n_grid, dtype=DTYPE), persistent=False)  # (K,) Å
        self.norm = math.sqrt(spacing / (self.width * math.sqrt(math.pi)))
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)
        n = len(self.species)
        self.pairs = _parse_pairs(pairs, self.species)
        allowed = torch.zeros(n, n, dtype=torch.bool)  # (center, neighbor) species index
        for a, b in self.pairs or [(x, y) for x in self.species for y in self.species]:
            allowed[self.species.index(a), self.species.index(b)] = allowed[self.species.index(b), self.species.index(a)] = True
        self.register_buffer("allowed", allowed, persistent=False)
        kept = [k for k in range(n) if bool(allowed[:, k].any())]  # neighbor elements with a block
        self.block_species = tuple(self.species[k] for k in kept)
        block = torch.full((n,), -1, dtype=torch.int64)
        block[torch.tensor(kept, dtype=torch.int64)] = torch.arange(len(kept))
        self.register_buffer("block", block, persistent=False)  # species index -> block, -1 for none

    @property
    def n_grid(self) -> int:
        """Gaussians per neighbor element."""
        return int(self.centers.shape[0])

    @property
    def n_features(self) -> int:
        return len(self.block_species) * self.n_grid

    def get_config(self) -> dict[str, Any]:
        return {
            "species": list(self.species),
            "cutoff": self.cutoff,
            "theta": self.theta,
            "cutoff_transition_width": self.transition,
            "r_min": self.r_min,
            "pairs": [list(p) for p in self.pairs] if self.pairs is not None else None,
            "grid_spacing": self.grid_spacing,
        }

    def describe(self) -> list[str]:
        return [f"half sum over {s} neighbors of fc(r) phi(r; mu={mu:.3f} A)" for s in self.block_species for mu in self.centers.tolist()]

    def cutoff_function(self, distances: torch.Tensor) -> torch.Tensor:
        """gap_fit's cosine switch ``fc(r)`` (dimensionless) of ``distances`` (Å)."""
        return transition_cutoff(distances, self.cutoff, self.transition)

    def _pair_terms(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, K)`` values ``fc(r) phi_k(r) / 2`` and their derivatives in r (1/Å)."""
        offsets = distances[:, None] - self.centers[None, :]  # (e, K) Å
        gaussians = self.norm * torch.exp(-(offsets**2) / (2.0 * self.width**2))  # (e, K)
        fc = self.cutoff_function(distances)  # (e,)
        dfc = transition_cutoff_derivative(distances, self.cutoff, self.transition)  # (e,) 1/Å
        values = 0.5 * fc[:, None] * gaussians
        slopes = 0.5 * (dfc[:, None] - fc[:, None] * offsets / self.width**2) * gaussians
        return values, slopes

    def _kept_edges(self, numbers: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``(e_kept,)`` indices of the edges whose (center, neighbor) elements form an allowed pair."""
        if self.pairs is None:
            return torch.arange(edge_index.shape[1])
        species = self.lookup[numbers]
        return torch.nonzero(self.allowed[species[edge_index[0]], species[edge_index[1]]]).squeeze(1)

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        kept = self._kept_edges(numbers, edge_index)
        distances = edge_vectors[kept].norm(dim=1)  # (e_kept,) Å
        values, _ = self._pair_terms(distances)  # (e_kept, K)
        return self._scatter(numbers, edge_index[:, kept], values)

    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n_atoms, F)`` and ``dq_center/dr_edge`` ``(n_edges, F, 3)`` (1/Å) in closed
        form: each edge moves only its own neighbor element's block, by ``d(fc phi_k / 2)/dr``
        along the unit edge vector (equal to autograd, :func:`pesmith.testing.check_descriptor`)."""
        with torch.no_grad():
            kept = self._kept_edges(numbers, edge_index)  # edges outside the allowed pairs keep zero rows
            vectors, index = edge_vectors[kept], edge_index[:, kept]
            distances = vectors.norm(dim=1)  # (e_kept,)
            values, slopes = self._pair_terms(distances)  # (e_kept, K)
            features = self._scatter(numbers, index, values)
            unit = vectors / distances.clamp_min(1e-300)[:, None]  # (e_kept, 3)
            jacobian = torch.zeros(edge_vectors.shape[0], len(self.block_species), self.n_grid, 3, dtype=DTYPE)
            block = self.block[self.lookup[numbers[index[1]]]]  # (e_kept,)
            jacobian[kept, block] = slopes[:, :, None] * unit[:, None, :]
        return features, jacobian.reshape(edge_vectors.shape[0], self.n_features, 3)

    def _scatter(self, numbers: torch.Tensor, edge_index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``(n_atoms, F)``: the rows ``values`` ``(e, K)`` added into their center's block of their neighbor's element."""
        n_atoms, k = numbers.shape[0], self.n_grid
        columns = self.block[self.lookup[numbers[edge_index[1]]]][:, None] * k + torch.arange(k)[None, :]  # (e, K)
        rows = edge_index[0][:, None].expand_as(columns)
        flat = torch.zeros(n_atoms * self.n_features, dtype=values.dtype)
        return flat.index_add(0, (rows * self.n_features + columns).reshape(-1), values.reshape(-1)).reshape(n_atoms, self.n_features)


def _parse_pairs(pairs: Sequence[Sequence[str]] | None, species: Sequence[str]) -> tuple[tuple[str, str], ...] | None:
    """``pairs`` as sorted, deduplicated ``(a, b)`` tuples (a before b in ``species`` order), or None."""
    if pairs is None:
        return None
    hint = f"descriptor.pairs must be a non-empty list of element pairs from species {list(species)}, e.g. [[C, Li]]"
    if isinstance(pairs, str) or not isinstance(pairs, (list, tuple)) or not pairs:
        raise ConfigError(f"{hint}, got {pairs!r}")
    result = set()
    for pair in pairs:
        if isinstance(pair, str) or not isinstance(pair, (list, tuple)) or len(pair) != 2 or any(s not in species for s in pair):
            raise ConfigError(f"{hint}, got {pair!r} in {pairs!r}")
        a, b = sorted(pair, key=list(species).index)
        result.add((a, b))
    return tuple(sorted(result, key=lambda p: (list(species).index(p[0]), list(species).index(p[1]))))
