"""Element restrictions of the GAP descriptors: ``pairs`` of distance_2b, ``centers`` /
``neighbors`` of angle_3b and soap. Each restricted descriptor's features equal the matching
block of the unrestricted one, other atoms get all-zero rows and Jacobians (so zero energy in
that term), forces equal finite differences, and GAP fits with such terms learn what they should
and put no sparse points on atoms without features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from pesmith.data import Dataset
from pesmith.errors import ConfigError
from pesmith.jacobian_store import feature_jacobian
from pesmith.plugins.references.morse import Morse
from pesmith.potential import ATOM_ENERGIES, ENERGY, Potential
from pesmith.structures import build_batch
from pesmith.testing import (
    check_batching,
    check_descriptor,
    check_gradients,
    check_invariance,
    potential_energy,
    random_positions,
    sample_structure,
)

LIC = ("Li", "C")  # normalize_species sorts by atomic number: (Li, C)


def li_in_carbon(seed: int, n_carbon: int = 10, n_lithium: int = 3, length: float = 6.0) -> Atoms:
    """A random periodic C cell with Li atoms (no two closer than 1.3 Å), Å."""
    rng = np.random.default_rng(seed)
    cell = np.diag([length] * 3) + rng.uniform(-0.05, 0.05, (3, 3)) * length
    n = n_carbon + n_lithium
    return Atoms(["C"] * n_carbon + ["Li"] * n_lithium, positions=random_positions(cell, n, 1.3, rng), cell=cell, pbc=True)


def features(descriptor, atoms: Atoms) -> torch.Tensor:
    batch = build_batch([atoms], descriptor.cutoff)
    return descriptor(batch.numbers, batch.edge_index, batch.edge_vectors()).detach()


def test_restrictions_must_name_elements_of_species(registry):
    with pytest.raises(ConfigError, match="pairs"):
        registry.get("descriptor", "distance_2b")(species=list(LIC), pairs=[["Li", "Si"]])
    with pytest.raises(ConfigError, match="pairs"):
        registry.get("descriptor", "distance_2b")(species=list(LIC), pairs=["Li"])
    with pytest.raises(ConfigError, match="centers"):
        registry.get("descriptor", "angle_3b")(species=list(LIC), centers=["Si"])
    with pytest.raises(ConfigError, match="neighbors"):
        registry.get("descriptor", "soap")(species=list(LIC), neighbors=[])


# --- distance_2b pairs --------------------------------------------------------------------------


@pytest.mark.parametrize("pairs", [[["Li", "Li"]], [["C", "Li"]], [["Li", "C"], ["C", "C"]]])
def test_distance_2b_pairs_equal_the_unrestricted_blocks(registry, pairs):
    make = registry.get("descriptor", "distance_2b")
    full, restricted = make(species=list(LIC), cutoff=4.0), make(species=list(LIC), cutoff=4.0, pairs=pairs)
    allowed = {frozenset(p) for p in pairs}
    atoms = li_in_carbon(0)
    q_full, q = features(full, atoms), features(restricted, atoms)
    k = full.n_grid
    assert q.shape[1] == len(restricted.block_species) * k
    for i, symbol in enumerate(atoms.get_chemical_symbols()):
        for b, neighbor in enumerate(restricted.block_species):
            expected = q_full[i, full.species.index(neighbor) * k : (full.species.index(neighbor) + 1) * k]
            if frozenset((symbol, neighbor)) not in allowed:
                expected = torch.zeros_like(expected)
            assert torch.equal(q[i, b * k : (b + 1) * k], expected), (i, symbol, neighbor)
    assert q.abs().sum() > 0


def test_restricted_distance_2b_passes_the_descriptor_contract(registry, capsys):
    check_descriptor(registry.get("descriptor", "distance_2b")(species=list(LIC), cutoff=4.0, theta=0.6, pairs=[["C", "Li"]]))


# --- angle_3b centers / neighbors ---------------------------------------------------------------


def test_angle_3b_centers_and_neighbors_equal_the_unrestricted_block(registry):
    make = registry.get("descriptor", "angle_3b")
    full = make(species=list(LIC), cutoff=3.0, theta=1.2, r_min=1.2)
    restricted = make(species=list(LIC), cutoff=3.0, theta=1.2, r_min=1.2, centers=["Li"], neighbors=["C"])
    atoms = li_in_carbon(1)
    q_full, q = features(full, atoms), features(restricted, atoms)
    block = full.block_size
    assert restricted.n_features == block  # one neighbor pair: C-C
    cc = 2 * block  # slot of {C, C} in the unrestricted order (Li-Li, Li-C, C-C)
    lithium = np.array(atoms.get_chemical_symbols()) == "Li"
    assert torch.equal(q[lithium], q_full[lithium, cc : cc + block])
    assert q[lithium].abs().sum() > 0 and torch.count_nonzero(q[~lithium]) == 0
    _, jacobian, batch = feature_jacobian(restricted, [atoms])
    carbon_centered = ~torch.as_tensor(lithium)[batch.edge_index[0]]
    assert torch.count_nonzero(jacobian[carbon_centered]) == 0


def test_restricted_angle_3b_jacobian_equals_autograd_and_forces_finite_differences(registry):
    """check_descriptor's parts; its 1e-6 eV/Å finite-difference tolerance is below the step-1e-4
    truncation error of angle_3b on these short C distances (2.5e-6 unrestricted too), so 1e-5
    as in test_angle_3b."""
    descriptor = registry.get("descriptor", "angle_3b")(species=list(LIC), cutoff=3.5, theta=1.5, centers=["Li"], neighbors=["C", "Li"])
    structures = [sample_structure(descriptor.species, descriptor.cutoff, k, n_atoms=6 + k) for k in range(3)]
    assert check_batching(descriptor, structures)["jacobian"] < 1e-10
    check_invariance(descriptor, structures[0])
    check_gradients(descriptor, structures[0], atol=1e-5)
    check_gradients(descriptor, li_in_carbon(5, n_carbon=8, n_lithium=3, length=5.0), atol=1e-5)


# --- soap centers / neighbors -------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_soap_centers_and_neighbors_equal_the_unrestricted_block(registry, normalize):
    make = registry.get("descriptor", "soap")
    hypers = dict(species=list(LIC), cutoff=4.0, n_max=3, l_max=3)
    full = make(**hypers)
    restricted = make(**hypers, centers=["Li"], neighbors=["C"], normalize=normalize)
    atoms = li_in_carbon(2)
    q_full, q = features(full, atoms), features(restricted, atoms)
    cc = [k for k, (a, b, *_) in enumerate(full.feature_labels) if full.species[a] == full.species[b] == "C"]
    assert restricted.n_features == len(cc)
    lithium = np.array(atoms.get_chemical_symbols()) == "Li"
    expected = q_full[lithium][:, cc]
    if normalize:
        expected = expected / expected.norm(dim=1, keepdim=True)
    assert torch.allclose(q[lithium], expected, rtol=1e-12, atol=1e-14)
    assert torch.count_nonzero(q[~lithium]) == 0
    # neighbors of both elements, centers Li: the Li rows are the unrestricted rows
    both = make(**hypers, centers=["Li"])
    assert torch.allclose(features(both, atoms)[lithium], q_full[lithium], rtol=1e-12, atol=1e-14)


def test_a_soap_center_without_neighbors_gets_zero_features_and_finite_gradients(registry):
    descriptor = registry.get("descriptor", "soap")(species=list(LIC), cutoff=3.0, n_max=2, l_max=2, centers=["Li"], neighbors=["C"], normalize=True)
    atoms = Atoms("LiC2", positions=[[0, 0, 0], [5.0, 5.0, 5.0], [6.3, 5.0, 5.0]], cell=[10, 10, 10], pbc=True)
    batch = build_batch([atoms], descriptor.cutoff)
    vectors = batch.edge_vectors().requires_grad_(True)
    q = descriptor(batch.numbers, batch.edge_index, vectors)
    assert torch.count_nonzero(q) == 0
    (gradient,) = torch.autograd.grad(q.sum() + (q**2).sum(), vectors)
    assert torch.isfinite(gradient).all()
    _, jacobian, _ = feature_jacobian(descriptor, [atoms])
    assert torch.isfinite(jacobian).all() and torch.count_nonzero(jacobian) == 0


@pytest.mark.parametrize("normalize", [False, True])
def test_restricted_soap_passes_the_descriptor_contract(registry, capsys, normalize):
    # centers Li with neighbors C and Li: every Li has its own Gaussian, so a normalised row is never zero
    check_descriptor(registry.get("descriptor", "soap")(species=list(LIC), cutoff=3.5, n_max=3, l_max=2, centers=["Li"], normalize=normalize))


def test_forces_of_a_li_c_soap_term_equal_finite_differences(registry):
    descriptor = registry.get("descriptor", "soap")(species=list(LIC), cutoff=3.5, n_max=3, l_max=2, centers=["Li"], neighbors=["C"], normalize=True)
    check_gradients(descriptor, li_in_carbon(3, n_carbon=8, n_lithium=2, length=5.0), atol=1e-6)


# --- GAP fits -----------------------------------------------------------------------------------

LI_C_ONLY = {"Li-C": (0.4, 1.5, 2.2), "C-C": (0.0, 1.0, 1.5), "Li-Li": (0.0, 1.0, 3.0)}


def li_c_cells(n: int, seed: int) -> Dataset:
    """Random Li-in-C cells labeled by a Morse reference with a Li-C pair only."""
    reference = Morse(pairs=LI_C_ONLY, cutoff=4.0, width=1.0)
    rng = np.random.default_rng(seed)
    structures, energies, forces = [], [], []
    for k in range(n):
        atoms = li_in_carbon(seed * 100 + k, n_carbon=int(rng.integers(6, 12)), n_lithium=int(rng.integers(1, 4)), length=rng.uniform(5.5, 6.5))
        energy, force, _ = reference.label(atoms)
        structures.append(atoms)
        energies.append(energy)
        forces.append(force)
    return Dataset(structures, np.array(energies), forces, [None] * n, source=f"li-c morse cells (seed {seed})")


def test_a_gap_li_c_pair_term_learns_a_li_c_morse_pair(registry):
    """A linear-kernel distance_2b term restricted to Li-C learns a Li-C-only Morse reference on
    held-out cells to 2 meV per Li (measured 0.29 meV per Li, the Li-Li-only term 1.7 eV per Li)."""
    train, test = li_c_cells(25, seed=1), li_c_cells(6, seed=2)

    def fit(pairs):
        descriptor = registry.get("descriptor", "distance_2b")(species=list(LIC), cutoff=4.0, theta=0.25, cutoff_transition_width=1.0, r_min=1.0, pairs=pairs)
        model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="linear", delta=1.0)
        potential = Potential(descriptor, model)
        settings = model.settings_schema(sparse_method="basis", sigma_energy=1e-5, sigma_force=1e-3, core_repulsion=False, progress=False)
        potential.fit(train, None, settings, isolated_atom_energies={"Li": 0.0, "C": 0.0})
        n_li = np.array([a.get_chemical_symbols().count("Li") for a in test.structures])
        error = (potential.predict(test.structures)[ENERGY].numpy() - test.energies) / n_li  # eV per Li
        return potential, np.sqrt(np.mean(error**2))

    potential, rmse = fit([["C", "Li"]])
    assert rmse < 2e-3, rmse
    assert np.ptp(test.energies) > 0.5
    _, wrong = fit([["Li", "Li"]])
    assert wrong > 20 * rmse, (wrong, rmse)
    # a C atom with no Li within the cutoff has an all-zero row: its energy in the term is exactly 0
    lonely = Atoms("C2Li", positions=[[0, 0, 0], [1.4, 0, 0], [0, 0, 7.0]], cell=[12, 12, 12], pbc=True)
    batch = build_batch([lonely], potential.cutoff)
    energies = potential.energy(batch, batch.edge_vectors())[ATOM_ENERGIES].detach()
    assert energies[0].item() == 0.0 and energies[1].item() == 0.0


def test_a_gap_soap_term_over_li_centers_has_no_carbon_sparse_points(registry):
    """dot_product SOAP over Li centers and C neighbors: C atoms have no features, so no C sparse
    points are chosen; C atom energies are exactly 0; forces equal finite differences."""
    train = li_c_cells(12, seed=3)
    descriptor = registry.get("descriptor", "soap")(species=list(LIC), cutoff=3.5, n_max=3, l_max=2, centers=["Li"], neighbors=["C"])
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="dot_product", zeta=2, delta=0.5)
    potential = Potential(descriptor, model)
    settings = model.settings_schema(n_sparse=10, sigma_energy=0.002, sigma_force=0.05, core_repulsion=False, progress=False)
    potential.fit(train, None, settings, isolated_atom_energies={"Li": 0.0, "C": 0.0})
    assert model.n_sparse == 10 and set(model.sparse_species.tolist()) == {descriptor.species.index("Li")}
    atoms = li_in_carbon(7)
    batch = build_batch([atoms], potential.cutoff)
    energies = potential.energy(batch, batch.edge_vectors())[ATOM_ENERGIES].detach()
    carbon = np.array(atoms.get_chemical_symbols()) == "C"
    assert torch.count_nonzero(energies[carbon]) == 0 and torch.count_nonzero(energies[~carbon]) > 0
    check_gradients(descriptor, li_in_carbon(4, n_carbon=8, n_lithium=2, length=5.0), energy_fn=potential_energy(potential), atol=1e-6)
