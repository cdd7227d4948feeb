"""angle_3b, GAP's 3-body term: the descriptor contract, the features against a direct loop over
triplets, closed-form derivatives against autograd and finite differences, the kernel its
features realise, a 2b + 3b GAP on Si, and clear errors for bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import chemical_symbols

from pesmith.data import read_dataset
from pesmith.errors import ConfigError
from pesmith.potential import ENERGY, Potential
from pesmith.structures import build_batch
from pesmith.testing import check_descriptor, check_gradients, distorted_lisi, potential_energy

from pesmith.plugins.descriptors.angle_3b import Angle3b
from pesmith.plugins.descriptors.cutoff import transition_cutoff


def direct_features(descriptor: Angle3b, numbers: torch.Tensor, edge_index: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """The features by a plain loop over each center's pairs of neighbors j < k, from the
    formula (gap_fit's invariants and switch, a product of normalised Gaussians), in
    differentiable torch: the slow, independent evaluation the descriptor must equal."""
    species = list(descriptor.species)
    grids = [descriptor.centers0, descriptor.centers1, descriptor.centers2]
    rc, d = descriptor.cutoff, descriptor.transition

    def fc(r: torch.Tensor) -> torch.Tensor:
        if r >= rc:
            return r * 0.0
        if r <= rc - d:
            return r * 0.0 + 1.0
        return 0.5 * (torch.cos(math.pi * (r - rc + d) / d) + 1.0)

    def phi(q: torch.Tensor, dim: int) -> torch.Tensor:
        theta = descriptor.theta[dim]
        w = theta / math.sqrt(2.0)
        return math.sqrt(theta / (w * math.sqrt(math.pi))) * torch.exp(-((q - grids[dim]) ** 2) / (2 * w**2))

    pairs = [(a, b) for b in range(len(species)) for a in range(b + 1)]
    rows = [[vectors.new_zeros(descriptor.block_size) for _ in pairs] for _ in range(numbers.shape[0])]
    for i in range(numbers.shape[0]):
        mine = [e for e in range(edge_index.shape[1]) if edge_index[0, e] == i and vectors[e].norm() < rc]
        for x, e in enumerate(mine):
            for f in mine[x + 1 :]:
                u, v = vectors[e], vectors[f]
                a, b, c = u.norm(), v.norm(), (v - u).norm()
                q = (a + b, (a - b) ** 2, c)
                block = torch.outer(torch.outer(phi(q[0], 0), phi(q[1], 1)).reshape(-1), phi(q[2], 2)).reshape(-1)
                sj = species.index(chemical_symbols[int(numbers[edge_index[1, e]])])
                sk = species.index(chemical_symbols[int(numbers[edge_index[1, f]])])
                slot = pairs.index((min(sj, sk), max(sj, sk)))
                rows[i][slot] = rows[i][slot] + fc(a) * fc(b) * block
    return torch.stack([torch.cat(row) for row in rows])


def small_lisi() -> Atoms:
    atoms = distorted_lisi(seed=4)  # 8 atoms, a third Li, triclinic
    return atoms[[0, 1, 2, 3, 5, 6]]


@pytest.fixture
def lisi_descriptor(registry) -> Angle3b:
    return registry.get("descriptor", "angle_3b")(species=["Li", "Si"], cutoff=3.5, theta=[1.0, 1.5, 0.8], cutoff_transition_width=0.7)


def test_angle_3b_passes_the_descriptor_contract(lisi_descriptor):
    """Rotation, translation, permutation and equivalent cells; batch == single; the closed-form
    Jacobian equals autograd through the triplet sum; forces and stress equal finite differences."""
    summary = check_descriptor(lisi_descriptor, verbose=False)
    assert "features_and_jacobian equals autograd" in summary


def test_features_are_the_sum_of_direct_triplet_contributions(lisi_descriptor):
    atoms = small_lisi()
    batch = build_batch([atoms], lisi_descriptor.cutoff)
    vectors = batch.edge_vectors()
    direct = direct_features(lisi_descriptor, batch.numbers, batch.edge_index, vectors)
    ours = lisi_descriptor.featurize(batch)
    assert float(direct.abs().max()) > 0.1 and int((direct.abs().sum(1) > 0).sum()) == len(atoms)
    torch.testing.assert_close(ours, direct, rtol=0, atol=1e-12)
    features, jacobian = lisi_descriptor.features_and_jacobian(batch.numbers, batch.edge_index, vectors)
    torch.testing.assert_close(features, direct, rtol=0, atol=1e-12)
    # closed-form derivatives (Jacobian and custom backward) against plain autograd of the loop
    weights = torch.linspace(-1.0, 1.0, lisi_descriptor.n_features, dtype=torch.float64)
    leaf = vectors.detach().requires_grad_(True)
    (plain,) = torch.autograd.grad((direct_features(lisi_descriptor, batch.numbers, batch.edge_index, leaf) @ weights).sum(), leaf)
    leaf = vectors.detach().requires_grad_(True)
    (backward,) = torch.autograd.grad((lisi_descriptor(batch.numbers, batch.edge_index, leaf) @ weights).sum(), leaf)
    torch.testing.assert_close(backward, plain, rtol=0, atol=1e-11)
    torch.testing.assert_close(torch.einsum("f,efx->ex", weights, jacobian), plain, rtol=0, atol=1e-11)


def test_swapping_the_two_neighbors_leaves_a_triplet_unchanged(lisi_descriptor):
    rng = np.random.default_rng(0)
    first, second = (torch.tensor(rng.normal(size=(50, 3)) * 1.5) for _ in range(2))
    values, d_first, d_second = lisi_descriptor.triplet_terms(first, second, derivatives=True)
    swapped, d_first_swapped, d_second_swapped = lisi_descriptor.triplet_terms(second, first, derivatives=True)
    assert float(values.abs().max()) > 0.1
    torch.testing.assert_close(swapped, values, rtol=0, atol=1e-14)
    torch.testing.assert_close(d_first_swapped, d_second, rtol=0, atol=1e-13)
    torch.testing.assert_close(d_second_swapped, d_first, rtol=0, atol=1e-13)


def test_features_realise_gap_fits_squared_exponential_triplet_kernel():
    """sum_f T_f(t) T_f(t') = w w' exp(-sum_d (q_d - q'_d)^2 / 2 theta_d^2) to within 4.5 % of
    w w' (the grid's ripple, at most (1 + 2 exp(-pi^2 / 2))^3 - 1 = 4.4 %, module docstring;
    measured 4.3 %) for triplets whose invariants are in the grid's range."""
    descriptor = Angle3b(["Si"], cutoff=3.5, theta=[1.0, 0.7, 0.5], r_min=1.5)
    rng = np.random.default_rng(1)
    a, b = rng.uniform(1.5, 3.5, 400), rng.uniform(1.5, 3.5, 400)
    angle = rng.uniform(0.3, math.pi, 400)
    first = np.stack([a, np.zeros(400), np.zeros(400)], 1)
    second = np.stack([b * np.cos(angle), b * np.sin(angle), np.zeros(400)], 1)
    keep = np.linalg.norm(second - first, axis=1) >= 1.5
    first, second = torch.tensor(first[keep]), torch.tensor(second[keep])
    (values,) = descriptor.triplet_terms(first, second)
    r1, r2 = first.norm(dim=1), second.norm(dim=1)
    q = torch.stack([r1 + r2, (r1 - r2) ** 2, (second - first).norm(dim=1)], 1)  # (t, 3)
    weight = transition_cutoff(r1, 3.5, 0.5) * transition_cutoff(r2, 3.5, 0.5)
    exact = torch.exp(-(((q[:, None, :] - q[None, :, :]) / torch.tensor(descriptor.theta)) ** 2).sum(-1) / 2)
    error = (values @ values.T - weight[:, None] * weight[None, :] * exact).abs() / (weight[:, None] * weight[None, :]).clamp_min(1e-3)
    assert float(error.max()) < 0.045, float(error.max())


def test_default_feature_counts_for_si_and_lisi():
    """Documented in the module: 10 x 10 x 11 Gaussians per neighbor pair; Si 1, Li-Si 3 pairs."""
    assert Angle3b(["Si"]).grid_shape == (10, 10, 11)
    assert Angle3b(["Si"]).n_features == 1100 and Angle3b(["Li", "Si"]).n_features == 3300
    assert len(Angle3b(["Li", "Si"]).describe()) == 3300


def test_a_2b_plus_3b_gap_on_si_fits_and_its_forces_and_stress_equal_finite_differences(registry, small_si_xyz):
    data = read_dataset(small_si_xyz)
    pair = registry.get("descriptor", "distance_2b")(species=["Si"], cutoff=4.0, theta=0.5)
    triplet = registry.get("descriptor", "angle_3b")(species=["Si"], cutoff=3.5, theta=1.0)
    gap = registry.get("model", "gap")
    terms = [(d, gap(species=d.species, n_features=d.n_features, kernel="linear", delta=d_eV)) for d, d_eV in ((pair, 10.0), (triplet, 1.0))]
    potential = Potential(terms=terms)
    settings = terms[0][1].settings_schema(sparse_method="basis", sigma_energy=0.002, sigma_force=0.1, progress=False)
    potential.fit(data, None, settings, term_settings=[settings, settings])
    predicted = potential.predict(data.structures)[ENERGY].numpy()
    atoms_per_structure = np.array([len(a) for a in data.structures])
    assert np.abs((predicted - data.energies) / atoms_per_structure).max() < 0.01  # eV/atom on its own 4 structures
    alone = Potential(triplet, terms[1][1])
    assert float(alone.predict(data.structures[:1])[ENERGY].abs().max()) > 1e-3  # the 3b term contributes
    atoms = data.structures[0].copy()
    atoms.rattle(0.03, seed=2)
    differences = check_gradients(pair, atoms, step=1e-4, atol=1e-5, energy_fn=potential_energy(potential))
    assert differences["force"] < 1e-5 and differences["stress"] < 1e-5


@pytest.mark.parametrize(
    "options,key",
    [
        ({"theta": 0.0}, "theta"),
        ({"theta": [1.0, -1.0, 1.0]}, "theta"),
        ({"theta": [1.0, 1.0]}, "theta"),
        ({"theta": "wide"}, "theta"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": -3.0}, "cutoff"),
        ({"cutoff_transition_width": 0.0}, "cutoff_transition_width"),
        ({"r_min": 4.0}, "r_min"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_the_key(options, key):
    with pytest.raises(ConfigError) as error:
        Angle3b(["Si"], **options)
    message = str(error.value)
    assert f"descriptor.{key} " in message and "\n" not in message
