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

from test_gap import KERNELS, chebyshev, fitted, gap_potential, morse_cells


@pytest.fixture(scope="module")
def si_small():
    return morse_cells(4, seed=5, silicon_only=True)


@pytest.fixture(scope="module")
def lisi_train():
    return morse_cells(20, seed=1)


def exact_gp_force_variance(potential: Potential, train, sigma_per_atom: float, probe) -> np.ndarray:
    """(n_atoms, 3) posterior variance (eV^2/Å^2) of the forces of ``probe`` under the full GP on
    the energies of ``train`` (noise ``sigma_per_atom sqrt(N)``), built densely by autograd: the
    prior force covariance is the mixed second derivative of ``sum_ij k(x_i(r), x_j(r'))`` at
    ``r = r'``, which only needs first derivatives of the features, so it is taken on
    ``x + (dx/dr) u`` and ``x + (dx/dr) v`` with respect to ``u`` and ``v``; force-energy
    covariances are first derivatives of ``sum_ij k(x_i(r), x_j^train)``."""
    model, descriptor = potential.model, potential.descriptor
    batch = build_batch([probe], descriptor.cutoff)
    train_batch = build_batch(list(train.structures), descriptor.cutoff)
    with torch.no_grad():
        x_train, i_train = model._transform(descriptor.featurize(train_batch), train_batch.numbers)
    owner = train_batch.structure_index

    def kernel_space(positions: torch.Tensor) -> torch.Tensor:  # (n_atoms, F)
        moved = dataclasses.replace(batch, positions=positions.reshape(-1, 3))
        return model._transform(descriptor.featurize(moved), moved.numbers)[0]

    def energy_covariances(positions: torch.Tensor) -> torch.Tensor:  # (n_train,) cov(E*, E_s)
        per_atom = model._kernel(kernel_space(positions), batch.numbers * 0, x_train, i_train).sum(0)
        return torch.zeros(len(train), dtype=torch.float64).index_add(0, owner, per_atom)

    r = batch.positions.reshape(-1).clone()
    n = r.shape[0]
    with torch.no_grad():
        x = kernel_space(r)
    jacobian = torch.autograd.functional.jacobian(kernel_space, r)  # (n_atoms, F, 3n) dx/dr

    def linearised_covariance(both: torch.Tensor) -> torch.Tensor:
        u, v = both[:n], both[n:]
        return reference_kernel(model, x + jacobian @ u, x + jacobian @ v).sum()

    hessian = torch.autograd.functional.hessian(linearised_covariance, torch.zeros(2 * n, dtype=torch.float64))
    prior = hessian[:n, n:].numpy()  # cov(F_a, F_b) = d^2 K / dr_a dr'_b
    cross = -torch.autograd.functional.jacobian(energy_covariances, r).numpy().T  # (3n, n_train) cov(F, E_s)
    with torch.no_grad():
        atom_kernel = model._kernel(x_train, i_train, x_train, i_train).numpy()
    sums = (owner.numpy()[None, :] == np.arange(len(train))[:, None]).astype(float)
    covariance = sums @ atom_kernel @ sums.T
    noise = np.diag(sigma_per_atom**2 * np.array([len(a) for a in train.structures], dtype=float))
    posterior = prior - cross @ np.linalg.solve(covariance + noise, cross.T)
    return np.diag(posterior).reshape(-1, 3)


def reference_kernel(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, m) kernel of one element, eV^2, written out plainly (the model's expands the squared
    distance and clamps it, which autograd cannot differentiate twice at x = y)."""
    if model.kernel == "squared_exponential":
        distance2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return model.delta**2 * torch.exp(-distance2 / (2 * model.n_features * model.theta**2))
    return model.delta**2 * (x @ y.T) ** model.zeta


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
