"""SOAP power spectrum as QUIP/GAP computes it (``gap_fit``'s ``soap`` descriptor), in torch.

References
----------
A. P. Bartók, R. Kondor, G. Csányi, "On representing chemical environments",
Phys. Rev. B 87, 184115 (2013), doi:10.1103/PhysRevB.87.184115.
A. P. Bartók, M. C. Payne, R. Kondor, G. Csányi, Phys. Rev. Lett. 104, 136403 (2010),
doi:10.1103/PhysRevLett.104.136403.
QUIP/GAP source (libAtoms/GAP ``descriptors.F90``: ``soap_initialise``, ``soap_calc``; libAtoms/QUIP
``linearalgebra.f95``: ``coordination_function``), whose default radial basis
(``EQUISPACED_GAUSS``) this module re-implements.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import scipy.linalg
import scipy.special
import torch
from ase.data import atomic_numbers

from pesmith.descriptor import check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.structures import DTYPE

from .harmonics import solid_harmonics
from .soap import PowerSpectrum

L_MAX_LIMIT = 12
BASIS_ERROR_EXPONENT = 10.0  # QUIP's default: the Gaussian basis reaches cutoff + sigma sqrt(2 * 10 ln 10)


def gaussian_basis(cutoff: float, n_max: int, atom_sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """QUIP's equispaced Gaussian radial basis: centres ``r_basis (n_max,)`` (Å), the map
    ``transform (n_max, n_max)`` from the Gaussians' radial integrals to the orthonormal radial
    coefficients, and the lower Cholesky factor ``chol (n_max, n_max)`` of their overlap.

    Gaussians ``exp(-alpha (r - r_a)^2)``, ``alpha = 1 / (2 sigma^2)``, centred at
    ``r_a = a h`` (a = 0 .. n_max-1, ``h = (r_c + sigma sqrt(20 ln 10)) / n_max``). With ``C`` their
    covariance ``exp(-alpha (r_a - r_b)^2)`` and ``S = chol chol^T`` their overlap with weight
    ``r^2`` on [0, inf), ``transform = C^-1 chol``.
    """
    alpha = 0.5 / atom_sigma**2
    spacing = (cutoff + atom_sigma * math.sqrt(2.0 * BASIS_ERROR_EXPONENT * math.log(10.0))) / n_max
    r_basis = np.zeros(n_max)
    for a in range(1, n_max):  # accumulated, as QUIP does (same rounding)
        r_basis[a] = r_basis[a - 1] + spacing
    ri, rj = r_basis[None, :], r_basis[:, None]
    covariance = np.exp(-alpha * (ri - rj) ** 2)
    overlap = (
        np.exp(-alpha * (ri**2 + rj**2)) * math.sqrt(2.0) * alpha**1.5 * (ri + rj)
        + alpha
        * np.exp(-0.5 * alpha * (ri - rj) ** 2)
        * math.sqrt(math.pi)
        * (1.0 + alpha * (ri + rj) ** 2)
        * (1.0 + scipy.special.erf(math.sqrt(alpha / 2.0) * (ri + rj)))
    ) / math.sqrt(128.0 * alpha**5)
    try:
        chol = np.linalg.cholesky(overlap)
        transform = scipy.linalg.cho_solve(scipy.linalg.cho_factor(covariance, lower=True), chol)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        raise ConfigError(
            f"descriptor.n_max = {n_max} is too large for atom_sigma {atom_sigma} Å: QUIP's Gaussian radial"
            " basis is numerically singular; lower n_max or raise atom_sigma"
        ) from None
    return r_basis, transform, chol


class SOAPQuip(PowerSpectrum):
    """SOAP power spectrum equal to QUIP's ``soap`` descriptor (default ``EQUISPACED_GAUSS`` basis).

    The neighbor density of species s around center i is a sum of Gaussians of width
    ``atom_sigma`` on the neighbors j of that species, weighted by QUIP's cutoff function
    ``f(r) = 1`` below ``r_c - w``, ``(1 + cos(pi (r - r_c + w) / w)) / 2`` up to ``r_c``, 0 beyond
    (``w = cutoff_transition_width``). Its coefficients in the radial basis of
    :func:`gaussian_basis` and the orthonormal spherical harmonics are::

        c^s_nlm = sum_j f(r_ij) Y_lm(r_ij_hat) sum_a T_an exp(-alpha (r_ij^2 + r_a^2)) i_l(2 alpha r_ij r_a)

    with ``i_l`` the modified spherical Bessel functions of the first kind (by QUIP's upward
    recurrence). The center adds ``center_weight chol_00 / sqrt(4 pi)`` to ``c^s_000`` of its own
    species (of the only species when there is one: QUIP's ``central_reference_all_species``
    default). With channels ``k = s n_max + n`` (species in ``species`` order), the features are,
    for k = 0 .. K-1, k' = 0 .. k, l = 0 .. l_max (l fastest)::

        p_{k k' l} = (sqrt(2) if k != k' else 1) / sqrt(2l+1) sum_m c_klm c_k'lm

    scaled to unit length with ``normalize``: QUIP's order and values, without its last element
    (``covariance_sigma0``, a constant 0 by default). ``K = n_species n_max``, so
    ``n_features = (l_max+1) K (K+1) / 2``.

    :meth:`quip_string` gives the matching ``gap_fit``/quippy descriptor string for one central element.

    Parameters
    ----------
    species
        Chemical symbols (sorted by atomic number: QUIP's ``species_Z`` order).
    cutoff
        r_c, Å (QUIP's ``cutoff``).
    cutoff_transition_width
        w, Å: width of the cosine switch below the cutoff (0 < w <= cutoff).
    n_max, l_max
        Number of radial basis functions (1..30) and the largest angular momentum (0..12).
    atom_sigma
        Width sigma of each atom's Gaussian, Å (QUIP's ``atom_sigma``).
    center_weight
        Weight of the center's own Gaussian (QUIP's ``central_weight``).
    normalize
        Scale each feature vector to unit length (QUIP's ``normalise``).
    """

    def __init__(
        self,
        species: Sequence[str],
        cutoff: float = 5.0,
        cutoff_transition_width: float = 0.5,
        n_max: int = 8,
        l_max: int = 6,
        atom_sigma: float = 0.5,
        center_weight: float = 1.0,
        normalize: bool = True,
    ):
        super().__init__()
        self.species = normalize_species(species)
        self.centers = self.neighbors = None  # QUIP's every-species density around every center
        self.channels = self.species
        self.cutoff = check_cutoff(cutoff, self.species, "cutoff")
        if not isinstance(n_max, int) or not 1 <= n_max <= 30:
            raise ConfigError(f"descriptor.n_max must be an integer from 1 to 30, got {n_max!r}")
        if not isinstance(l_max, int) or not 0 <= l_max <= L_MAX_LIMIT:
            raise ConfigError(f"descriptor.l_max must be an integer from 0 to {L_MAX_LIMIT}, got {l_max!r}")
        if not isinstance(atom_sigma, (int, float)) or not atom_sigma > 0:
            raise ConfigError(f"descriptor.atom_sigma must be a positive width in Å, got {atom_sigma!r}")
        if not isinstance(cutoff_transition_width, (int, float)) or not 0 < cutoff_transition_width <= self.cutoff:
            raise ConfigError(
                f"descriptor.cutoff_transition_width must be a width in Å in (0, cutoff = {self.cutoff}],"
                f" got {cutoff_transition_width!r}"
            )
        if not isinstance(center_weight, (int, float)) or not center_weight >= 0:
            raise ConfigError(f"descriptor.center_weight must be >= 0, got {center_weight!r}")
        self.n_max, self.l_max = n_max, l_max
        self.atom_sigma, self.cutoff_transition_width = float(atom_sigma), float(cutoff_transition_width)
        self.center_weight, self.normalize = float(center_weight), bool(normalize)

        self.alpha = 0.5 / self.atom_sigma**2  # 1/Å^2
        r_basis, transform, chol = gaussian_basis(self.cutoff, n_max, self.atom_sigma)
        self.r_basis = torch.tensor(r_basis, dtype=DTYPE)  # (n_max,) Å
        self.transform = torch.tensor(transform, dtype=DTYPE)  # (n_max Gaussians, n_max)
        self.center_coefficients = torch.tensor(chol[0] * self.center_weight / math.sqrt(4.0 * math.pi), dtype=DTYPE)
        n_channels = len(self.species) * n_max
        self.feature_labels = labels = [  # (k, k', l) of each feature, in QUIP's order
            (k, k2, l) for k in range(n_channels) for k2 in range(k + 1) for l in range(l_max + 1)
        ]
        self.set_features(labels, [(math.sqrt(2.0) if k != k2 else 1.0) / math.sqrt(2.0 * l + 1.0) for k, k2, l in labels])
        self.register_buffer("species_index", species_lookup(self.species), persistent=False)
        self.register_buffer("center_index", species_lookup(self.species), persistent=False)

    @property
    def n_features(self) -> int:
        n_channels = len(self.species) * self.n_max
        return (self.l_max + 1) * n_channels * (n_channels + 1) // 2

    def get_config(self) -> dict[str, Any]:
        return {
            "species": list(self.species),
            "cutoff": self.cutoff,
            "cutoff_transition_width": self.cutoff_transition_width,
            "n_max": self.n_max,
            "l_max": self.l_max,
            "atom_sigma": self.atom_sigma,
            "center_weight": self.center_weight,
            "normalize": self.normalize,
        }

    def quip_string(self, center: str | None = None, in_gap_fit: bool = False) -> str:
        """The quippy/``gap_fit`` descriptor string with the same features (plus QUIP's trailing
        ``covariance_sigma0`` element), for central element ``center`` (all elements if None).
        ``in_gap_fit`` doubles its braces, as gap_fit's command line needs inside ``gap={...}``."""
        zs = [atomic_numbers[s] for s in self.species]
        centers = f"Z={atomic_numbers[center]}" if center else f"n_Z={len(zs)} Z={{{' '.join(map(str, zs))}}}"
        if in_gap_fit:
            return self.quip_string(center).replace("{", "{{").replace("}", "}}")
        return (
            f"soap cutoff={self.cutoff!r} cutoff_transition_width={self.cutoff_transition_width!r}"
            f" n_max={self.n_max} l_max={self.l_max} atom_sigma={self.atom_sigma!r}"
            f" central_weight={self.center_weight!r} normalise={'T' if self.normalize else 'F'}"
            f" n_species={len(zs)} species_Z={{{' '.join(map(str, zs))}}} {centers}"
        )

    def describe(self) -> list[str]:
        n = self.n_max
        return [
            f"SOAPQuip[{self.species[k // n]}-{self.species[k2 // n]}](l={l},n={k % n},n'={k2 % n})"
            for k, k2, l in self.feature_labels
        ]

    def radial(self, distances: torch.Tensor) -> torch.Tensor:
        """``(n, (l_max+1) n_max)`` radial coefficients of neighbors at ``distances`` (Å), without
        the cutoff function: ``sum_a T_an exp(-alpha (r^2 + r_a^2)) i_l(2 alpha r r_a)``."""
        alpha, r = self.alpha, distances[:, None]  # (n, 1)
        centres = self.r_basis[1:]  # (n_max - 1,) the Gaussians away from r = 0
        x = 2.0 * alpha * r * centres  # (n, n_max - 1)
        exp_p, exp_m = torch.exp(-alpha * (r + centres) ** 2), torch.exp(-alpha * (r - centres) ** 2)
        previous = 0.5 * (exp_m + exp_p) / x  # the l = -1 term of the recurrence, times the Gaussian
        current = 0.5 * (exp_m - exp_p) / x  # l = 0
        columns = [current]
        for l in range(1, self.l_max + 1):
            previous, current = current, previous - (2 * l - 1) * current / x
            columns.append(current)
        at_origin = torch.nn.functional.pad(torch.exp(-alpha * r * r), (0, self.l_max))[:, :, None]  # (n, L, 1): l = 0 only
        bessel = torch.cat([at_origin, torch.stack(columns, dim=1)], dim=2)  # (n, L, n_max Gaussians)
        return (bessel @ self.transform).flatten(1)  # (n, L n_max)

    def cutoff_function(self, distances: torch.Tensor) -> torch.Tensor:
        """QUIP's ``coordination_function``: 1, a cosine switch over the last ``w`` Å, 0 beyond."""
        width, start = self.cutoff_transition_width, self.cutoff - self.cutoff_transition_width
        switch = 0.5 * (torch.cos(math.pi * (distances - start) / width) + 1.0)
        return torch.where(distances > self.cutoff, 0.0, torch.where(distances > start, switch, 1.0))

    def edge_terms(self, edge_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each edge's contribution to the coefficients, as its two factors: cutoff-weighted radial
        coefficients ``(n_edges, (l_max+1) n_max)`` and spherical harmonics ``(n_edges, (l_max+1)^2)``."""
        distances = torch.linalg.norm(edge_vectors, dim=1)  # (n_edges,) Å
        weighted = self.radial(distances) * self.cutoff_function(distances)[:, None]
        return weighted, solid_harmonics(edge_vectors / distances[:, None], self.l_max)
