"""Gaussian approximation potential (GAP): sparse Gaussian-process regression of atomic energies.

E = sum_i sum_m alpha_m k(q_i, q_m), eV, over the atoms i of a structure and the sparse points
m (pesmith adds the per-element reference energies). The kernel ``k`` includes ``delta^2``
(eV^2, the prior variance of an atomic energy) and is zero between environments of different
central elements: each element has its own sparse set and, in effect, its own GP, as with
gap_fit's element-specific descriptors.

Kernels (``q`` = the descriptor's features, ``F`` of them):

* ``squared_exponential``: ``delta^2 exp(-|x - x'|^2 / (2 F theta^2))`` on features
  standardized per element, ``x = (q - mean_Z) / scale_Z``. The ``F`` in the denominator makes
  ``theta`` the length scale of the root-mean-square difference of standardized features, so
  one value suits descriptors of any size.
* ``dot_product``: ``delta^2 (x . x')^zeta`` on unit-normalised features ``x = q / |q|``; with
  a SOAP power spectrum this is the SOAP kernel (Bartók et al. 2013).
* ``linear``: ``delta^2 q . q'`` on the raw features (Bayesian linear regression on them). An
  atom's energy is then linear in its features, so features that are sums over neighbors give
  energies that are sums over pairs: with the ``distance_2b`` descriptor this is GAP's 2-body
  term, a GP on each pair distance with a squared-exponential kernel (see that descriptor).

The fit (:mod:`.gap_solve`, also for the GAP terms of a potential fitted jointly) is the projected-process (subset-of-regressors) solution with observations y of total
energies (noise ``sigma_energy * sqrt(N_atoms)``), force components (noise ``sigma_force``) and
virial components ``V * stress`` (noise ``sigma_virial * sqrt(N_atoms)``), per ``config_type``
if asked (:mod:`.gap_fit`):

    alpha = (K_MM + K_MN L^-1 K_NM)^-1 K_MN L^-1 y,     L = diag(sigma^2),

where the force and virial rows of ``K_NM`` come from the kernel's gradient and the
descriptor's exact Jacobians (:mod:`.gap_derivatives`). It is solved in float64 as the
least-squares problem of the stacked, weighted ``[L^-1/2 K_NM; U]`` (``U^T U = K_MM + jitter
delta^2 I``), whose QR factorisation is updated block by block: memory grows with n_sparse x
(n_sparse + one block of observations), never with the number of observations squared.

The energy uncertainty (:meth:`GAPModel.energy_std`) is the deterministic-training-conditional
predictive variance of a structure's energy E* = sum_i f(q_i), eV^2:

    var E* = sum_ij k(q_i, q_j) - k*M K_MM^-1 kM* + k*M (K_MM + K_MN L^-1 K_NM)^-1 kM*,

with k*M = sum_i k(q_i, q_M). It is about zero where the data fix the energy and returns to the
prior variance far from all sparse points. :meth:`GAPModel.forces_std` is the same for each
force component, with the prior force variance from the kernel's second derivative and the
force rows in place of k*M (:mod:`.gap_derivatives`).

References
----------
A. P. Bartók, M. C. Payne, R. Kondor and G. Csányi, Phys. Rev. Lett. 104, 136403 (2010),
doi:10.1103/PhysRevLett.104.136403.
A. P. Bartók, R. Kondor and G. Csányi, Phys. Rev. B 87, 184115 (2013),
doi:10.1103/PhysRevB.87.184115.
V. L. Deringer and G. Csányi, Phys. Rev. B 95, 094203 (2017), doi:10.1103/PhysRevB.95.094203.
J. Quiñonero-Candela and C. E. Rasmussen, J. Mach. Learn. Res. 6, 1939 (2005) (sparse GP
approximations and their predictive variances).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers
from pydantic import Field

from pesmith.descriptor import species_lookup
from pesmith.errors import ConfigError, DataError
from pesmith.features import FeatureSet
from pesmith.fit_settings import FitSettings
from pesmith.model import FitSummary, Model, standardization
from pesmith.structures import DTYPE

from .gap_derivatives import force_and_virial_rows, force_prior_variance
from .gap_fit import ConfigTypeSigma
from .gap_solve import fit_jointly
from .sparsify import (
    SparseMethod,
    read_sparse_index,
    select_sparse,
    select_uniform,
    sparse_file_path,
    write_sparse_index,
    write_sparse_values,
)

logger = logging.getLogger(__name__)

Kernel = Literal["squared_exponential", "dot_product", "linear"]
KERNELS: tuple[str, ...] = ("squared_exponential", "dot_product", "linear")
BLOCK_BYTES = 1 << 27  # ~134 MB: the largest (edges x n_sparse x 3) block of force-row work
KERNEL_SUM_ROWS = 1024  # atoms per block when summing a structure's atom-atom kernel


class GAPSettings(FitSettings):
    """Fit settings of the ``gap`` model (the ``training:`` section). A GAP term of a potential
    of several terms may set its own ``n_sparse``, ``sparse_method`` and ``jitter``
    (``terms[k].training``); the sigmas are the observations' and so shared."""

    term_keys: ClassVar[tuple[str, ...]] = ("n_sparse", "sparse_method", "jitter", "sparse_file", "write_sparse_index", "write_sparse_values")
    path_keys: ClassVar[tuple[str, ...]] = ("sparse_file", "write_sparse_index", "write_sparse_values")

    n_sparse: int = Field(
        100,
        ge=1,
        description="sparse points per element (at most its number of training environments); with sparse_method"
        " uniform, per pair of center and neighbor element (at most its number of training pairs)",
    )
    sparse_method: SparseMethod | Literal["basis", "file", "uniform"] = Field(
        "cur",
        description="how sparse points are chosen: cur, fps (furthest point) or random environments; file: the"
        " environments listed in sparse_file; or, with kernel linear only, basis: the unit vectors of the feature"
        " space, one set per element (n_sparse is then the number of features; with distance_2b, the grid of"
        " Gaussians in r), or uniform: gap_fit's 2-body sparse points, pair distances of the training data spread"
        " evenly over their range, each the features of an atom with that one neighbor (for distance_2b)",
    )
    sparse_file: str | None = Field(
        None,
        description="with sparse_method file: gap_fit's index file (its sparse_method=index_file): one 1-based index"
        " per line into the element's training environments in training-set order (structure by structure, atoms in"
        " order); {element} in the path stands for each element's symbol (required with several elements);"
        " n_sparse is then ignored; a relative path is taken from the config's folder",
    )
    write_sparse_index: str | None = Field(
        None,
        description="write the chosen sparse points as gap_fit index files (the sparse_file format, like gap_fit's"
        " print_sparse_index) to this path, {element} and relative paths as in sparse_file",
    )
    write_sparse_values: str | None = Field(
        None,
        description="with sparse_method uniform: write the chosen pair distances as gap_fit's sparse_file for its"
        " sparse_method=file (per point its cutoff weight, then the distance, one number per line), so gap_fit fits"
        " on the same sparse points; {element} stands for the pair of center and neighbor element, e.g. LiSi"
        " (required with several), a relative path is taken from the config's folder",
    )
    sigma_energy: float = Field(
        0.002, gt=0, description="energy noise per atom, eV/atom; a structure of N atoms gets sigma_energy * sqrt(N) eV"
    )
    sigma_force: float | None = Field(0.1, gt=0, description="force noise per component, eV/Å; null fits energies only")
    sigma_virial: float | None = Field(
        None,
        gt=0,
        description="virial noise per atom and component, eV/atom, of V * stress; a structure of N atoms gets"
        " sigma_virial * sqrt(N) eV; structures without a stress label are skipped; null fits no virials"
        " (stress_weight > 0 reports the stress RMSE)",
    )
    config_type_sigma: dict[str, ConfigTypeSigma] = Field(
        default_factory=dict,
        description="sigmas per atoms.info['config_type'], e.g. {Vacancy: {energy: 0.001, force: 0.05, virial: 0.05}};"
        " those left out take the defaults above",
    )
    jitter: float = Field(1e-8, ge=0, description="added to the diagonal of K_MM as jitter * delta^2 (dimensionless)")
    force_weight: float = Field(
        0.1, ge=0, description="weight of the force MSE in the reported loss only (the fit weighs forces by sigma_force)"
    )

    @property
    def fits_virials(self) -> bool:
        """Whether any virial sigma is set (default or per config_type)."""
        return self.sigma_virial is not None or any(s.virial is not None for s in self.config_type_sigma.values())

    @property
    def needs_jacobian(self) -> bool:
        """Feature derivatives are needed to fit forces or virials or to report their errors."""
        forces = self.sigma_force is not None or any(s.force is not None for s in self.config_type_sigma.values())
        return forces or self.fits_virials or super().needs_jacobian


class GAPModel(Model):
    """Sparse Gaussian-process regression of atomic energies (GAP), eV, with an energy uncertainty.

    Parameters
    ----------
    species
        Chemical symbols; each element has its own sparse points.
    n_features
        Features per atom (from the descriptor).
    kernel
        ``squared_exponential`` (standardized features), ``dot_product`` (unit-normalised
        features, SOAP-style) or ``linear`` (raw features; pair-additive with ``distance_2b``).
    theta
        Length scale of the squared-exponential kernel, in standardized-feature units
        (root-mean-square over features); unused by ``dot_product``.
    zeta
        Integer power of the dot-product kernel; unused by ``squared_exponential``.
    delta
        Energy scale, eV: the prior standard deviation of one atomic energy.

    Raises
    ------
    ConfigError
        Unknown kernel or a non-positive theta, zeta or delta.
    """

    settings_schema: ClassVar[type[GAPSettings]] = GAPSettings

    def __init__(
        self,
        species: Sequence[str],
        n_features: int,
        kernel: Kernel = "dot_product",
        theta: float = 1.0,
        zeta: int = 4,
        delta: float = 1.0,
    ):
        super().__init__(species, n_features)
        if kernel not in KERNELS:
            raise ConfigError(f"model.kernel {kernel!r} is not one of {', '.join(KERNELS)}")
        if not theta > 0:
            raise ConfigError(f"model.theta must be a positive length scale (standardized features), got {theta!r}")
        if isinstance(zeta, bool) or int(zeta) != zeta or zeta < 1:
            raise ConfigError(f"model.zeta must be a positive integer power, got {zeta!r}")
        if not delta > 0:
            raise ConfigError(f"model.delta must be a positive energy scale in eV, got {delta!r}")
        self.kernel, self.theta, self.zeta, self.delta = kernel, float(theta), int(zeta), float(delta)
        n, f = len(self.species), self.n_features
        self.register_buffer("feature_mean", torch.zeros(n, f, dtype=DTYPE))
        self.register_buffer("feature_scale", torch.ones(n, f, dtype=DTYPE))
        self.register_buffer("sparse_points", torch.zeros(0, f, dtype=DTYPE))  # (M, F), kernel space
        self.register_buffer("sparse_species", torch.zeros(0, dtype=torch.int64))  # (M,) index into species
        self.register_buffer("alpha", torch.zeros(0, dtype=DTYPE))  # (M,) 1/eV (the kernel is in eV^2)
        self.register_buffer("kmm_factor", torch.zeros(0, 0, dtype=DTYPE))  # (M, M) lower: K_MM + jitter
        self.register_buffer("posterior_factor", torch.zeros(0, 0, dtype=DTYPE))  # (M, M) upper R: R^T R = Sigma^-1
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)

    @property
    def n_sparse(self) -> int:
        return int(self.alpha.shape[0])

    def get_config(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "theta": self.theta, "zeta": self.zeta, "delta": self.delta}

    # --- kernel -------------------------------------------------------------------------

    def _transform(self, features: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n, F)`` in the kernel's space and each atom's species index ``(n,)``."""
        index = self.lookup[numbers]
        if self.kernel == "squared_exponential":
            return (features - self.feature_mean[index]) / self.feature_scale[index], index
        if self.kernel == "linear":
            return features, index
        return features / features.norm(dim=1, keepdim=True).clamp_min(1e-300), index

    def _kernel(self, x: torch.Tensor, index: torch.Tensor, y: torch.Tensor, index_y: torch.Tensor) -> torch.Tensor:
        """``(n, m)`` kernel, eV^2, between rows of ``x`` and ``y`` (kernel space), zero across elements."""
        same = (index[:, None] == index_y[None, :]).to(x.dtype)
        if self.kernel == "squared_exponential":
            distance2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T  # (n, m)
            value = torch.exp(-distance2.clamp_min(0.0) / (2.0 * self.n_features * self.theta**2))
        elif self.kernel == "linear":
            value = x @ y.T
        else:
            value = (x @ y.T) ** self.zeta
        return self.delta**2 * value * same

    def _sparse_kernel(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``(n, M)`` kernel between atoms and the sparse points."""
        return self._kernel(x, index, self.sparse_points, self.sparse_species)

    def forward(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        x, index = self._transform(features, numbers)
        return self._sparse_kernel(x, index) @ self.alpha  # (n_atoms,)

    # --- uncertainty --------------------------------------------------------------------

    def energy_std(
        self, features: torch.Tensor, numbers: torch.Tensor, structure_index: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """(n_structures,) predictive standard deviation of each structure's energy, eV (see the
        module docstring); the prior standard deviation before a fit."""
        with torch.no_grad():
            x, index = self._transform(features.detach(), numbers)
            variance = torch.zeros(n_structures, dtype=DTYPE)
            for s in range(n_structures):
                atoms = torch.nonzero(structure_index == s).squeeze(1)
                variance[s] = self._kernel_sum(x[atoms], index[atoms])
            if self.n_sparse:
                q = torch.zeros(n_structures, self.n_sparse, dtype=DTYPE).index_add(0, structure_index, self._sparse_kernel(x, index))
                variance = variance + self._variance_change(q)
        return variance.clamp_min(0.0).sqrt()

    def forces_std(
        self, features: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor, jacobian: torch.Tensor
    ) -> torch.Tensor:
        """(n_atoms, 3) predictive standard deviation of each force component, eV/Å; the prior
        standard deviation before a fit.

        The same deterministic-training-conditional variance as :meth:`energy_std`, for the
        linear functional ``F_kc = -dE/dr_kc``: the prior variance of the force
        (:func:`~.gap_derivatives.force_prior_variance`, the kernel's second derivative through
        the descriptor Jacobian on both sides) minus ``q K_MM^-1 q^T`` plus ``q Sigma q^T``,
        with ``q`` the force rows (the prior covariance of the force with the sparse values).
        ``jacobian`` ``(n_edges, F, 3)`` holds ``dq_center/dr_edge`` of the ``edge_index`` edges.
        """
        with torch.no_grad():
            features, jacobian = features.detach(), jacobian.detach()
            variance = force_prior_variance(self, features, numbers, edge_index, jacobian)  # (n_atoms, 3)
            if self.n_sparse:
                rows, _ = force_and_virial_rows(self, features, numbers, edge_index, jacobian, self._block_edges())
                variance = variance + self._variance_change(rows.reshape(-1, self.n_sparse)).reshape(variance.shape)
        return variance.clamp_min(0.0).sqrt()

    def _variance_change(self, q: torch.Tensor) -> torch.Tensor:
        """``(n,)`` ``-q K_MM^-1 q^T + q Sigma q^T`` per row of ``q`` ``(n, M)``, the prior
        covariances of n predicted quantities with the sparse values."""
        explained = torch.linalg.solve_triangular(self.kmm_factor, q.T, upper=False)  # (M, n)
        posterior = torch.linalg.solve_triangular(self.posterior_factor.T, q.T, upper=False)
        return (posterior**2).sum(0) - (explained**2).sum(0)

    def _block_edges(self) -> int:
        """Edges per block of force- and virial-row work within :data:`BLOCK_BYTES`."""
        return max(1, BLOCK_BYTES // (8 * 3 * 3 * max(self.n_sparse, 1)))

    def _kernel_sum(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """sum_ij k(x_i, x_j), eV^2, over the atoms of one structure, in blocks of rows."""
        total = torch.zeros((), dtype=DTYPE)
        for start in range(0, x.shape[0], KERNEL_SUM_ROWS):
            rows = slice(start, start + KERNEL_SUM_ROWS)
            total = total + self._kernel(x[rows], index[rows], x, index).sum()
        return total

    # --- fit ----------------------------------------------------------------------------

    def fit(self, train_set: FeatureSet, validation: FeatureSet | None, settings: GAPSettings) -> FitSummary:
        """Choose sparse points per element, then solve the projected-process system on the
        energies, forces (unless ``sigma_force`` is null) and virials (if ``sigma_virial`` is
        set) of ``train_set``, with per-config_type sigmas (:mod:`.gap_fit`).

        Raises
        ------
        DataError
            ``n_sparse`` exceeds an element's training environments, a config_type of
            ``config_type_sigma`` is not in the data, or the system is singular (the message
            says which of ``jitter`` and the sigmas to raise).
        """
        return fit_jointly([self], [train_set], [validation], settings, [settings])

    @classmethod
    def fit_terms(
        cls,
        models: Sequence["GAPModel"],
        train_sets: Sequence[FeatureSet],
        validations: Sequence[FeatureSet | None],
        settings: GAPSettings,
        term_settings: Sequence[GAPSettings],
    ) -> FitSummary:
        """Fit the GAP terms of a potential as one sparse GP with the block-diagonal sparse set
        of all terms (:func:`.gap_solve.fit_jointly`): each term its own kernel, ``delta``,
        sparse points (``term_settings``: ``n_sparse``, ``sparse_method``, ``jitter``), the
        noise of ``settings`` shared."""
        return fit_jointly(models, train_sets, validations, settings, term_settings)

    def prepare_sparse_set(self, train_set: FeatureSet, settings: GAPSettings) -> torch.Tensor:
        """Standardize (squared-exponential kernel), choose the sparse points of ``train_set``
        and return the lower Cholesky factor ``(M, M)`` of ``K_MM + jitter delta^2 I`` (eV).

        Raises
        ------
        DataError
            Too few environments for ``n_sparse``, or ``K_MM`` not positive definite.
        """
        if self.kernel == "squared_exponential":
            mean, scale = standardization(train_set.features, train_set.numbers, self.species)
            self.feature_mean.copy_(mean)
            self.feature_scale.copy_(scale)
        self._choose_sparse_points(train_set, settings)
        m = self.n_sparse
        with torch.no_grad():
            kmm = self._kernel(self.sparse_points, self.sparse_species, self.sparse_points, self.sparse_species)
            kmm_factor, info = torch.linalg.cholesky_ex(kmm + settings.jitter * self.delta**2 * torch.eye(m, dtype=DTYPE))
        if int(info) != 0:
            raise DataError(
                f"the kernel matrix of the {m} sparse points is not positive definite with training.jitter"
                f" {settings.jitter:g} (sparse points nearly repeat): raise training.jitter, e.g. to"
                f" {max(settings.jitter * 100, 1e-8):g}"
            )
        return kmm_factor

    def _choose_sparse_points(self, data: FeatureSet, settings: GAPSettings) -> None:
        """Select ``settings.n_sparse`` environments of each element present in ``data`` (seeded),
        or with ``sparse_method: basis`` the unit feature vectors of each element present."""
        rng = np.random.default_rng(settings.seed)
        x, index = self._transform(data.features, data.numbers)
        if settings.sparse_method == "basis" and self.kernel != "linear":
            raise ConfigError(f"training.sparse_method basis needs model.kernel linear, not {self.kernel}; choose cur, fps or random")
        if (settings.sparse_method == "file") != (settings.sparse_file is not None):
            raise ConfigError(
                "training.sparse_file and training.sparse_method file go together: set both (sparse_method: file,"
                f" sparse_file: PATH) or neither (got sparse_method {settings.sparse_method}, sparse_file {settings.sparse_file!r})"
            )
        if settings.write_sparse_index is not None and settings.sparse_method in ("basis", "uniform"):
            raise ConfigError(
                f"training.write_sparse_index needs environments as sparse points, not sparse_method {settings.sparse_method}"
                + (" (write_sparse_values writes its pair distances)" if settings.sparse_method == "uniform" else "")
            )
        if settings.write_sparse_values is not None and settings.sparse_method != "uniform":
            raise ConfigError(
                f"training.write_sparse_values writes pair distances, the sparse points of sparse_method uniform, not"
                f" {settings.sparse_method}; use write_sparse_index for environments"
            )
        if settings.sparse_method == "uniform":
            self._choose_pair_points(data, settings, rng)
            return
        n_present = int((torch.bincount(index, minlength=len(self.species)) > 0).sum())
        chosen, basis = [], []
        for k, symbol in enumerate(self.species):
            rows = torch.nonzero(index == k).squeeze(1)
            if rows.numel() == 0:
                logger.warning("no %s environments in the training data: %s atoms get only their reference energy", symbol, symbol)
                continue
            if self.kernel != "squared_exponential":  # an all-zero row (an element a restricted descriptor skips) has zero kernel
                rows = rows[x[rows].abs().amax(dim=1) > 0]
                if rows.numel() == 0:
                    logger.info("%s atoms have no features in this term (energy 0): no %s sparse points", symbol, symbol)
                    continue
            if settings.sparse_method == "basis":
                basis.append(k)
                continue
            if settings.sparse_method == "file":
                path = sparse_file_path(settings.sparse_file, symbol, n_present, "training.sparse_file")
                picked = read_sparse_index(path, rows.numel(), "training.sparse_file")
                chosen.append(rows[torch.as_tensor(picked)])
                continue
            if settings.n_sparse > rows.numel():
                raise DataError(
                    f"training.n_sparse {settings.n_sparse} exceeds the {rows.numel()} {symbol} environments of the"
                    f" training data; set training.n_sparse to at most {rows.numel()} or add structures"
                )
            picked = select_sparse(x[rows].numpy(), settings.n_sparse, settings.sparse_method, rng)
            chosen.append(rows[torch.as_tensor(picked)])
            if settings.write_sparse_index is not None:
                path = sparse_file_path(settings.write_sparse_index, symbol, n_present, "training.write_sparse_index")
                write_sparse_index(path, picked)
        if settings.sparse_method == "basis":  # Bayesian linear regression: K_MM = delta^2 I, K_NM = delta^2 q
            self.sparse_points = torch.eye(self.n_features, dtype=DTYPE).repeat(len(basis), 1)
            self.sparse_species = torch.tensor(basis, dtype=torch.int64).repeat_interleave(self.n_features)
            self.alpha = torch.zeros(self.sparse_points.shape[0], dtype=DTYPE)
            return
        chosen_rows = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.int64)
        self.sparse_points = x[chosen_rows].clone()
        self.sparse_species = index[chosen_rows].clone()
        self.alpha = torch.zeros(len(chosen_rows), dtype=DTYPE)

    def _choose_pair_points(self, data: FeatureSet, settings: GAPSettings, rng: np.random.Generator) -> None:
        """gap_fit's uniform sparse points of a 2-body term: for each pair of center and neighbor
        element, ``settings.n_sparse`` of the training pair distances (edges within the
        descriptor's cutoff, in training order) spread evenly over their range
        (:func:`.sparsify.select_uniform`); a sparse point is the features of a center atom whose
        only neighbor is that pair (:meth:`~pesmith.descriptor.Descriptor.pair_features`).

        With ``distance_2b`` and this model's ``linear`` kernel, ``K_MM`` and ``K_NM`` are then
        gap_fit's for its ``distance_2b`` with ``delta`` half this model's (gap_fit counts each pair
        twice, once from each atom; pesmith shares it half and half), to within the descriptor's
        1e-8 basis error, for pairs of like elements.

        Raises
        ------
        ConfigError
            Another kernel than linear; ``write_sparse_values`` with a descriptor without gap_fit's
            cutoff weight, or without ``{element}`` for several element pairs.
        DataError
            ``n_sparse`` exceeds the training pairs of an element pair.
        """
        if self.kernel != "linear":
            raise ConfigError(
                f"training.sparse_method uniform chooses pair distances and needs model.kernel linear (a pair-additive"
                f" term such as distance_2b), not {self.kernel}; choose cur, fps or random"
            )
        descriptor = data.descriptor
        if descriptor is None:
            raise ValueError("sparse_method uniform needs the feature set's descriptor (FeatureSet.descriptor)")
        weight = getattr(descriptor, "cutoff_function", None)
        if settings.write_sparse_values is not None and weight is None:
            raise ConfigError(
                f"training.write_sparse_values needs a descriptor with gap_fit's cutoff weight per pair (distance_2b),"
                f" not {type(descriptor).__name__}"
            )
        distances = data.edge_vectors.norm(dim=1)  # (n_edges,) Å
        species = self.lookup[data.numbers]
        center, neighbor = species[data.edge_index[0]], species[data.edge_index[1]]
        blocks = []  # (center index, neighbor index, edges in training order)
        for a, b in ((a, b) for a in range(len(self.species)) for b in range(len(self.species))):
            edges = torch.nonzero((center == a) & (neighbor == b) & (distances < descriptor.cutoff)).squeeze(1)
            numbers = (atomic_numbers[self.species[a]], atomic_numbers[self.species[b]])
            if edges.numel() and descriptor.pair_features(*numbers, distances[edges[:1]]).abs().amax() > 0:
                blocks.append((a, b, edges))  # a pair the descriptor leaves out has all-zero features
        points, owners = [], []
        for a, b, edges in blocks:
            name = f"{self.species[a]}{self.species[b]}"
            if settings.n_sparse > edges.numel():
                raise DataError(
                    f"training.n_sparse {settings.n_sparse} exceeds the {edges.numel()} {self.species[a]}-{self.species[b]}"
                    f" pairs of the training data; set training.n_sparse to at most {edges.numel()} or add structures"
                )
            chosen = distances[edges[torch.as_tensor(select_uniform(distances[edges].numpy(), settings.n_sparse, rng))]]
            points.append(descriptor.pair_features(atomic_numbers[self.species[a]], atomic_numbers[self.species[b]], chosen))
            owners.append(torch.full((len(chosen),), a, dtype=torch.int64))
            if settings.write_sparse_values is not None:
                path = sparse_file_path(settings.write_sparse_values, name, len(blocks), "training.write_sparse_values")
                write_sparse_values(path, weight(chosen).numpy(), chosen.numpy())
        self.sparse_points = torch.cat(points) if points else torch.zeros(0, self.n_features, dtype=DTYPE)
        self.sparse_species = torch.cat(owners) if owners else torch.zeros(0, dtype=torch.int64)
        self.alpha = torch.zeros(self.sparse_points.shape[0], dtype=DTYPE)

    def force_rows(self, part: FeatureSet, block_edges: int) -> torch.Tensor:
        """``(n_atoms, 3, M)`` derivatives of the forces (eV/Å) with respect to ``alpha``: the
        predicted forces are ``force_rows @ alpha``. Closed form from the kernel gradient and
        the stored feature Jacobians, equal to autograd through :meth:`forward` (tested);
        edges are taken ``block_edges`` at a time."""
        rows, _ = force_and_virial_rows(self, part.features, part.numbers, part.edge_index, part.load_jacobian(), block_edges)
        return rows
