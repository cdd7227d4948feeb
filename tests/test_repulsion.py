"""The ZBL core below the training data's shortest distances (pesmith.repulsion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from pesmith.data import Dataset
from pesmith.fit_settings import FitSettings
from pesmith.model_file import load_potential, save_potential
from pesmith.plugins.models.linear import LinearModel
from pesmith.potential import Potential
from pesmith.repulsion import COULOMB_EV_A, SWITCH_WIDTH, core_radii, zbl_energy
from pesmith.testing import check_gradients, potential_energy, sample_structure
from test_potential import random_potential


def test_zbl_tends_to_the_bare_coulomb_repulsion_and_is_screened_further_out():
    z = torch.tensor([14])
    for r in (1e-4, 1e-3):
        bare = COULOMB_EV_A * 14 * 14 / r
        assert zbl_energy(torch.tensor([r], dtype=torch.float64), z, z).item() == pytest.approx(bare, rel=2e-2)
    r = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    energy = zbl_energy(r, z, z)
    assert (energy.diff() < 0).all()  # repulsive everywhere
    assert (energy / (COULOMB_EV_A * 196 / r) < 0.1).all()  # screened to below 10 % of the bare charge beyond 0.5 Å


def dimer(symbols: str, r: float) -> Atoms:
    return Atoms(symbols, positions=[[0, 0, 0], [0, 0, r]], cell=np.eye(3) * 20, pbc=False)


def test_a_dimer_gets_the_switched_pair_energy_once():
    potential = random_potential()
    bare = {r: potential_energy_of(potential, dimer("SiSi", r)) for r in (1.0, 1.7, 2.3)}
    potential.set_core({"Li-Li": 1.8, "Li-Si": 1.9, "Si-Si": 2.0})
    z = torch.tensor([14])
    inner = 2.0 - SWITCH_WIDTH
    assert potential_energy_of(potential, dimer("SiSi", 1.0)) - bare[1.0] == pytest.approx(zbl_energy(torch.tensor([1.0], dtype=torch.float64), z, z).item(), rel=1e-9)
    t = (1.7 - inner) / SWITCH_WIDTH
    switched = zbl_energy(torch.tensor([1.7], dtype=torch.float64), z, z).item() * (1 - t**3 * (10 - 15 * t + 6 * t**2))
    assert potential_energy_of(potential, dimer("SiSi", 1.7)) - bare[1.7] == pytest.approx(switched, rel=1e-9)
    assert potential_energy_of(potential, dimer("SiSi", 2.3)) == pytest.approx(bare[2.3], abs=1e-12)  # beyond the core: nothing
    forces = potential.predict([dimer("SiSi", 1.0)])["forces"].numpy()
    assert forces[1, 2] - forces[0, 2] > 100  # eV/Å, pushing the pair apart


def potential_energy_of(potential, atoms) -> float:
    return float(potential.predict([atoms])["energy"][0])


def test_forces_and_stress_with_the_core_match_finite_differences():
    potential = random_potential()
    atoms = sample_structure(potential.species, potential.descriptor.cutoff, seed=5, n_atoms=10)
    atoms.positions[1] = atoms.positions[0] + [1.1, 0.6, 0.0]  # inside the core and its switch
    atoms.positions[2] = atoms.positions[0] + [0.0, 0.0, 1.9]
    potential.set_core({"Li-Li": 2.2, "Li-Si": 2.2, "Si-Si": 2.2})
    check_gradients(potential.descriptor, atoms, step=1e-5, atol=1e-5, energy_fn=potential_energy(potential))


def test_fit_sets_the_core_at_the_shortest_training_distances_and_the_model_file_keeps_it(tmp_path):
    rng = np.random.default_rng(0)
    structures = []
    for k in range(6):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (1, 1, 1)
        atoms.numbers[: 2 + k % 3] = 3
        atoms.rattle(0.1, seed=k)
        structures.append(atoms)
    dataset = Dataset(structures=structures, energies=rng.normal(-30, 1, 6), forces=[rng.normal(0, 0.1, (8, 3)) for _ in structures], stresses=[None] * 6)
    descriptor = random_potential().descriptor
    potential = Potential(descriptor, LinearModel(descriptor.species, descriptor.n_features))
    potential.fit(dataset, None, LinearModel.settings_schema(progress=False))
    radii = core_radii(structures, potential.species)
    assert potential.core_outer == radii and set(radii) == {"Li-Li", "Li-Si", "Si-Si"}
    shortest_si = min(np.min(a.get_all_distances(mic=True)[np.ix_(a.numbers == 14, a.numbers == 14)][~np.eye(int((a.numbers == 14).sum()), dtype=bool)]) for a in structures)
    assert radii["Si-Si"] == pytest.approx(shortest_si)
    with_core = potential.predict(structures)["energy"]
    outer = dict(potential.core_outer)
    potential.set_core({})
    assert torch.equal(with_core, potential.predict(structures)["energy"])  # zero on the training data
    potential.set_core(outer)
    path = save_potential(potential, tmp_path / "m.pt")
    loaded, header = load_potential(path)
    assert loaded.core_outer == outer and header["core_outer_A"] == outer
    close = dimer("SiSi", 1.2)
    assert loaded.predict([close])["energy"][0] == pytest.approx(float(potential.predict([close])["energy"][0]))


def test_the_core_can_be_switched_off_and_files_without_it_load_without_one(tmp_path):
    assert FitSettings(core_repulsion=False).core_repulsion is False
    potential = random_potential()  # no core: written as files were before the core existed
    loaded, header = load_potential(save_potential(potential, tmp_path / "m.pt"))
    assert "core_outer_A" not in header
    assert loaded.core_outer == {} and not loaded.core_table.any()
