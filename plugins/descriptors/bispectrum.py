"""SNAP's bispectrum components as LAMMPS computes them (``compute sna/atom``), in torch.

Each neighbor j of atom i (within ``r_c,ij = rcutfac (R_i + R_j)``) is mapped onto the 3-sphere,
``theta0 = rfac0 pi (r - rmin0) / (r_c,ij - rmin0)``, ``z0 = r / tan(theta0)``, and enters the
density expansion in Wigner matrices through its Cayley-Klein parameters
``a = (z0 - i z) / r0``, ``b = (y - i x) / r0`` (``r0 = sqrt(r^2 + z0^2)``)::

    U_j(i) = wself I + sum_j fc(r_ij) w_{Z_j} u_j(a_ij, b_ij),

with ``u_j`` from the recursion of Varshalovich et al. (VMK 4.8.2) on the rows ``mb <= j / 2``
and the symmetry ``u_j[j - mb, j - ma] = (-1)^(ma - mb) conj(u_j[mb, ma])`` for the others, and
the switch ``fc = (cos(pi (r - rmin0) / (r_c - rmin0)) + 1) / 2`` (``switchflag``). Then

    Z_{j1 j2 j}[mb, ma] = sum C^{j mb}_{j1 mb1 j2 mb2} C^{j ma}_{j1 ma1 j2 ma2} U_j1[mb1, ma1] U_j2[mb2, ma2],
    B_{j1 j2 j} = sum_{mb, ma} Re(conj(U_j[mb, ma]) Z_{j1 j2 j}[mb, ma]) - bzero_j,

over ``j1 >= j2``, ``j >= j1``, ``|j1 - j2| <= j <= min(twojmax, j1 + j2)``, ``j1 + j2 + j`` even
(all labels are twice the angular momenta), in LAMMPS's order; ``bzero_j = wself^3 (j + 1)``
(``bzeroflag``) makes an isolated atom's components zero. The sum over all ``(mb, ma)`` is taken
as LAMMPS does, over the rows ``mb < j / 2`` twice and half the middle row, which the symmetry of
``U`` and ``Z`` makes equal. Clebsch-Gordan coefficients by the quasi-binomial formula (VMK 8.2.1).

Written from the formulas of Thompson et al. and of LAMMPS's documentation and source
(``src/ML-SNAP/sna.cpp``); ``chemflag``, ``bnormflag``, ``wselfallflag``, ``quadraticflag`` and the
inner switch are not supported (their LAMMPS defaults, 0, are what this computes). Forces and
stress follow from autograd through the complex arithmetic.

Units: distances (``rcutfac``, ``radii``, ``rmin0``) in Å; features dimensionless.

References
----------
A. P. Thompson, L. P. Swiler, C. R. Trott, S. M. Foiles, G. J. Tucker, J. Comput. Phys. 285, 316
(2015), doi:10.1016/j.jcp.2014.12.018 (SNAP).
A. P. Bartók, M. C. Payne, R. Kondor, G. Csányi, Phys. Rev. Lett. 104, 136403 (2010) (bispectrum).
D. A. Varshalovich, A. N. Moskalev, V. K. Khersonskii, Quantum Theory of Angular Momentum
(World Scientific, 1988).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping, Sequence

import torch

from pesmith.descriptor import Descriptor, check_cutoff, normalize_species, species_lookup
from pesmith.errors import ConfigError
from pesmith.structures import DTYPE

TWOJMAX_LIMIT = 14
WSELF = 1.0  # LAMMPS's self weight on the diagonal of U_j


def bispectrum_indices(twojmax: int) -> list[tuple[int, int, int]]:
    """The ``(j1, j2, j)`` labels (twice the angular momenta) of the components, in LAMMPS's order."""
    return [
        (j1, j2, j)
        for j1 in range(twojmax + 1)
        for j2 in range(j1 + 1)
        for j in range(j1 - j2, min(twojmax, j1 + j2) + 1, 2)
        if j >= j1
    ]


def clebsch_gordan(j1: int, m1: int, j2: int, m2: int, j: int) -> float:
    """``C^{j m}_{j1 m1' j2 m2'}`` with ``m = m1' + m2'`` for the array offsets ``m1`` in 0..j1,
    ``m2`` in 0..j2 (``m1' = m1 - j1 / 2`` ...; all labels doubled), by VMK 8.2.1(3); 0 when
    ``m`` is out of range."""
    a2, b2 = 2 * m1 - j1, 2 * m2 - j2
    c2 = a2 + b2
    if abs(c2) > j:
        return 0.0
    f = math.factorial
    total = 0.0
    lo = max(0, -(j - j2 + a2) // 2, -(j - j1 - b2) // 2)
    hi = min((j1 + j2 - j) // 2, (j1 - a2) // 2, (j2 + b2) // 2)
    for z in range(lo, hi + 1):
        total += (-1) ** z / (
            f(z) * f((j1 + j2 - j) // 2 - z) * f((j1 - a2) // 2 - z) * f((j2 + b2) // 2 - z)
            * f((j - j2 + a2) // 2 + z) * f((j - j1 - b2) // 2 + z)
        )
    delta = math.sqrt(f((j1 + j2 - j) // 2) * f((j1 - j2 + j) // 2) * f((-j1 + j2 + j) // 2) / f((j1 + j2 + j) // 2 + 1))
    norm = math.sqrt(
        f((j1 + a2) // 2) * f((j1 - a2) // 2) * f((j2 + b2) // 2) * f((j2 - b2) // 2) * f((j + c2) // 2) * f((j - c2) // 2) * (j + 1)
    )
    return total * delta * norm


@lru_cache(maxsize=None)
def coupling(j1: int, j2: int, j: int) -> torch.Tensor:
    """``(j + 1, j1 + 1, j2 + 1)`` Clebsch-Gordan coefficients ``H[m, m1, m2]`` (array offsets)."""
    table = torch.zeros(j + 1, j1 + 1, j2 + 1, dtype=DTYPE)
    for m1 in range(j1 + 1):
        for m2 in range(j2 + 1):
            m2x = (2 * m1 - j1 + 2 * m2 - j2 + j)
            if m2x % 2 == 0 and 0 <= m2x // 2 <= j:
                table[m2x // 2, m1, m2] = clebsch_gordan(j1, m1, j2, m2, j)
    return table


@lru_cache(maxsize=None)
def half_weights(j: int) -> torch.Tensor:
    """``(j // 2 + 1, j + 1)`` weights of LAMMPS's half sum over ``U_j``: 2 on the rows
    ``mb < j / 2``; on the middle row of an even ``j``, 2 left of the centre, 1 on it, 0 right."""
    weights = torch.full((j // 2 + 1, j + 1), 2.0, dtype=DTYPE)
    if j % 2 == 0:
        weights[j // 2, j // 2] = 1.0
        weights[j // 2, j // 2 + 1 :] = 0.0
    return weights


@lru_cache(maxsize=None)
def recursion_tables(j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For layer ``j >= 1``: the factors ``sqrt((j - ma) / (j - mb))`` and ``sqrt(ma / (j - mb))``
    ``(h, j + 1)`` of the recursion rows ``mb < h = j // 2 + 1``; the mask ``(j + 1, j + 1)`` of
    the entries the recursion gives (the others follow by symmetry); the signs ``(-1)^(mb + ma)``."""
    rows = torch.arange(j // 2 + 1, dtype=DTYPE)[:, None]
    columns = torch.arange(j + 1, dtype=DTYPE)[None, :]
    from_a = torch.sqrt((j - columns).clamp_min(0) / (j - rows))
    from_b = torch.sqrt(columns / (j - rows))
    mb, ma = torch.meshgrid(torch.arange(j + 1), torch.arange(j + 1), indexing="ij")
    recursive = (2 * mb < j) | ((2 * mb == j) & (2 * ma < j))
    signs = torch.where((mb + ma) % 2 == 0, 1.0, -1.0).to(DTYPE)
    return from_a, from_b, recursive, signs


def wigner_layers(a: torch.Tensor, b: torch.Tensor, twojmax: int) -> list[torch.Tensor]:
    """``u_j(a, b)`` for j = 0 .. twojmax, each ``(n, j + 1, j + 1)`` complex (rows mb, columns
    ma), from the Cayley-Klein parameters ``a``, ``b`` ``(n,)`` (module docstring)."""
    n = a.shape[0]
    layers = [torch.ones(n, 1, 1, dtype=a.dtype)]
    ca, cb = a.conj()[:, None, None], b.conj()[:, None, None]
    for j in range(1, twojmax + 1):
        from_a, from_b, recursive, signs = recursion_tables(j)
        h = j // 2 + 1
        previous = layers[-1][:, :h, :]  # (n, h, j): rows mb < h of layer j - 1
        zero = previous.new_zeros(n, h, 1)
        top = ca * from_a * torch.cat([previous, zero], 2) - cb * from_b * torch.cat([zero, previous], 2)  # (n, h, j+1)
        full = torch.cat([top, top.new_zeros(n, j + 1 - h, j + 1)], 1)  # (n, j+1, j+1)
        mirrored = signs * full.flip(1, 2).conj()
        layers.append(torch.where(recursive, full, mirrored))
    return layers


class Bispectrum(Descriptor):
    """SNAP's bispectrum components, equal to LAMMPS ``compute sna/atom``.

    Parameters
    ----------
    species
        Chemical symbols.
    rcutfac
        Scale of the pair cutoffs ``r_c,ij = rcutfac (R_i + R_j)`` (LAMMPS's ``rcutfac``).
    twojmax
        Twice the largest angular momentum (LAMMPS's ``twojmax``), 0..14; ``n_features`` grows
        as about ``twojmax^3 / 24``: 5 at 2, 14 at 4, 30 at 6, 55 at 8.
    rfac0
        The fraction of the 3-sphere the cutoff maps to (LAMMPS's ``rfac0``, 0 < rfac0 <= 1).
    rmin0
        Distance (Å) mapped to the pole (LAMMPS's ``rmin0``).
    radii
        ``R`` of each element (LAMMPS's ``R_1 .. R_N``), dimensionless (scaled by ``rcutfac``);
        default 0.5 for every element.
    weights
        Neighbor weight of each element (LAMMPS's ``w_1 .. w_N``); default 1.0.
    switch
        Smooth switch to zero at the cutoff (``switchflag``); else a hard cutoff.
    bzero
        Subtract the isolated atom's components (``bzeroflag``).

    Raises
    ------
    ConfigError
        ``twojmax`` outside 0..14, ``rfac0`` outside (0, 1], ``rmin0`` not below the shortest
        pair cutoff, radii or weights for other elements or not positive.
    """

    def __init__(
        self,
        species: Sequence[str],
        rcutfac: float = 5.0,
        twojmax: int = 6,
        rfac0: float = 0.99363,
        rmin0: float = 0.0,
        radii: Mapping[str, float] | None = None,
        weights: Mapping[str, float] | None = None,
        switch: bool = True,
        bzero: bool = True,
    ):
        super().__init__()
        self.species = normalize_species(species)
        if isinstance(twojmax, bool) or int(twojmax) != twojmax or not 0 <= twojmax <= TWOJMAX_LIMIT:
            raise ConfigError(f"descriptor.twojmax must be an integer in 0..{TWOJMAX_LIMIT}, got {twojmax!r}")
        if not 0 < rfac0 <= 1:
            raise ConfigError(f"descriptor.rfac0 must be in (0, 1], got {rfac0!r}")
        self.radii = _per_element(radii, self.species, 0.5, "radii")
        self.weights = _per_element(weights, self.species, 1.0, "weights")
        self.rcutfac, self.twojmax, self.rfac0, self.rmin0 = float(rcutfac), int(twojmax), float(rfac0), float(rmin0)
        self.switch, self.bzero = bool(switch), bool(bzero)
        radius = torch.tensor([self.radii[s] for s in self.species], dtype=DTYPE)
        pair_cutoffs = self.rcutfac * (radius[:, None] + radius[None, :])  # (n_species, n_species) Å
        self.cutoff = check_cutoff(float(pair_cutoffs.max()), self.species, "rcutfac")
        if not 0 <= self.rmin0 < float(pair_cutoffs.min()):
            raise ConfigError(f"descriptor.rmin0 must be in [0, {float(pair_cutoffs.min()):g}) Å (the shortest pair cutoff), got {rmin0!r}")
        self.register_buffer("pair_cutoffs", pair_cutoffs, persistent=False)
        self.register_buffer("neighbor_weights", torch.tensor([self.weights[s] for s in self.species], dtype=DTYPE), persistent=False)
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)
        self.indices = bispectrum_indices(self.twojmax)

    @property
    def n_features(self) -> int:
        return len(self.indices)

    def get_config(self) -> dict[str, Any]:
        return {
            "species": list(self.species),
            "rcutfac": self.rcutfac,
            "twojmax": self.twojmax,
            "rfac0": self.rfac0,
            "rmin0": self.rmin0,
            "radii": dict(self.radii),
            "weights": dict(self.weights),
            "switch": self.switch,
            "bzero": self.bzero,
        }

    def describe(self) -> list[str]:
        return [f"B(j1={j1 / 2:g}, j2={j2 / 2:g}, j={j / 2:g})" for j1, j2, j in self.indices]

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        n_atoms = numbers.shape[0]
        species = self.lookup[numbers]
        center, neighbor = species[edge_index[0]], species[edge_index[1]]
        cutoffs = self.pair_cutoffs[center, neighbor]  # (e,) Å
        distances = edge_vectors.norm(dim=1)
        keep = torch.nonzero((distances < cutoffs) & (distances > 1e-10)).squeeze(1)
        vectors, distances, cutoffs = edge_vectors[keep], distances[keep], cutoffs[keep]
        theta0 = (distances - self.rmin0) * self.rfac0 * math.pi / (cutoffs - self.rmin0)
        z0 = distances / torch.tan(theta0)
        r0inv = 1.0 / torch.sqrt(distances**2 + z0**2)
        x, y, z = vectors.unbind(1)
        a = torch.complex(z0 * r0inv, -z * r0inv)  # (e,)
        b = torch.complex(y * r0inv, -x * r0inv)
        scale = self.neighbor_weights[neighbor[keep]]
        if self.switch:
            fc = 0.5 * (torch.cos(math.pi * (distances - self.rmin0) / (cutoffs - self.rmin0)) + 1.0)
            scale = scale * torch.where(distances <= self.rmin0, torch.ones_like(fc), fc)
        centers = edge_index[0, keep]
        totals = []  # U_j of every atom, (n_atoms, j+1, j+1) complex
        for j, layer in enumerate(wigner_layers(a, b, self.twojmax)):
            total = torch.zeros(n_atoms, j + 1, j + 1, dtype=layer.dtype)
            total = total.index_add(0, centers, scale.to(layer.dtype)[:, None, None] * layer)
            totals.append(total + WSELF * torch.eye(j + 1, dtype=layer.dtype))
        columns = []
        for j1, j2, j in self.indices:
            h = j // 2 + 1
            cg = coupling(j1, j2, j).to(totals[0].dtype)  # (j+1, j1+1, j2+1)
            rows = torch.einsum("rpq,npa,nqb->nrab", cg[:h], totals[j1], totals[j2])  # (n, h, j1+1, j2+1)
            zeta = torch.einsum("cab,nrab->nrc", cg, rows)  # (n, h, j+1): Z rows mb < h
            value = (half_weights(j) * (totals[j][:, :h, :].conj() * zeta).real).sum((1, 2))
            columns.append(value - (WSELF**3 * (j + 1) if self.bzero else 0.0))
        return torch.stack(columns, dim=1)


def _per_element(values: Mapping[str, float] | None, species: Sequence[str], default: float, key: str) -> dict[str, float]:
    """``{element: value}`` for every element of ``species`` (``default`` for those not given)."""
    if values is None:
        return {s: default for s in species}
    if not isinstance(values, Mapping):
        raise ConfigError(f"descriptor.{key} must map elements to numbers, e.g. {{{species[0]}: {default}}}, got {values!r}")
    unknown = sorted(set(values) - set(species))
    if unknown:
        raise ConfigError(f"descriptor.{key}: {unknown} not in species {list(species)}")
    result = {s: float(values.get(s, default)) for s in species}
    bad = {s: v for s, v in result.items() if not v > 0}
    if bad:
        raise ConfigError(f"descriptor.{key} must be positive, got {bad}")
    return result
