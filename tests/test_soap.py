"""SOAP: equal to DScribe's SOAP, exact forces and stress, clear errors for bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from pesmith.errors import ConfigError
from pesmith.plugins.descriptors.harmonics import solid_harmonics
from pesmith.plugins.descriptors.soap import SOAP
from pesmith.plugins.models.nn import BehlerParrinello
from pesmith.potential import Potential
from pesmith.structures import build_batch
from pesmith.testing import (
    amorphous_lisi,
    check_descriptor,
    check_gradients,
    check_invariance,
    potential_energy,
    sample_structure,
)


def test_solid_harmonics_are_scipy_real_spherical_harmonics_times_r_to_the_l():
    vectors = np.random.default_rng(0).normal(size=(40, 3)) * 2.0
    ours = solid_harmonics(torch.tensor(vectors), 12).numpy()
    r = np.linalg.norm(vectors, axis=1)
    theta, phi = np.arccos(vectors[:, 2] / r), np.arctan2(vectors[:, 1], vectors[:, 0])
    for l in range(13):
        for m in range(-l, l + 1):
            # scipy's complex Y_l^|m| carries the Condon-Shortley phase (-1)^m, which ours omits
            complex_y = scipy.special.sph_harm_y(l, abs(m), theta, phi) * (-1) ** m
            real_y = {True: complex_y.real, False: complex_y.imag}[m >= 0] * (np.sqrt(2) if m else 1)
            np.testing.assert_allclose(ours[:, l * l + l + m] / r**l, real_y, rtol=0, atol=1e-10)


# DScribe conventions mapped onto ours: our smooth cutoff weight is DScribe's "poly" weighting
# with r0 = cutoff, c = 1, m = cutoff_power; our center_weight is its w0. With that weighting
# DScribe includes no atom beyond the cutoff, as we do. Its GTO basis, Gaussian
# exp(-r^2 / (2 sigma^2)), l-prefactor pi sqrt(8 / (2l + 1)) and feature order are ours.
@pytest.mark.parametrize(
    "n_atoms,cutoff,n_max,l_max,sigma,power,center",
    [
        (8, 6.0, 6, 9, 0.5, 1.0, 1.0),  # cutoff larger than half the cell
        (16, 5.0, 4, 12, 0.5, 1.0, 1.0),  # the largest l_max we allow
        (64, 5.0, 6, 6, 0.4, 2.0, 0.5),
        (128, 4.0, 5, 3, 0.7, 1.0, 1.0),
    ],
)
def test_soap_equals_dscribe_on_periodic_lisi(n_atoms, cutoff, n_max, l_max, sigma, power, center):
    dscribe = pytest.importorskip("dscribe.descriptors")
    atoms = amorphous_lisi(n_atoms, seed=n_atoms, tilt=0.1)
    ours = SOAP(["Li", "Si"], cutoff=cutoff, n_max=n_max, l_max=l_max, atom_sigma=sigma,
                cutoff_power=power, center_weight=center)
    features = ours.featurize(build_batch([atoms], cutoff)).detach().numpy()
    weighting = {"function": "poly", "r0": cutoff, "c": 1.0, "m": power, "w0": center}
    reference = dscribe.SOAP(species=["Li", "Si"], r_cut=cutoff, n_max=n_max, l_max=l_max, sigma=sigma,
                             rbf="gto", periodic=True, weighting=weighting).create(atoms)
    assert features.shape == reference.shape == (n_atoms, ours.n_features)
    np.testing.assert_allclose(features, reference, rtol=1e-6, atol=1e-9 * np.abs(reference).max())


def test_normalized_soap_has_unit_length_and_equals_normalized_dscribe():
    dscribe = pytest.importorskip("dscribe.descriptors")
    atoms = amorphous_lisi(32, seed=1, tilt=0.1)
    ours = SOAP(["Li", "Si"], cutoff=4.5, n_max=4, l_max=4, atom_sigma=0.5, normalize=True)
    features = ours.featurize(build_batch([atoms], 4.5)).detach().numpy()
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-12)
    weighting = {"function": "poly", "r0": 4.5, "c": 1.0, "m": 1.0}
    reference = dscribe.SOAP(species=["Li", "Si"], r_cut=4.5, n_max=4, l_max=4, sigma=0.5,
                             periodic=True, weighting=weighting).create(atoms)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(features, reference, rtol=1e-6, atol=1e-9)


def test_soap_names_every_feature_in_dscribe_order():
    soap = SOAP(["Si", "Li"], cutoff=4.0, n_max=2, l_max=1)
    names = soap.describe()
    assert len(names) == soap.n_features == (3 + 3 + 4) * 2
    assert names[0] == "SOAP[Li-Li](l=0,n=0,n'=0)" and names[3] == "SOAP[Li-Li](l=1,n=0,n'=0)"
    assert names[6] == "SOAP[Li-Si](l=0,n=0,n'=0)" and names[-1] == "SOAP[Si-Si](l=1,n=1,n'=1)"


@pytest.mark.parametrize("species", [("Li", "Si"), ("Si",)])
def test_soap_descriptor_contract(species):
    check_descriptor(SOAP(list(species), cutoff=4.5, n_max=3, l_max=3, atom_sigma=0.6))


def test_normalized_soap_descriptor_contract():
    check_descriptor(SOAP(["Li", "Si"], cutoff=4.5, n_max=3, l_max=2, normalize=True, cutoff_power=2.0))


def soap_potential(seed: int = 0) -> Potential:
    """An untrained SOAP network whose inputs are standardised on sample features (so the tanh
    layers work in their nonlinear range, as after training)."""
    descriptor = SOAP(["Li", "Si"], cutoff=5.5, n_max=3, l_max=3, atom_sigma=0.5)
    torch.manual_seed(seed)
    model = BehlerParrinello(descriptor.species, descriptor.n_features, hidden=[8, 8])
    sample = amorphous_lisi(38, seed=seed)
    features = descriptor.featurize(build_batch([sample], descriptor.cutoff)).detach()
    with torch.no_grad():
        model.feature_mean[:] = features.mean(0)
        model.feature_scale[:] = features.std(0) + 1e-3
    return Potential(descriptor, model, {"Li": -1.9, "Si": -5.4})


def test_soap_nn_forces_and_stress_match_finite_differences_on_small_triclinic_cell():
    potential = soap_potential()
    atoms = sample_structure(potential.species, potential.descriptor.cutoff, seed=5, n_atoms=10)
    assert max(atoms.cell.lengths()) < 2 * potential.descriptor.cutoff
    check_gradients(potential.descriptor, atoms, step=1e-4, atol=1e-6, energy_fn=potential_energy(potential))


def test_soap_nn_energy_invariant_to_rotation_translation_permutation():
    potential = soap_potential(seed=1)
    atoms = sample_structure(potential.species, potential.descriptor.cutoff, seed=7, n_atoms=9)
    check_invariance(potential.descriptor, atoms, atol=1e-10, energy_fn=potential_energy(potential))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"cutoff": -2.0}, "descriptor.cutoff must be a positive number"),
        ({"cutoff": 1.2}, "descriptor.cutoff = 1.2 Å is shorter than the shortest"),
        ({"l_max": 13}, "descriptor.l_max must be an integer from 0 to 12"),
        ({"n_max": 0}, "descriptor.n_max"),
        ({"atom_sigma": 0.0}, "descriptor.atom_sigma"),
        ({"cutoff_power": 0.5}, "descriptor.cutoff_power"),
        ({"species": ["Li", "Qq"]}, "species: unknown chemical symbol"),
    ],
)
def test_soap_bad_hyperparameters_name_the_key(kwargs, message):
    options = {"species": ["Li", "Si"], **kwargs}
    with pytest.raises(ConfigError, match=message):
        SOAP(**options)


@pytest.mark.parametrize(
    "descriptor,parts",
    [
        ({"l_max": 13}, ["descriptor.l_max must be an integer from 0 to 12", "got 13"]),
        ({"cutoff": 0.8}, ["descriptor.cutoff = 0.8 Å is shorter than the shortest"]),
        ({"sigma": 0.5}, ["unknown key 'descriptor.sigma'", "atom_sigma"]),
    ],
)
def test_cli_bad_soap_key_exits_2_naming_it(write_config, capsys, monkeypatch, descriptor, parts):
    from pesmith import cli
    from pesmith.registry import Registry

    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    config = write_config(descriptor={"kind": "soap", "cutoff": 4.0, "n_max": 2, "l_max": 2, **descriptor})
    code = cli.main(["train", str(config)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    for part in parts:
        assert part in lines[0]
    assert not (config.parent / "out").exists()  # nothing written


def test_pesmith_train_with_soap_writes_a_model_that_reproduces_its_report(small_si_xyz, write_config, monkeypatch):
    """Training goes through SOAP's own feature Jacobian; predicting with the saved model file
    (forces by autograd through the descriptor) gives the report's training metrics."""
    import json

    from pesmith import cli
    from pesmith.data import read_dataset
    from pesmith.model_file import load_potential
    from pesmith.registry import Registry
    from pesmith.validation import predict_dataset

    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    config = write_config(descriptor={"kind": "soap", "cutoff": 4.5, "n_max": 3, "l_max": 3},
                          training={"epochs": 5, "batch_size": 4, "progress": False, "seed": 0, "force_weight": 1.0})
    assert cli.main(["train", str(config)]) == 0
    report = json.loads((config.parent / "out" / "model_report.json").read_text())
    potential, _ = load_potential(config.parent / "out" / "model.pt", Registry(entry_points=False))
    train_set = read_dataset(small_si_xyz).subset(report["split"]["train_indices"])
    metrics = predict_dataset(potential, train_set).metrics()
    for key in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A"):
        assert metrics[key] == pytest.approx(report["metrics"]["train"][key], rel=1e-9)
    assert report["metrics"]["train"]["force_rmse_eV_per_A"] > 0
