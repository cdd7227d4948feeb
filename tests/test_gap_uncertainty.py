"""The ``gap`` model's force uncertainty (``forces_std``): equal to the exact GP posterior computed
independently (dense kernel, autograd Hessians through the descriptor), growing away from the
data, and exposed by the ASE calculator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError

from pesmith.calculator import PesmithCalculator
from pesmith.potential import FORCES_STD, Potential
from pesmith.structures import build_batch

from test_gap import KERNELS, WITH_LINEAR, chebyshev, fitted, gap_potential, morse_cells


@pytest.fixture(scope="module")
def si_small():
    return morse_cells(4, seed=5, silicon_only=True)


@pytest.fixture(scope="module")
def lisi_train():
    return morse_cells(20, seed=1)


def kernel_space(potential: Potential, batch, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel-space features ``(n_atoms, F)`` and species indices of ``batch`` with its positions
    replaced by ``positions`` (Å, flat), differentiable."""
    moved = dataclasses.replace(batch, positions=positions.reshape(-1, 3))
    return potential.model._transform(potential.descriptor.featurize(moved), moved.numbers)


def reference_kernel(model, x: torch.Tensor, i: torch.Tensor, y: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """(n, m) kernel, eV^2, written out plainly (the model's expands the squared distance and
    clamps it, which autograd cannot differentiate twice at x = y)."""
    same = (i[:, None] == j[None, :]).to(x.dtype)
    if model.kernel == "squared_exponential":
        distance2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return model.delta**2 * torch.exp(-distance2 / (2 * model.n_features * model.theta**2)) * same
    if model.kernel == "linear":
        return model.delta**2 * (x @ y.T) * same
    return model.delta**2 * (x @ y.T) ** model.zeta * same


def dense_prior_force_covariance(potential: Potential, probe) -> np.ndarray:
    """(3n, 3n) prior covariance of the forces of ``probe``, eV^2/Å^2, by autograd: the mixed
    second derivative of ``sum_ij k(x_i(r), x_j(r'))`` at ``r = r'`` needs only first
    derivatives of the features, so it is taken on ``x + (dx/dr) u`` and ``x + (dx/dr) v`` with
    respect to ``u`` and ``v``."""
    batch = build_batch([probe], potential.descriptor.cutoff)
    r = batch.positions.reshape(-1).clone()
    n = r.shape[0]
    with torch.no_grad():
        x, index = kernel_space(potential, batch, r)
    jacobian = torch.autograd.functional.jacobian(lambda p: kernel_space(potential, batch, p)[0], r)  # (n_atoms, F, 3n)

    def linearised_covariance(both: torch.Tensor) -> torch.Tensor:
        u, v = both[:n], both[n:]
        return reference_kernel(potential.model, x + jacobian @ u, index, x + jacobian @ v, index).sum()

    hessian = torch.autograd.functional.hessian(linearised_covariance, torch.zeros(2 * n, dtype=torch.float64))
    return hessian[:n, n:].numpy()  # cov(F_a, F_b) = d^2 K / dr_a dr'_b


def exact_gp_force_variance(potential: Potential, train, sigma_per_atom: float, probe) -> np.ndarray:
    """(n_atoms, 3) posterior variance (eV^2/Å^2) of the forces of ``probe`` under the full GP on
    the energies of ``train`` (noise ``sigma_per_atom sqrt(N)``), built densely by autograd:
    the prior from :func:`dense_prior_force_covariance`, force-energy covariances as first
    derivatives of ``sum_ij k(x_i(r), x_j^train)``."""
    model, descriptor = potential.model, potential.descriptor
    batch = build_batch([probe], descriptor.cutoff)
    train_batch = build_batch(list(train.structures), descriptor.cutoff)
    with torch.no_grad():
        x_train, i_train = model._transform(descriptor.featurize(train_batch), train_batch.numbers)
    owner = train_batch.structure_index

    def energy_covariances(positions: torch.Tensor) -> torch.Tensor:  # (n_train,) cov(E*, E_s)
        per_atom = model._kernel(*kernel_space(potential, batch, positions), x_train, i_train).sum(0)
        return torch.zeros(len(train), dtype=torch.float64).index_add(0, owner, per_atom)

    r = batch.positions.reshape(-1).clone()
    prior = dense_prior_force_covariance(potential, probe)
    cross = -torch.autograd.functional.jacobian(energy_covariances, r).numpy().T  # (3n, n_train) cov(F, E_s)
    with torch.no_grad():
        atom_kernel = model._kernel(x_train, i_train, x_train, i_train).numpy()
    sums = (owner.numpy()[None, :] == np.arange(len(train))[:, None]).astype(float)
    covariance = sums @ atom_kernel @ sums.T
    noise = np.diag(sigma_per_atom**2 * np.array([len(a) for a in train.structures], dtype=float))
    posterior = prior - cross @ np.linalg.solve(covariance + noise, cross.T)
    return np.diag(posterior).reshape(-1, 3)


def sparse_force_covariances(potential: Potential, atoms) -> np.ndarray:
    """(3n, M) prior covariances of the forces of ``atoms`` with the sparse values, eV^2/Å, by
    autograd: ``-d/dr sum_i k(x_i(r), x_m)``."""
    model = potential.model
    batch = build_batch([atoms], potential.descriptor.cutoff)

    def sums(positions: torch.Tensor) -> torch.Tensor:
        return model._sparse_kernel(*kernel_space(potential, batch, positions)).sum(0)  # (M,)

    return -torch.autograd.functional.jacobian(sums, batch.positions.reshape(-1).clone()).numpy().T


def probes(train) -> list:
    near = train.structures[0].copy()
    near.rattle(0.01, seed=1)
    far = train.structures[0].copy()
    far.set_cell(far.cell * 0.9, scale_atoms=True)
    far.rattle(0.15, seed=2)
    return [near, far]


@pytest.mark.parametrize("model", KERNELS, ids=lambda m: m["kernel"])
def test_forces_std_is_the_exact_gp_posterior_when_every_environment_is_a_sparse_point(registry, si_small, model):
    """Energy-only fit with all environments sparse: the projected process is the full GP, so the
    force variance must equal the dense posterior (prior and posterior terms both tested)."""
    sigma = 0.01
    potential = fitted(registry, si_small, ("Si",), model, n_sparse=si_small.n_atoms, sigma_energy=sigma, sigma_force=None, force_weight=0.0)
    unfitted = gap_potential(registry, ("Si",), **model)
    unfitted.model.feature_mean.copy_(potential.model.feature_mean)
    unfitted.model.feature_scale.copy_(potential.model.feature_scale)
    for probe in probes(si_small):
        batch = build_batch([probe], potential.descriptor.cutoff)
        exact = exact_gp_force_variance(potential, si_small, sigma, probe)
        std = potential.forces_std(batch).numpy()
        prior = unfitted.forces_std(batch).numpy()
        tolerance = 1e-6 * prior.max() ** 2
        assert np.all(exact <= prior**2 + tolerance) and (prior**2 - exact).sum() > 0.005 * (prior**2).sum()  # the data count
        np.testing.assert_allclose(std**2, exact, rtol=1e-4, atol=tolerance)


@pytest.mark.parametrize("model", WITH_LINEAR, ids=lambda m: m["kernel"])
def test_forces_std_is_the_dense_projected_process_variance_of_a_fit_with_forces(registry, model):
    """Two elements, few sparse points, energies and forces fitted: the force variance equals
    prior - q K_MM^-1 q^T + q (K_MM + jitter + A^T A)^-1 q^T built densely, with the design A
    and the probe's q from autograd through the descriptor (no stored Jacobians)."""
    train = morse_cells(4, seed=6)
    sigma_energy, sigma_force, jitter = 0.003, 0.07, 1e-6
    potential = fitted(registry, train, model=model, n_sparse=6, sigma_energy=sigma_energy, sigma_force=sigma_force, jitter=jitter)
    gp = potential.model
    energy_rows, force_rows = [], []
    for atoms in train.structures:
        with torch.no_grad():
            batch = build_batch([atoms], potential.descriptor.cutoff)
            energy_rows.append(gp._sparse_kernel(*gp._transform(potential.descriptor.featurize(batch), batch.numbers)).sum(0).numpy())
        force_rows.append(sparse_force_covariances(potential, atoms))
    atoms = np.array([len(a) for a in train.structures], dtype=float)
    design = np.concatenate([np.stack(energy_rows) / (sigma_energy * np.sqrt(atoms))[:, None], np.concatenate(force_rows) / sigma_force])
    with torch.no_grad():
        kmm = gp._kernel(gp.sparse_points, gp.sparse_species, gp.sparse_points, gp.sparse_species).numpy()
    kmm = kmm + jitter * gp.delta**2 * np.eye(gp.n_sparse)
    assert gp.n_sparse == 12 and design.shape[0] == len(train) + 3 * int(atoms.sum())
    for probe in probes(train):
        q = sparse_force_covariances(potential, probe)  # (3n, M)
        prior = np.diag(dense_prior_force_covariance(potential, probe))
        dense = (
            prior
            - np.einsum("am,am->a", q, np.linalg.solve(kmm, q.T).T)
            + np.einsum("am,am->a", q, np.linalg.solve(kmm + design.T @ design, q.T).T)
        )
        std = potential.forces_std(build_batch([probe], potential.descriptor.cutoff)).numpy().reshape(-1)
        np.testing.assert_allclose(std**2, dense, rtol=1e-6, atol=1e-9 * dense.max())


def test_the_force_prior_variance_does_not_depend_on_the_block_size(registry, si_small, monkeypatch):
    from pesmith.plugins.models import gap_derivatives

    potential = fitted(registry, si_small, ("Si",), {"kernel": "dot_product", "zeta": 3}, n_sparse=10, sigma_energy=0.01, sigma_force=0.1)
    batch = build_batch(si_small.structures[:2], potential.descriptor.cutoff)
    whole = potential.forces_std(batch)
    monkeypatch.setattr(gap_derivatives, "VARIANCE_BLOCK_BYTES", 1)  # one atom per block
    torch.testing.assert_close(potential.forces_std(batch), whole, rtol=1e-12, atol=1e-14)
    assert whole.shape == (batch.n_atoms, 3)


def test_forces_std_is_small_near_the_data_and_grows_far_from_it(registry, lisi_train):
    potential = fitted(registry, lisi_train, model={"kernel": "squared_exponential", "theta": 5.0},
                       n_sparse=50, sigma_energy=0.002, sigma_force=0.05)
    near, far = probes(lisi_train)
    std = [float(potential.forces_std(build_batch([a], potential.descriptor.cutoff)).mean()) for a in (near, far)]
    assert std[1] > 2 * std[0], std  # eV/Å; measured 0.041 near, 0.136 far


def test_the_calculator_gives_forces_std_when_asked_and_only_from_models_that_have_it(registry, si_small):
    potential = fitted(registry, si_small, ("Si",), {"kernel": "dot_product", "zeta": 2}, n_sparse=10, sigma_energy=0.01, sigma_force=0.1)
    atoms = si_small.structures[1].copy()
    expected = potential.forces_std(build_batch([atoms], potential.descriptor.cutoff)).numpy()
    default = PesmithCalculator(potential)
    atoms.calc = default
    atoms.get_forces()
    assert "forces_std" not in default.results
    np.testing.assert_array_equal(default.get_property("forces_std", atoms), expected)
    always = PesmithCalculator(potential, forces_std=True)
    atoms.calc = always
    atoms.get_potential_energy()
    np.testing.assert_array_equal(always.results[FORCES_STD], expected)

    descriptor = chebyshev(registry, ("Si",))
    linear = Potential(descriptor, registry.get("model", "linear")(species=descriptor.species, n_features=descriptor.n_features))
    linear.fit(si_small, None, linear.model.settings_schema(progress=False))
    assert not linear.model.has_forces_std and potential.model.has_forces_std
    with pytest.raises(PropertyNotImplementedError):
        PesmithCalculator(linear, forces_std=True).get_property("forces_std", atoms)
