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

from typing import Any, Sequence

import torch

from pesmith import hookimpl
from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.jacobian import add_to_jacobian, row_derivatives
from pesmith.structures import DTYPE, edge_pairs

from .cutoff import cosine_cutoff


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
        terms = self.angular_terms(self.angular_factors(edge_vectors[e1], edge_vectors[e2]))  # (n_triplets, n_g45)
        angular = torch.zeros(n_atoms * self.n_pairs, terms.shape[1], dtype=terms.dtype, device=terms.device)
        angular = angular.index_add(0, centers[e1] * self.n_pairs + pair, terms)
        return torch.cat([radial, angular.reshape(n_atoms, -1)], dim=1)

    @torch.no_grad()
    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor, chunk: int = 50_000
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and per-edge derivatives: forward mode on each G2 term and on each triplet's
        radial and angular factors (``chunk`` triplets at a time), the product rule for the G4/G5
        terms, summed onto the edges they contain."""
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
        for start in range(0, e1.shape[0], chunk):
            part = slice(start, start + chunk)
            inputs = (edge_vectors[e1[part]], edge_vectors[e2[part]])
            factors = self.angular_factors(*inputs)
            columns = len(self.species) * n_g2 + pair[part, None] * n_g45 + torch.arange(n_g45)
            for k, edge in enumerate((e1[part], e2[part])):
                derivatives = self.angular_terms(factors, row_derivatives(self.angular_factors, inputs, k))
                add_to_jacobian(jacobian, edge, columns, derivatives)
        return features, jacobian


def _check_params(key: str, params: Sequence[Sequence[float]], width: int) -> list[list[float]]:
    rows = [list(map(float, p)) for p in params]
    if any(len(r) != width for r in rows):
        raise ConfigError(f"descriptor.{key} must be a list of rows with {width} numbers each, got {params!r}")
    if any(r[0] < 0 for r in rows):
        raise ConfigError(f"descriptor.{key}: eta must be >= 0 (1/Å^2), got {params!r}")
    if width == 3 and any(r[2] not in (-1.0, 1.0) for r in rows):
        raise ConfigError(f"descriptor.{key}: lambda must be -1 or +1, got {params!r}")
    return rows


@hookimpl
def pesmith_register_descriptors(register) -> None:
    register("acsf", ACSF)
