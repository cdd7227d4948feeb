"""soap_quip: QUIP's SOAP descriptor (features and gradients equal to quippy's), exact forces
through a GAP on it, clear errors for bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces

from pesmith.calculator import PesmithCalculator
from pesmith.errors import ConfigError
from pesmith.plugins.descriptors.soap_quip import SOAPQuip
from pesmith.potential import Potential
from pesmith.structures import build_batch
from pesmith.testing import amorphous_lisi, check_descriptor

from test_gap import morse_cells

quippy_descriptors = pytest.importorskip("quippy.descriptors", reason='quippy-ase: pip install "pesmith[dev]"')


def rattled_silicon(seed: int = 1) -> "ase.Atoms":  # noqa: F821
    atoms = bulk("Si", "diamond", 5.43, cubic=True).repeat(2)  # 64 atoms
    atoms.rattle(0.1, seed=seed)
    return atoms


def lisi_cell(seed: int = 3) -> "ase.Atoms":  # noqa: F821
    atoms = amorphous_lisi(64, seed=seed, tilt=0.1)  # Li48Si16, triclinic
    assert len(atoms) >= 60 and set(atoms.get_chemical_symbols()) == {"Li", "Si"}
    return atoms


def atom_derivatives(n_atoms: int, rows: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(n_atoms, n_atoms, F, 3)`` d feature of atom ``row`` / d position of atom ``column``,
    summed over periodic images: the sum of ``values (n, F, 3)`` at each (row, column)."""
    out = np.zeros((n_atoms, n_atoms, values.shape[1], 3))
    np.add.at(out, (rows, columns), values)
    return out


def ours_and_quippy(descriptor: SOAPQuip, atoms, center: str | None = None):
    """Our features and d features / d positions, and quippy's (without its trailing covariance_sigma0
    element), for the atoms of element ``center`` (all if None)."""
    batch = build_batch([atoms], descriptor.cutoff)
    features, jacobian = descriptor.features_and_jacobian(batch.numbers, batch.edge_index, batch.edge_vectors())
    centers, neighbors = batch.edge_index.numpy()
    n = len(atoms)
    ours = atom_derivatives(n, centers, neighbors, jacobian.numpy()) - atom_derivatives(n, centers, centers, jacobian.numpy())
    selected = np.arange(n) if center is None else np.flatnonzero(atoms.symbols == center)
    result = quippy_descriptors.Descriptor(descriptor.quip_string(center)).calc(atoms, grad=True)
    assert np.all(result["data"][:, -1] == 0.0)  # covariance_sigma0, QUIP's extra element
    assert np.array_equal(result["ci"] - 1, selected)  # one descriptor per selected atom, in atom order
    index = result["grad_index_0based"]  # (n_grad, 2): central atom, atom moved
    theirs = atom_derivatives(n, index[:, 0], index[:, 1], result["grad_data"][:, :, :-1].transpose(0, 2, 1))
    return (features.numpy()[selected], ours[selected]), (result["data"][:, :-1], theirs[selected])


@pytest.mark.parametrize(
    "settings",
    [
        {"cutoff": 5.0, "n_max": 8, "l_max": 6, "atom_sigma": 0.5},  # bench_gap's SOAP, QUIP's default width 0.5
        {"cutoff": 4.5, "cutoff_transition_width": 1.0, "n_max": 5, "l_max": 4, "atom_sigma": 0.4, "center_weight": 0.5},
    ],
)
def test_silicon_features_and_gradients_equal_quippy(settings):
    descriptor = SOAPQuip(["Si"], **settings)
    (features, derivatives), (reference, reference_derivatives) = ours_and_quippy(descriptor, rattled_silicon())
    assert features.shape == reference.shape == (64, descriptor.n_features)
    np.testing.assert_allclose(features, reference, rtol=0, atol=1e-10)
    assert np.abs(reference_derivatives).max() > 0.01  # 1/Å: the comparison is not of zeros
    np.testing.assert_allclose(derivatives, reference_derivatives, rtol=0, atol=1e-10)


@pytest.mark.parametrize("center", [None, "Li", "Si"])
def test_lithium_silicon_features_and_gradients_equal_quippy_for_each_central_element(center):
    descriptor = SOAPQuip(["Si", "Li"], cutoff=5.0, cutoff_transition_width=0.8, n_max=6, l_max=4, atom_sigma=0.5,
                          center_weight=0.7)
    (features, derivatives), (reference, reference_derivatives) = ours_and_quippy(descriptor, lisi_cell(), center)
    assert features.shape == reference.shape and features.shape[1] == descriptor.n_features
    np.testing.assert_allclose(features, reference, rtol=0, atol=1e-10)
    assert np.abs(reference_derivatives).max() > 0.01
    np.testing.assert_allclose(derivatives, reference_derivatives, rtol=0, atol=1e-10)


def test_unnormalised_features_equal_quippy():
    descriptor = SOAPQuip(["Li", "Si"], cutoff=4.0, n_max=3, l_max=3, atom_sigma=0.6, normalize=False)
    (features, _), (reference, _) = ours_and_quippy(descriptor, lisi_cell(seed=5))
    assert not np.allclose(np.linalg.norm(features, axis=1), 1.0)
    np.testing.assert_allclose(features, reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())


def test_quip_string_and_feature_names_follow_quip_order():
    descriptor = SOAPQuip(["Si", "Li"], cutoff=5.0, n_max=2, l_max=1)
    assert descriptor.quip_string("Si") == (
        "soap cutoff=5.0 cutoff_transition_width=0.5 n_max=2 l_max=1 atom_sigma=0.5 central_weight=1.0"
        " normalise=T n_species=2 species_Z={3 14} Z=14"
    )
    assert "species_Z={{3 14}} Z=14" in descriptor.quip_string("Si", in_gap_fit=True)
    names = descriptor.describe()
    assert len(names) == descriptor.n_features == 2 * (4 * 5 // 2)
    assert names[:3] == ["SOAPQuip[Li-Li](l=0,n=0,n'=0)", "SOAPQuip[Li-Li](l=1,n=0,n'=0)", "SOAPQuip[Li-Li](l=0,n=1,n'=0)"]
    assert names[-1] == "SOAPQuip[Si-Si](l=1,n=1,n'=1)"


@pytest.mark.parametrize("species", [("Li", "Si"), ("Si",)])
def test_soap_quip_descriptor_contract(species):
    check_descriptor(SOAPQuip(list(species), cutoff=4.5, cutoff_transition_width=1.0, n_max=3, l_max=3, atom_sigma=0.6))


def test_gap_on_soap_quip_forces_equal_finite_differences(registry):
    data = morse_cells(8, seed=4)
    descriptor = registry.get("descriptor", "soap_quip")(species=["Li", "Si"], cutoff=4.5, n_max=4, l_max=3)
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features,
                                         kernel="dot_product", zeta=4)
    potential = Potential(descriptor, model)
    potential.fit(data, None, model.settings_schema(progress=False, n_sparse=20, sigma_energy=0.01, sigma_force=0.1))
    atoms = data.structures[0].copy()
    atoms.rattle(0.05, seed=3)
    atoms.calc = PesmithCalculator(potential)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 0.01  # eV/Å
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-4), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"n_max": 0}, "descriptor.n_max"),
        ({"l_max": 13}, "descriptor.l_max"),
        ({"atom_sigma": -0.5}, "descriptor.atom_sigma"),
        ({"cutoff_transition_width": 0.0}, "descriptor.cutoff_transition_width"),
        ({"cutoff_transition_width": 6.0}, "descriptor.cutoff_transition_width"),
        ({"center_weight": -1.0}, "descriptor.center_weight"),
        ({"cutoff": 0.5}, "descriptor.cutoff"),
    ],
)
def test_bad_settings_raise_one_line_config_error_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as error:
        SOAPQuip(["Li", "Si"], **{"cutoff": 5.0, **kwargs})
    message = str(error.value)
    assert key in message and "\n" not in message
    assert str(next(iter(kwargs.values()))) in message


def test_registered_and_rebuilt_from_its_config(registry):
    descriptor = registry.get("descriptor", "soap_quip")(species=["Si"], cutoff=4.0, n_max=3, l_max=2)
    rebuilt = type(descriptor)(**descriptor.get_config())
    atoms = rattled_silicon(seed=2)
    batch = build_batch([atoms], 4.0)
    assert torch.equal(descriptor.featurize(batch), rebuilt.featurize(batch))
