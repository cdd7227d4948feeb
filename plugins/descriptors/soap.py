"""Smooth overlap of atomic positions (SOAP) power spectrum, in torch.

References
----------
A. P. Bartók, R. Kondor, G. Csányi, "On representing chemical environments",
Phys. Rev. B 87, 184115 (2013), doi:10.1103/PhysRevB.87.184115 (and its erratum for the
l-dependent prefactor).
L. Himanen et al., "DScribe: Library of descriptors for machine learning in materials science",
Comput. Phys. Commun. 247, 106949 (2020) (the orthonormalised GTO radial basis used here).
M. A. Caro, "Optimizing many-body atomic descriptors for enhanced computational performance of
machine learning based interatomic potentials", Phys. Rev. B 100, 024112 (2019) (the
polynomial cutoff weight).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import scipy.linalg
import scipy.special
import torch

from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.jacobian import row_derivatives
from pesmith.structures import DTYPE

from .angle_3b import element_subset
from .harmonics import solid_harmonics

L_MAX_LIMIT = 12
GTO_DECAY = 1e-3  # each GTO falls to this value at its own radius (as in DScribe)


def gto_basis(cutoff: float, n_max: int, l_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Exponents ``alpha (l_max+1, n_max)`` (1/Å^2) and Löwdin coefficients ``beta (l_max+1, n_max, n_max)``.

    The primitive functions are ``r^l exp(-alpha_kl r^2)``; ``alpha_kl`` makes the k-th decay to
    ``GTO_DECAY`` at ``a_k``, with ``a_k`` evenly spaced from 1 Å to the cutoff. The radial basis
    ``g_nl(r) = sum_k beta_lnk r^l exp(-alpha_kl r^2)`` is orthonormal with the weight ``r^2``
    on [0, inf) (symmetric orthonormalisation, ``beta = S^(-1/2)``).
    """
    radii = np.linspace(1.0, cutoff, n_max)
    alphas = np.zeros((l_max + 1, n_max))
    betas = np.zeros((l_max + 1, n_max, n_max))
    for l in range(l_max + 1):
        alpha = -np.log(GTO_DECAY / radii**l) / radii**2
        overlap = 0.5 * scipy.special.gamma(l + 1.5) * (alpha[:, None] + alpha[None, :]) ** (-l - 1.5)
        eigenvalues, vectors = np.linalg.eigh(overlap)
        if eigenvalues.min() <= 0:
            raise ConfigError(
                f"descriptor.n_max = {n_max} is too large for cutoff {cutoff} Å: the GTO radial basis is"
                f" linearly dependent at l = {l}; lower n_max or raise the cutoff"
            )
        alphas[l] = alpha
        betas[l] = (vectors / np.sqrt(eigenvalues)) @ vectors.T
    return alphas, betas


class PowerSpectrum(Descriptor):
    """The SOAP power spectrum machinery shared by :class:`SOAP` and ``soap_quip``'s ``SOAPQuip``,
    which differ in their radial basis and cutoff (:meth:`edge_terms`) and in the order and
    scale of their features (:meth:`set_features`).

    With density channels ``k = s n_max + n`` (neighbor species s, radial index n) and expansion
    coefficients ``c_klm``, feature f is ``scale_f sum_m c_{k_f l_f m} c_{k'_f l_f m}``, scaled
    to unit length per atom with ``normalize`` (an all-zero row stays zero). A subclass sets
    ``species``, ``n_max``, ``l_max``, ``normalize``, ``center_weight``, ``center_coefficients``
    (the center's own Gaussian in its species' l = 0 channels, ``(n_max,)``), ``centers`` and
    ``neighbors`` (element restrictions or None) and ``channels`` (the species whose densities are
    expanded: ``neighbors`` or all), registers ``species_index`` (channel of each element, -1 for
    none) and ``center_index`` (-1 for an element that is not a center) and calls :meth:`set_features`.
    """

    def edge_terms(self, edge_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each edge's contribution to the coefficients, as its two factors: cutoff-weighted radial
        coefficients ``(n_edges, (l_max+1) n_max)`` and solid or spherical harmonics ``(n_edges, (l_max+1)^2)``."""
        raise NotImplementedError

    def set_features(self, labels: Sequence[tuple[int, int, int]], scale: Sequence[float]) -> None:
        """The features in order: ``labels`` (k, k', l) of each (channels, angular momentum) and
        their ``scale``."""
        n_channels = len(self.channels) * self.n_max
        self.feature_scale = torch.tensor(scale, dtype=DTYPE)
        # into the flattened (l, K, K) products
        self.feature_index = torch.tensor([(l * n_channels + k) * n_channels + k2 for k, k2, l in labels])
        self.features_of_l = []  # per l: positions, channels k and k' of its features (for the Jacobian)
        for l in range(self.l_max + 1):
            positions = [f for f, label in enumerate(labels) if label[2] == l]
            k, k2 = torch.tensor([labels[f][0] for f in positions]), torch.tensor([labels[f][1] for f in positions])
            self.features_of_l.append((torch.tensor(positions), k, k2))

    def coefficients(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, radial: torch.Tensor, harmonics: torch.Tensor
    ) -> list[torch.Tensor]:
        """Density expansion coefficients, one ``(n_atoms, n_species * n_max, 2l+1)`` tensor per l,
        from the :meth:`edge_terms` ``radial`` and ``harmonics``.

        The edges of each (center, neighbor species) are laid out in a zero-padded block, so the
        sum over neighbors is one batched matrix product per l.
        """
        n_atoms, n_species, n_max = numbers.shape[0], len(self.channels), self.n_max
        centers, neighbors = edge_index
        group = centers * n_species + self.species_index[numbers[neighbors]]  # (n_edges,)
        slot = slots_in_groups(group, n_atoms * n_species)
        width = int(slot.max()) + 1 if slot.numel() else 0
        shape = (n_atoms * n_species, width)
        padded_radial = radial.new_zeros(*shape, radial.shape[1]).index_put((group, slot), radial)
        padded_harmonics = harmonics.new_zeros(*shape, harmonics.shape[1]).index_put((group, slot), harmonics)
        padded_radial = padded_radial.transpose(1, 2).contiguous()  # (groups, L n, width)
        result = []
        for l in range(self.l_max + 1):
            block = torch.bmm(padded_radial[:, l * n_max : (l + 1) * n_max], padded_harmonics[:, :, l * l : (l + 1) ** 2])
            result.append(block.reshape(n_atoms, n_species * n_max, 2 * l + 1))
        if self.center_weight:
            own = self.species_index[numbers]  # (n_atoms,) channel of the center's own element, -1 for none
            present = ((own >= 0) & (self.center_index[numbers] >= 0)).to(result[0].dtype)  # non-centers get no Gaussian
            own_species = torch.nn.functional.one_hot(own.clamp_min(0), n_species).to(result[0].dtype) * present[:, None]
            result[0] = result[0] + (own_species[:, :, None] * self.center_coefficients).reshape(n_atoms, -1, 1)
        return result

    def power_spectrum(self, coefficients: list[torch.Tensor]) -> torch.Tensor:
        """``(n_atoms, n_features)`` power spectrum (not normalised) from :meth:`coefficients`."""
        blocks = [torch.bmm(c, c.transpose(1, 2)).flatten(1) for c in coefficients]  # (n_atoms, K K) per l
        return torch.cat(blocks, dim=1)[:, self.feature_index] * self.feature_scale

    def kept_edges(self, numbers: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor | None:
        """``(e_kept,)`` edges from a center element to a neighbor element, or None if unrestricted."""
        if self.centers is None and self.neighbors is None:
            return None
        keep = (self.center_index[numbers[edge_index[0]]] >= 0) & (self.species_index[numbers[edge_index[1]]] >= 0)
        return torch.nonzero(keep).squeeze(1)

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        kept = self.kept_edges(numbers, edge_index)
        if kept is not None:
            edge_index, edge_vectors = edge_index[:, kept], edge_vectors[kept]
        features = self.power_spectrum(self.coefficients(numbers, edge_index, *self.edge_terms(edge_vectors)))
        if self.normalize:
            squared = (features * features).sum(1, keepdim=True)  # (n_atoms, 1); zero rows stay zero
            features = features / torch.sqrt(torch.where(squared > 0, squared, torch.ones_like(squared)))
        return features

    @torch.no_grad()
    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`features_and_jacobian_of_edges` on the kept edges; the others keep zero rows."""
        kept = self.kept_edges(numbers, edge_index)
        if kept is None:
            return self.features_and_jacobian_of_edges(numbers, edge_index, edge_vectors)
        features, jacobian = self.features_and_jacobian_of_edges(numbers, edge_index[:, kept], edge_vectors[kept])
        full = jacobian.new_zeros(edge_vectors.shape[0], self.n_features, 3)
        full[kept] = jacobian
        return features, full

    @torch.no_grad()
    def features_and_jacobian_of_edges(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and their per-edge derivatives by the product rule, without a backward pass.

        An edge e of neighbor species s changes only its center's channels ``k = s n_max + n``:
        ``d p_f = scale_f ([k_f in s] dphi_e[k_f] . c[k'_f] + [k'_f in s] c[k_f] . dphi_e[k'_f])``
        (dot over m), ``dphi_e`` (per Cartesian direction) from forward-mode differentiation of
        :meth:`edge_terms`.
        """
        n_max, n_channels = self.n_max, len(self.channels) * self.n_max
        centers, neighbors = edge_index
        radial, harmonics = self.edge_terms(edge_vectors)
        coefficients = self.coefficients(numbers, edge_index, radial, harmonics)
        features = self.power_spectrum(coefficients)
        d_radial, d_harmonics = row_derivatives(self.edge_terms, (edge_vectors,), 0)  # (n_edges, L n, 3), (n_edges, n_lm, 3)
        neighbor_species = self.species_index[numbers[neighbors]]  # (n_edges,)
        jacobian = features.new_zeros(centers.shape[0], self.n_features, 3)
        for l, c in enumerate(coefficients):
            rows, cols = slice(l * n_max, (l + 1) * n_max), slice(l * l, (l + 1) ** 2)
            d_phi = (
                d_radial[:, rows, None, :] * harmonics[:, None, cols, None]
                + radial[:, rows, None, None] * d_harmonics[:, None, cols, :]
            )  # (n_edges, n_max, 2l+1, 3)
            m = torch.einsum("enmx,ekm->enkx", d_phi, c[centers]).flatten(1, 2)  # (n_edges, n_max * K, 3)
            positions, k, k2 = self.features_of_l[l]
            first = torch.where((neighbor_species[:, None] == k // n_max)[:, :, None], m[:, (k % n_max) * n_channels + k2], 0.0)
            second = torch.where((neighbor_species[:, None] == k2 // n_max)[:, :, None], m[:, (k2 % n_max) * n_channels + k], 0.0)
            jacobian[:, positions] = (first + second) * self.feature_scale[positions][:, None]
        if self.normalize:
            norms = torch.linalg.norm(features, dim=1, keepdim=True)
            norms = torch.where(norms > 0, norms, torch.ones_like(norms))  # zero rows (non-centers) stay zero
            features = features / norms
            unit = features[centers]  # (n_edges, F)
            along = torch.einsum("ef,efx->ex", unit, jacobian)
            jacobian = (jacobian - unit[:, :, None] * along[:, None, :]) / norms[centers][:, :, None]
        return features, jacobian


class SOAP(PowerSpectrum):
    """SOAP power spectrum with the orthonormal GTO radial basis (DScribe's ``rbf="gto"``).

    The neighbor density of center i for species s is a sum of Gaussians of width ``atom_sigma``
    on the neighbors j of that species, each weighted by the cutoff weight
    ``w(r) = (1 + 2 (r/r_c)^3 - 3 (r/r_c)^2)^cutoff_power`` (zero beyond ``r_c``, smooth at it),
    plus the center's own Gaussian with weight ``center_weight``. Its expansion coefficients
    in radial functions ``g_nl`` and real spherical harmonics ``Y_lm`` are integrated
    analytically over all space::

        c^s_nlm = sum_j w(r_ij) sum_k beta_lnk K_kl exp(-gamma_kl r_ij^2) r_ij^l Y_lm(r_ij_hat)
        K_kl = 4 pi^(3/2) / (2^(l+2) sigma^(2l) (alpha_kl + eta)^(l+3/2)),
        gamma_kl = alpha_kl eta / (alpha_kl + eta),  eta = 1 / (2 sigma^2)

    and the power spectrum is ``p^{s s'}_{l n n'} = pi sqrt(8 / (2l+1)) sum_m c^s_nlm c^s'_n'lm``.

    Feature order (DScribe's): for each species pair ``s <= s'`` in ``species`` order, for each
    l, for each n, each n' (``n' >= n`` when ``s == s'``). Count:
    ``S (n_max (n_max+1)/2) (l_max+1) + S (S-1)/2 n_max^2 (l_max+1)`` for S species. With
    ``normalize=True`` each atom's vector is scaled to unit length (the GAP SOAP kernel).

    Parameters
    ----------
    species
        Chemical symbols (sorted by atomic number internally).
    cutoff
        r_c, Å: neighbors beyond it do not contribute.
    n_max, l_max
        Number of radial functions (>= 1) and the largest angular momentum (0..12).
    atom_sigma
        Width sigma of each atom's Gaussian, Å.
    cutoff_power
        Exponent m of the cutoff weight (>= 1 keeps forces continuous at r_c).
    center_weight
        Weight of the center atom's own Gaussian (0 hides it).
    normalize
        Scale each feature vector to unit length (an all-zero vector stays zero).
    centers
        Elements of ``species`` whose atoms get a power spectrum; any other atom's row (and
        Jacobian) is all zero, so with the ``gap`` model's ``dot_product`` or ``linear`` kernel its
        energy in this term is exactly 0. ``None`` (default): all.
    neighbors
        Elements of ``species`` whose densities are expanded (the species channels ``s``); the
        center's own Gaussian is included only if its element is one of them. ``None``
        (default): all. With ``centers: [Li]`` and ``neighbors: [C]`` each Li atom gets the
        power spectrum of its C neighbors, equal to the unrestricted descriptor's C-C block; a Li
        with no C within the cutoff gets an all-zero row (energy 0; with ``dot_product`` the
        energy jumps when the first C enters the cutoff, so use it only where every center has
        neighbors, as Li in a carbon host does).
    """

    def __init__(
        self,
        species: Sequence[str],
        cutoff: float = 5.0,
        n_max: int = 8,
        l_max: int = 6,
        atom_sigma: float = 0.5,
        cutoff_power: float = 1.0,
        center_weight: float = 1.0,
        normalize: bool = False,
        centers: Sequence[str] | None = None,
        neighbors: Sequence[str] | None = None,
    ):
        super().__init__()
        self.species = normalize_species(species)
        self.cutoff = check_cutoff(cutoff, self.species, "cutoff")
        if not isinstance(n_max, int) or not 1 <= n_max <= 30:
            raise ConfigError(f"descriptor.n_max must be an integer from 1 to 30, got {n_max!r}")
        if not isinstance(l_max, int) or not 0 <= l_max <= L_MAX_LIMIT:
            raise ConfigError(f"descriptor.l_max must be an integer from 0 to {L_MAX_LIMIT}, got {l_max!r}")
        if not atom_sigma > 0:
            raise ConfigError(f"descriptor.atom_sigma must be a positive width in Å, got {atom_sigma!r}")
        if not cutoff_power >= 1:
            raise ConfigError(f"descriptor.cutoff_power must be >= 1 (smooth forces at the cutoff), got {cutoff_power!r}")
        if not center_weight >= 0:
            raise ConfigError(f"descriptor.center_weight must be >= 0, got {center_weight!r}")
        self.n_max, self.l_max = n_max, l_max
        self.atom_sigma, self.cutoff_power = float(atom_sigma), float(cutoff_power)
        self.center_weight, self.normalize = float(center_weight), bool(normalize)
        self.centers = element_subset(centers, self.species, "centers")
        self.neighbors = element_subset(neighbors, self.species, "neighbors")
        self.channels = self.neighbors or self.species  # species whose densities are expanded

        alphas, betas = gto_basis(self.cutoff, n_max, l_max)
        eta = 1.0 / (2.0 * self.atom_sigma**2)
        ls = np.arange(l_max + 1)[:, None]
        prefactor = 4.0 * math.pi**1.5 / (2.0 ** (ls + 2) * self.atom_sigma ** (2 * ls) * (alphas + eta) ** (ls + 1.5))
        self.gamma = torch.tensor(alphas * eta / (alphas + eta), dtype=DTYPE)  # (L, k) 1/Å^2
        # block-diagonal (L k, L n) map from the Gaussians of each l to that l's radial functions
        self.radial_matrix = torch.block_diag(*torch.tensor(betas * prefactor[:, None, :], dtype=DTYPE).transpose(1, 2))
        l_prefactor = [math.pi * math.sqrt(8.0 / (2.0 * l + 1.0)) for l in range(l_max + 1)]
        self.feature_labels = labels = [  # (a, b, l, n, n') of each feature (a, b channels), in DScribe's order
            (a, b, l, n, n2)
            for a in range(len(self.channels))
            for b in range(a, len(self.channels))
            for l in range(l_max + 1)
            for n in range(n_max)
            for n2 in range(n if a == b else 0, n_max)
        ]
        self.set_features([(a * n_max + n, b * n_max + n2, l) for a, b, l, n, n2 in labels], [l_prefactor[label[2]] for label in labels])
        # the center's own Gaussian: R = 0, so only l = 0 (Y_00 = 1 / sqrt(4 pi)) contributes
        self.center_coefficients = self.radial(torch.zeros(1, dtype=DTYPE))[0, :n_max] * (
            self.center_weight / math.sqrt(4.0 * math.pi)
        )  # (n_max,)
        self.register_buffer("species_index", species_lookup(self.channels), persistent=False)  # -1: no channel
        self.register_buffer("center_index", species_lookup(self.centers or self.species), persistent=False)

    @property
    def n_features(self) -> int:
        n_species = len(self.channels)
        same = n_species * self.n_max * (self.n_max + 1) // 2
        cross = n_species * (n_species - 1) // 2 * self.n_max**2
        return (same + cross) * (self.l_max + 1)

    def get_config(self) -> dict[str, Any]:
        return {
            "species": list(self.species),
            "cutoff": self.cutoff,
            "n_max": self.n_max,
            "l_max": self.l_max,
            "atom_sigma": self.atom_sigma,
            "cutoff_power": self.cutoff_power,
            "center_weight": self.center_weight,
            "normalize": self.normalize,
            "centers": list(self.centers) if self.centers is not None else None,
            "neighbors": list(self.neighbors) if self.neighbors is not None else None,
        }

    def describe(self) -> list[str]:
        return [
            f"SOAP[{self.channels[a]}-{self.channels[b]}](l={l},n={n},n'={n2})" for a, b, l, n, n2 in self.feature_labels
        ]

    def radial(self, squared_distances: torch.Tensor) -> torch.Tensor:
        """``(n, (l_max+1) n_max)`` radial integrals without the ``r^l`` of the solid harmonic."""
        gaussians = torch.exp(-squared_distances[:, None] * self.gamma.flatten())  # (n, L k)
        return gaussians @ self.radial_matrix

    def edge_terms(self, edge_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each edge's contribution to the coefficients, as its two factors: cutoff-weighted radial
        integrals ``(n_edges, (l_max+1) n_max)`` and solid harmonics ``(n_edges, (l_max+1)^2)``."""
        squared = (edge_vectors * edge_vectors).sum(1)  # (n_edges,) Å^2
        x = torch.sqrt(squared) / self.cutoff
        weight = torch.where(x < 1.0, (1.0 + 2.0 * x**3 - 3.0 * x**2).clamp(min=0.0) ** self.cutoff_power, 0.0)
        return self.radial(squared) * weight[:, None], solid_harmonics(edge_vectors, self.l_max)


def slots_in_groups(group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Position of each element among the elements of its group (0, 1, ... in input order)."""
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group, minlength=n_groups)
    first = torch.cumsum(counts, 0) - counts  # (n_groups,) start of each group in sorted order
    slots = torch.empty_like(group)
    slots[order] = torch.arange(group.shape[0], device=group.device) - first[group[order]]
    return slots
