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
JACOBIAN_EDGES = 4096  # edges per block of atoms in the closed-form Jacobian: about 0.3 GB of work at twojmax 8


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
        from_a, from_b, recursive, signs = _tables(j, a)
        h = j // 2 + 1
        previous = layers[-1][:, :h, :]  # (n, h, j): rows mb < h of layer j - 1
        zero = previous.new_zeros(n, h, 1)
        top = ca * from_a * torch.cat([previous, zero], 2) - cb * from_b * torch.cat([zero, previous], 2)  # (n, h, j+1)
        layers.append(_mirrored(top, j, recursive, signs))
    return layers


def wigner_derivatives(
    a: torch.Tensor, b: torch.Tensor, da: torch.Tensor, db: torch.Tensor, layers: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """``d u_j / d r`` ``(n, j + 1, j + 1, 3)`` complex for each layer of :func:`wigner_layers`,
    given ``da``, ``db`` ``(n, 3)`` (1/Å): the same recursion differentiated (VMK 4.8.2)."""
    n = a.shape[0]
    derivatives = [a.new_zeros(n, 1, 1, 3)]
    ca, cb = a.conj()[:, None, None, None], b.conj()[:, None, None, None]
    dca, dcb = da.conj()[:, None, None, :], db.conj()[:, None, None, :]
    for j in range(1, len(layers)):
        from_a, from_b, recursive, signs = _tables(j, a)
        h = j // 2 + 1
        previous = layers[j - 1][:, :h, :, None]  # (n, h, j, 1)
        d_previous = derivatives[-1][:, :h, :, :]  # (n, h, j, 3)
        zero = d_previous.new_zeros(n, h, 1, 3)
        shifted_right = torch.cat([previous.expand(-1, -1, -1, 3), zero], 2)  # (n, h, j+1, 3): prev[ma]
        shifted_left = torch.cat([zero, previous.expand(-1, -1, -1, 3)], 2)  # prev[ma - 1]
        d_right, d_left = torch.cat([d_previous, zero], 2), torch.cat([zero, d_previous], 2)
        top = from_a[..., None] * (dca * shifted_right + ca * d_right) - from_b[..., None] * (dcb * shifted_left + cb * d_left)
        derivatives.append(_mirrored(top, j, recursive[..., None], signs[..., None]))
    return derivatives


def _tables(j: int, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`recursion_tables` in the real precision of ``a`` (float64 or, for inference, float32)."""
    from_a, from_b, recursive, signs = recursion_tables(j)
    real = a.real.dtype
    return from_a.to(real), from_b.to(real), recursive, signs.to(real)


def _mirrored(top: torch.Tensor, j: int, recursive: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """The whole ``(n, j + 1, j + 1, ...)`` layer from its recursion rows ``top`` ``(n, h, j + 1, ...)``
    by ``u[j - mb, j - ma] = (-1)^(ma - mb) conj(u[mb, ma])``, entry for entry as LAMMPS fills it."""
    full = torch.cat([top, top.new_zeros(top.shape[0], j + 1 - top.shape[1], *top.shape[2:])], 1)
    return torch.where(recursive, full, signs * full.flip(1, 2).conj())


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
        keep, centers, vectors, distances, cutoffs, weights = self._edges(numbers, edge_index, edge_vectors)
        a, b = cayley_klein(vectors, distances, cutoffs, self.rmin0, self.rfac0)
        fc, _ = self._switch(distances, cutoffs)
        totals = self._totals(numbers.shape[0], centers, (fc * weights).to(a.dtype), wigner_layers(a, b, self.twojmax))
        return self._components(totals)

    def features_and_jacobian(
        self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n_atoms, F)`` and ``dB_center/dr_edge`` ``(n_edges, F, 3)`` (1/Å) in closed
        form, as LAMMPS's ``compute_dbidrj``: with ``Z`` of each atom, ``dB_{j1 j2 j}/dr`` is the
        half sum of ``Re(conj(dU_j/dr) Z_{j1 j2 j})`` plus ``(j + 1)/(j1 + 1)`` times that of
        ``Re(conj(dU_j1/dr) Z_{j j2 j1})`` and ``(j + 1)/(j2 + 1)`` times that of
        ``Re(conj(dU_j2/dr) Z_{j j1 j2})`` (the symmetry of the coupling), with ``dU/dr`` of each
        edge from the differentiated recursion (equal to autograd,
        :func:`pesmith.testing.check_descriptor`)."""
        n_atoms = numbers.shape[0]
        features = torch.zeros(n_atoms, self.n_features, dtype=DTYPE)
        jacobian = torch.zeros(edge_vectors.shape[0], self.n_features, 3, dtype=DTYPE)
        with torch.no_grad():
            keep, centers, vectors, distances, cutoffs, weights = self._edges(numbers, edge_index, edge_vectors)
            for first, last, edges in atom_blocks(centers, n_atoms, JACOBIAN_EDGES):  # within the memory of one block
                block_features, block_jacobian = self._block_jacobian(
                    last - first, centers[edges] - first, vectors[edges], distances[edges], cutoffs[edges], weights[edges]
                )
                features[first:last] = block_features
                jacobian[keep[edges]] = block_jacobian
        return features, jacobian

    def _block_jacobian(
        self, n_atoms: int, centers: torch.Tensor, vectors: torch.Tensor, distances: torch.Tensor, cutoffs: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n_atoms, F)`` of a block of atoms and the derivatives ``(e, F, 3)`` of their
        kept edges (:meth:`features_and_jacobian`)."""
        a, b, da, db = cayley_klein(vectors, distances, cutoffs, self.rmin0, self.rfac0, derivatives=True)
        fc, dfc = self._switch(distances, cutoffs)
        layers = wigner_layers(a, b, self.twojmax)
        scale, slope = (fc * weights).to(a.dtype), (dfc * weights).to(a.dtype)
        totals = self._totals(n_atoms, centers, scale, layers)
        unit = (vectors / distances[:, None]).to(a.dtype)  # (e, 3)
        halves = []  # d(fc w u_j)/dr on the rows mb < j // 2 + 1, flattened: (e, n_u, 3)
        for j, (layer, derivative) in enumerate(zip(layers, wigner_derivatives(a, b, da, db, layers))):
            h = j // 2 + 1
            weighted = scale[:, None, None, None] * derivative[:, :h] + slope[:, None, None, None] * layer[:, :h, :, None] * unit[:, None, None, :]
            halves.append(weighted.reshape(weighted.shape[0], -1, 3))
        d_u = torch.cat(halves, 1)  # (e, n_u, 3)
        adjoint = self._adjoint(totals)  # (n_atoms, F, n_u)
        return self._components(totals), torch.einsum("euc,eku->ekc", d_u.conj(), adjoint[centers]).real

    def _edges(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor):
        """The edges within their pair cutoff: their positions ``keep``, center atoms, vectors
        ``(e, 3)`` (Å), lengths, pair cutoffs (Å) and neighbor weights."""
        species = self.lookup[numbers]
        center, neighbor = species[edge_index[0]], species[edge_index[1]]
        cutoffs = self.pair_cutoffs[center, neighbor]  # (e,) Å
        distances = edge_vectors.norm(dim=1)
        keep = torch.nonzero((distances < cutoffs) & (distances > 1e-10)).squeeze(1)
        return keep, edge_index[0, keep], edge_vectors[keep], distances[keep], cutoffs[keep], self.neighbor_weights[neighbor[keep]]

    def _switch(self, distances: torch.Tensor, cutoffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LAMMPS's switch ``fc(r)`` and ``dfc/dr`` (1/Å): 1 up to ``rmin0``, a cosine to 0 at the cutoff."""
        if not self.switch:
            return torch.ones_like(distances), torch.zeros_like(distances)
        factor = math.pi / (cutoffs - self.rmin0)
        inside = distances > self.rmin0
        fc = torch.where(inside, 0.5 * (torch.cos((distances - self.rmin0) * factor) + 1.0), torch.ones_like(distances))
        dfc = torch.where(inside, -0.5 * torch.sin((distances - self.rmin0) * factor) * factor, torch.zeros_like(distances))
        return fc, dfc

    def _totals(self, n_atoms: int, centers: torch.Tensor, scale: torch.Tensor, layers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``U_j`` of every atom ``(n_atoms, j + 1, j + 1)``: ``wself I`` plus the scaled layers of its edges."""
        totals = []
        for j, layer in enumerate(layers):
            total = torch.zeros(n_atoms, j + 1, j + 1, dtype=layer.dtype).index_add(0, centers, scale[:, None, None] * layer)
            totals.append(total + WSELF * torch.eye(j + 1, dtype=layer.dtype))
        return totals

    def _components(self, totals: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(n_atoms, F)`` components ``B_{j1 j2 j}`` from the atoms' ``U_j``."""
        columns = []
        for j1, j2, j in self.indices:
            h = j // 2 + 1
            zeta = coupled(totals, j1, j2, j, h)  # (n, h, j+1): Z rows mb < h
            product = (totals[j][:, :h, :].conj() * zeta).real
            value = (half_weights(j).to(product.dtype) * product).sum((1, 2))
            columns.append(value - (WSELF**3 * (j + 1) if self.bzero else 0.0))
        return torch.stack(columns, dim=1)

    def _adjoint(self, totals: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(n_atoms, F, n_u)`` complex: per component, the weights of ``conj(dU)`` on the rows
        ``mb < j // 2 + 1`` of every layer (flattened as in :meth:`features_and_jacobian`) whose
        real part of the sum is ``dB`` (LAMMPS's symmetric form)."""
        n = totals[0].shape[0]
        sizes = [(j // 2 + 1) * (j + 1) for j in range(self.twojmax + 1)]
        offsets = [sum(sizes[:j]) for j in range(self.twojmax + 1)]
        adjoint = torch.zeros(n, self.n_features, sum(sizes), dtype=totals[0].dtype)
        for k, (j1, j2, j) in enumerate(self.indices):
            for block, first, second, factor in ((j, j1, j2, 1.0), (j1, j, j2, (j + 1) / (j1 + 1)), (j2, j, j1, (j + 1) / (j2 + 1))):
                h = block // 2 + 1
                zeta = coupled(totals, first, second, block, h)  # Z_{first second block}, rows mb < h
                columns = slice(offsets[block], offsets[block] + sizes[block])
                adjoint[:, k, columns] += (factor * half_weights(block) * zeta).reshape(n, -1)
        return adjoint


def atom_blocks(centers: torch.Tensor, n_atoms: int, max_edges: int):
    """Consecutive atom ranges ``(first, last, edges)`` whose edges (``centers`` sorted, the
    positions of the range's edges) number at most ``max_edges`` (or one atom with more)."""
    counts = torch.bincount(centers, minlength=n_atoms).tolist()
    offsets = [0]
    for count in counts:
        offsets.append(offsets[-1] + count)
    first = 0
    while first < n_atoms:
        last = first + 1
        while last < n_atoms and offsets[last + 1] - offsets[first] <= max_edges:
            last += 1
        yield first, last, torch.arange(offsets[first], offsets[last])
        first = last


def cayley_klein(
    vectors: torch.Tensor, distances: torch.Tensor, cutoffs: torch.Tensor, rmin0: float, rfac0: float, derivatives: bool = False
):
    """The Cayley-Klein parameters ``a``, ``b`` ``(e,)`` complex of each edge (module docstring)
    and, with ``derivatives``, ``da/dr``, ``db/dr`` ``(e, 3)`` (1/Å), as LAMMPS's ``compute_duarray``."""
    x, y, z = vectors.unbind(1)
    scale0 = rfac0 * math.pi / (cutoffs - rmin0)  # 1/Å
    theta0 = (distances - rmin0) * scale0
    z0 = distances / torch.tan(theta0)
    r0inv = 1.0 / torch.sqrt(distances**2 + z0**2)
    a = torch.complex(z0 * r0inv, -z * r0inv)
    b = torch.complex(y * r0inv, -x * r0inv)
    if not derivatives:
        return a, b
    unit = vectors / distances[:, None]  # (e, 3)
    dz0dr = z0 / distances - distances * scale0 * (distances**2 + z0**2) / distances**2
    dr0inv = (-(r0inv**3) * (distances + z0 * dz0dr))[:, None] * unit  # (e, 3)
    dz0 = dz0dr[:, None] * unit
    da_r = dz0 * r0inv[:, None] + z0[:, None] * dr0inv
    da_i = -z[:, None] * dr0inv
    da_i[:, 2] -= r0inv
    db_r = y[:, None] * dr0inv
    db_r[:, 1] += r0inv
    db_i = -x[:, None] * dr0inv
    db_i[:, 0] -= r0inv
    return a, b, torch.complex(da_r, da_i), torch.complex(db_r, db_i)


def coupled(totals: Sequence[torch.Tensor], j1: int, j2: int, j: int, rows: int) -> torch.Tensor:
    """``Z_{j1 j2 j}`` ``(n, rows, j + 1)`` complex of every atom: the rows ``mb < rows`` of
    ``sum C C U_j1 U_j2`` (module docstring)."""
    cg = coupling(j1, j2, j).to(totals[0].dtype)  # (j+1, j1+1, j2+1)
    partial = torch.einsum("rpq,npa,nqb->nrab", cg[:rows], totals[j1], totals[j2])  # (n, rows, j1+1, j2+1)
    return torch.einsum("cab,nrab->nrc", cg, partial)


def _per_element(values: Mapping[str, float] | None, species: Sequence[str], default: float, key: str) -> dict[str, float]:
    """``{element: value}`` for every element of ``species`` (``default`` for those not given)."""
    if values is None:
        return {s: default for s in species}
    if not isinstance(values, Mapping):
        raise ConfigError(f"descriptor.{key} must map elements to numbers, e.g. {{{species[0]}: {default}}}, got {values!r}")
    unknown = sorted(set(values) - set(species))
    if unknown:
        raise ConfigError(f"descriptor.{key}: {unknown} not in species {list(species)}")
    given = {s: values.get(s, default) for s in species}
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in given.values()):
        raise ConfigError(f"descriptor.{key} must map elements to numbers, e.g. {{{species[0]}: {default}}}, got {values!r}")
    result = {s: float(v) for s, v in given.items()}
    bad = {s: v for s, v in result.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise ConfigError(f"descriptor.{key} must be positive and finite, got {bad}")
    return result
