"""The ``gap`` model's virial (stress) observations and per-config_type sigmas: virial rows equal
the strain derivative of the predicted energy, fitting virials lowers the held-out stress error
on mlearn Si, and a config_type with a small sigma is fitted more closely."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pesmith.data import Dataset, read_dataset
from pesmith.errors import DataError
from pesmith.features import featurize_dataset
from pesmith.loss import predict_labels
from pesmith.plugins.models.gap_derivatives import force_and_virial_rows
from pesmith.plugins.references.morse import Morse
from pesmith.potential import ENERGY, STRESS, Potential
from pesmith.registry import Registry
from pesmith.testing import amorphous_lisi

from test_gap import KERNELS, LISI, gap_potential

EV_PER_A3_IN_GPA = 160.21766208


def morse_cells_with_stress(n_structures: int, seed: int) -> Dataset:
    """Random triclinic Li-Si cells of 10-19 atoms with Morse energies, forces and stress, their
    volumes spread by +-10 % so that the stress varies."""
    reference, rng = Morse(), np.random.default_rng(seed)
    structures, energies, forces, stresses = [], [], [], []
    for k in range(n_structures):
        atoms = amorphous_lisi(int(rng.choice([10, 19])), volume_per_atom=rng.uniform(15.5, 19), seed=seed * 1000 + k, tilt=0.1)
        energy, force, stress = reference.label(atoms)
        structures.append(atoms)
        energies.append(energy)
        forces.append(force)
        stresses.append(stress)
    return Dataset(structures, np.array(energies), forces, stresses, source=f"morse cells with stress (seed {seed})")


@pytest.fixture(scope="module")
def si_data() -> Dataset:
    return read_dataset(__import__("conftest").DATA / "mlearn" / "Si_train.xyz")


@pytest.fixture(scope="module")
def si_split(si_data) -> tuple[Dataset, Dataset]:
    order = np.random.default_rng(0).permutation(len(si_data))
    return si_data.subset(np.sort(order[:40])), si_data.subset(np.sort(order[40:70]))


def si_potential(registry: Registry, train: Dataset, **settings) -> tuple[Potential, dict]:
    descriptor = registry.get("descriptor", "chebyshev")(species=["Si"], radial_cutoff=5.0, angular_cutoff=3.5, radial_order=8, angular_order=2)
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="squared_exponential", theta=1.0)
    potential = Potential(descriptor, model)
    defaults = {"n_sparse": 100, "sigma_energy": 0.002, "sigma_force": 0.1, "progress": False}
    summary = potential.fit(train, None, model.settings_schema(**(defaults | settings)))
    return potential, summary.info


def strain_derivative(potential: Potential, atoms, step: float = 1e-5) -> np.ndarray:
    """(6,) dE/d(strain), eV, in ASE Voigt order, by central differences of the predicted energy
    under symmetric homogeneous strains of the cell and positions."""
    pairs = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
    derivative = np.zeros(6)
    for k, (a, b) in enumerate(pairs):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * step / (1 if a == b else 2)
            strain[b, a] += 0 if a == b else sign * step / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell @ strain, scale_atoms=True)
            energies.append(float(potential.predict([strained])[ENERGY][0]))
        derivative[k] = (energies[0] - energies[1]) / (2 * step)
    return derivative


@pytest.mark.parametrize("model", KERNELS, ids=lambda m: m["kernel"])
def test_virial_rows_are_the_strain_derivative_of_the_predicted_energy(registry, model):
    train = morse_cells_with_stress(8, seed=11)
    potential = gap_potential(registry, LISI, **model)
    # without the ZBL core (active on the rattled probe): the rows are the GP's alone
    settings = potential.model.settings_schema(n_sparse=15, sigma_energy=0.005, sigma_force=0.1, sigma_virial=0.01, progress=False, core_repulsion=False)
    info = potential.fit(train, None, settings).info
    assert info["n_observations"]["virial"] == 6 * len(train)
    probe = train.structures[0].copy()
    probe.rattle(0.05, seed=4)
    data = featurize_dataset(potential.descriptor, Dataset([probe], np.zeros(1), [np.zeros((len(probe), 3))], [None]), potential.reference)
    owner = data.structure_index[data.edge_index[0]]
    _, rows = force_and_virial_rows(potential.model, data.features, data.numbers, data.edge_index, data.load_jacobian(), 37, (data.edge_vectors, owner, 1))
    virial = (rows[0] @ potential.model.alpha).numpy()  # (6,) eV
    finite = strain_derivative(potential, probe)
    assert np.abs(finite).max() > 0.1  # eV: a real test, not zeros against zeros
    np.testing.assert_allclose(virial, finite, atol=1e-6)
    np.testing.assert_allclose(virial, potential.predict([probe])[STRESS][0].numpy() * probe.get_volume(), atol=1e-9)


def test_fitting_virials_lowers_the_held_out_stress_error_on_mlearn_si(registry, si_split):
    train, test = si_split
    truth = np.stack(test.stresses)  # (n, 6) eV/Å^3
    errors, counts = [], []
    for sigma_virial in (None, 0.05):
        potential, info = si_potential(registry, train, sigma_virial=sigma_virial)
        predicted = potential.predict(test.structures)[STRESS].numpy()
        errors.append(EV_PER_A3_IN_GPA * np.sqrt(np.mean((predicted - truth) ** 2)))
        counts.append(info["n_observations"]["virial"])
    assert counts == [0, 6 * len(train)]
    assert errors[1] < 0.5 * errors[0], errors  # GPa; measured 1.11 with virials, 4.19 without


def test_a_config_type_with_a_small_sigma_is_fitted_much_more_closely(registry, si_split):
    train, _ = si_split
    vacancy = np.array([t == "Vacancy" for t in train.config_types])
    atoms = np.array([len(a) for a in train.structures])
    assert 0 < vacancy.sum() < len(train)
    errors = []
    for config_type_sigma in ({}, {"Vacancy": {"energy": 1e-5}}):
        potential, info = si_potential(registry, train, config_type_sigma=config_type_sigma)
        predicted = potential.predict(train.structures)[ENERGY].numpy()
        errors.append(np.sqrt(np.mean(((predicted - train.energies) / atoms)[vacancy] ** 2)))
    assert info["config_type_sigma"] == {"Vacancy": {"energy": 1e-5}}
    assert errors[1] < 0.01 * errors[0], errors  # eV/atom; measured 2.9e-3 by default, 5.5e-7 with 1e-5


def test_a_config_type_sigma_can_fit_forces_of_that_type_only(registry, si_split):
    train, _ = si_split
    _, info = si_potential(registry, train, sigma_force=None, config_type_sigma={"Surface": {"force": 0.05}})
    surface_atoms = sum(len(a) for a, t in zip(train.structures, train.config_types) if t == "Surface")
    assert surface_atoms > 0 and info["n_observations"]["force"] == 3 * surface_atoms


def test_a_config_type_absent_from_the_data_names_the_key_and_the_types_present(registry, si_split):
    train, _ = si_split
    with pytest.raises(DataError, match=r"training.config_type_sigma names config_type Bulk, .*: AIMD-NVT, Elastic, Surface, Vacancy; fix"):
        si_potential(registry, train, config_type_sigma={"Bulk": {"energy": 0.001}})


def test_config_types_are_read_from_extxyz_info_and_ase_db_keys(tmp_path, si_data):
    import ase.db
    from ase.calculators.singlepoint import SinglePointCalculator

    path = tmp_path / "si.db"
    with ase.db.connect(path) as db:
        for k, config_type in enumerate(["Vacancy", None, "Elastic"]):
            atoms = si_data.structures[k].copy()
            atoms.info.pop("config_type", None)
            atoms.calc = SinglePointCalculator(atoms, energy=si_data.energies[k], forces=si_data.forces[k])
            db.write(atoms, **({"config_type": config_type} if config_type else {}))
    assert read_dataset(path).config_types == ["Vacancy", None, "Elastic"]
    assert si_data.config_types[0] == "Vacancy" and set(si_data.config_types) == {"AIMD-NVT", "Elastic", "Surface", "Vacancy"}


def test_virial_sigmas_on_data_without_stress_fit_no_virials_and_say_so(registry, caplog):
    train = morse_cells_with_stress(6, seed=12)
    train.stresses = [None] * len(train)
    potential = gap_potential(registry, LISI)
    settings = potential.model.settings_schema(n_sparse=10, sigma_virial=0.01, progress=False)
    info = potential.fit(train, None, settings).info
    assert info["n_observations"]["virial"] == 0 and "no virials fitted" in caplog.text


def test_the_fit_with_virials_and_config_type_sigmas_is_the_dense_projected_process_solution(registry):
    """alpha equals (K_MM + jitter + A^T A)^-1 A^T b built densely, A's force and virial rows from
    autograd (chain rule through the stored Jacobians, as predict_labels does), each row divided
    by its structure's sigma: energy sigma_E sqrt(N), force sigma_F, virial sigma_V sqrt(N),
    overridden per config_type; a structure without stress has no virial rows."""
    train = morse_cells_with_stress(6, seed=13)
    train.stresses[1] = None
    for k, atoms in enumerate(train.structures):
        atoms.info["config_type"] = "special" if k % 2 else "plain"
    settings = {"n_sparse": 7, "sigma_energy": 0.004, "sigma_force": 0.08, "sigma_virial": 0.02, "jitter": 1e-6,
                "config_type_sigma": {"special": {"energy": 0.0005, "virial": 0.3}}}
    potential = gap_potential(registry, LISI, kernel="dot_product", zeta=3)
    info = potential.fit(train, None, potential.model.settings_schema(progress=False, **settings)).info
    model = potential.model
    data = featurize_dataset(potential.descriptor, train, potential.reference)
    special = np.array([k % 2 == 1 for k in range(len(train))])
    root_n = np.sqrt(data.atoms_per_structure.numpy().astype(float))
    sigma_e = np.where(special, 0.0005, 0.004) * root_n
    sigma_v = np.where(special, 0.3, 0.02) * root_n
    labelled = data.has_stress.numpy()
    assert list(labelled) == [True, False, True, True, True, True]
    energy_columns, force_columns, virial_columns = [], [], []
    for m in range(model.n_sparse):
        def column(features, numbers, m=m):
            return model._sparse_kernel(*model._transform(features, numbers))[:, m]
        labels = predict_labels(column, data, forces=True, stress=True, create_graph=False)
        energy_columns.append(labels["energy"].detach().numpy())
        force_columns.append(labels["forces"].numpy().reshape(-1))
        virial_columns.append((labels["stress"].numpy() * data.volumes.numpy()[:, None])[labelled].reshape(-1))
    virial_sigma = np.repeat(sigma_v[labelled], 6)
    design = np.concatenate([
        np.stack(energy_columns, 1) / sigma_e[:, None],
        np.stack(force_columns, 1) / 0.08,
        np.stack(virial_columns, 1) / virial_sigma[:, None],
    ])
    stresses = data.stresses.numpy()[labelled] * data.volumes.numpy()[labelled][:, None]
    target = np.concatenate([data.energies.numpy() / sigma_e, data.forces.numpy().reshape(-1) / 0.08, stresses.reshape(-1) / virial_sigma])
    with torch.no_grad():
        kmm = model._kernel(model.sparse_points, model.sparse_species, model.sparse_points, model.sparse_species).numpy()
    system = kmm + settings["jitter"] * model.delta**2 * np.eye(model.n_sparse) + design.T @ design
    np.testing.assert_allclose(model.alpha.numpy(), np.linalg.solve(system, design.T @ target), rtol=1e-7, atol=1e-9)
    assert info["n_observations"] == {"energy": 6, "force": 3 * data.n_atoms, "virial": 30}
