"""Potential and calculator: exact forces and stress, invariance, ASE integration, NVE drift."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

import pesmith
from pesmith.calculator import ExtrapolationWarning
from pesmith.errors import DataError
from pesmith.plugins.descriptors.acsf import ACSF
from pesmith.plugins.models.nn import BehlerParrinello
from pesmith.potential import Potential
from pesmith.testing import check_gradients, check_invariance, check_model, potential_energy, sample_structure


def random_potential(species=("Li", "Si"), cutoff=6.0, seed=0) -> Potential:
    """An untrained Li-Si potential with non-trivial feature normalisation."""
    descriptor = ACSF(list(species), cutoff=cutoff, angular_cutoff=5.0, n_radial=6, n_angular=2,
                      g5_params=[[0.02, 2.0, -1.0]])
    torch.manual_seed(seed)
    model = BehlerParrinello(descriptor.species, descriptor.n_features, hidden=[8, 8])
    with torch.no_grad():
        model.feature_mean.uniform_(0.0, 0.5)
        model.feature_scale.uniform_(0.5, 2.0)
    return Potential(descriptor, model, {"Li": -1.9, "Si": -5.4})


def test_nn_forces_and_stress_match_finite_differences_on_small_triclinic_cell():
    potential = random_potential()
    atoms = sample_structure(potential.species, potential.descriptor.cutoff, seed=5, n_atoms=10)
    assert max(atoms.cell.lengths()) < 2 * potential.descriptor.cutoff
    check_gradients(potential.descriptor, atoms, step=1e-4, atol=1e-6, energy_fn=potential_energy(potential))


@pytest.mark.parametrize("pbc", [(False, False, False), (True, True, False)])
def test_forces_match_finite_differences_without_full_pbc(pbc):
    potential = random_potential(species=("Li", "Si"), cutoff=5.0)
    atoms = sample_structure(potential.species, 5.0, seed=2, n_atoms=8)
    atoms.pbc = pbc
    if not any(pbc):
        atoms.cell = np.zeros((3, 3))
    check_gradients(potential.descriptor, atoms, energy_fn=potential_energy(potential))


def test_nn_energy_invariant_to_rotation_translation_permutation_and_cell_choice():
    potential = random_potential()
    atoms = sample_structure(potential.species, potential.descriptor.cutoff, seed=7, n_atoms=9)
    check_invariance(potential.descriptor, atoms, atol=1e-10, energy_fn=potential_energy(potential))


def test_nn_model_contract_save_load(capsys):
    potential = random_potential()
    summary = check_model(potential.model, potential.descriptor)
    assert capsys.readouterr().out == summary + "\n"  # a pass says what it checked
    assert summary.startswith("check_model passed: BehlerParrinello on ACSF, save -> load of 2 random triclinic cells")
    assert all(what in summary for what in ("same energy (largest change", "forces (", "stress ("))


def test_calculator_properties(si_model_path):
    calc = pesmith.load_calculator(si_model_path)
    atoms = bulk("Si", "diamond", 5.47, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert energy == pytest.approx(atoms.get_potential_energies().sum(), abs=1e-9)
    assert atoms.get_forces().shape == (8, 3)
    assert atoms.get_stress().shape == (6,)
    assert calc.get_property("free_energy") == pytest.approx(energy)
    # A perfect diamond cell has zero forces by symmetry.
    perfect = bulk("Si", "diamond", 5.47, cubic=True)
    perfect.calc = calc
    assert np.abs(perfect.get_forces()).max() < 1e-10


def test_calculator_rejects_unknown_element(si_model_path):
    atoms = bulk("Si", "diamond", 5.47, cubic=True)
    atoms.symbols[0] = "Li"
    atoms.calc = pesmith.load_calculator(si_model_path)
    with pytest.raises(DataError, match="Li"):
        atoms.get_potential_energy()


def test_calculator_warns_once_outside_training_range(si_model_path):
    calc = pesmith.load_calculator(si_model_path)
    squeezed = bulk("Si", "diamond", 4.6, cubic=True)
    squeezed.calc = calc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        squeezed.get_potential_energy()
        squeezed.rattle(0.01, seed=1)
        squeezed.get_potential_energy()
    messages = [w for w in caught if issubclass(w.category, ExtrapolationWarning)]
    assert len(messages) == 1
    assert "8 atoms" in str(messages[0].message) or "of 8 atoms" in str(messages[0].message)


@pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")  # Si2 molecule: far from the bulk fit
def test_molecule_has_no_stress(si_model_path):
    calc = pesmith.load_calculator(si_model_path)
    atoms = molecule("Si2H6")
    del atoms[[a.index for a in atoms if a.symbol == "H"]]
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="stress not present in this calculation"):
        atoms.get_stress()


def test_nve_md_conserves_energy(si_model_path):
    """VelocityVerlet, 1 fs, 2,000 steps, 64 Si atoms from 600 K: drift below 1 meV/atom."""
    atoms = bulk("Si", "diamond", 5.47, cubic=True) * (2, 2, 2)
    atoms.calc = pesmith.load_calculator(si_model_path)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    totals = []
    dynamics.attach(lambda: totals.append(atoms.get_total_energy()), interval=10)
    dynamics.run(2000)
    totals = np.array(totals) / len(atoms)
    drift = abs(totals[-1] - totals[0])
    spread = totals.max() - totals.min()
    assert drift < 1e-3, f"energy drift {1000 * drift:.3f} meV/atom"
    assert spread < 2e-3, f"energy fluctuation {1000 * spread:.3f} meV/atom"


def test_running_epoch_metrics_equal_a_full_evaluation_when_the_weights_do_not_move(small_si_xyz):
    """With a vanishing learning rate the per-minibatch MSEs, weighted by structures and atoms,
    must add up to the metrics of the whole set: this checks the bookkeeping of the running
    metrics that the training history reports."""
    from pesmith.data import read_dataset
    from pesmith.features import featurize_dataset
    from pesmith.loss import evaluate
    from pesmith.training import AdamSettings, train_one_epoch

    dataset = read_dataset(small_si_xyz)
    potential = random_potential(species=("Si",), cutoff=5.0)
    data = featurize_dataset(potential.descriptor, dataset, {"Si": -5.4})
    settings = AdamSettings(batch_size=3, learning_rate=1e-300, force_weight=0.3, stress_weight=2.0, progress=False)
    optimizer = torch.optim.AdamW(potential.model.parameters(), lr=settings.learning_rate)
    running = train_one_epoch(potential.model, optimizer, data, settings, torch.Generator().manual_seed(0))
    assert data.n_structures == 4  # batches of 3 and 1 structures, of different atom counts
    whole = evaluate(potential.model, data, settings)
    assert "stress_rmse_GPa" in whole
    for key in whole:
        assert running[key] == pytest.approx(whole[key], rel=1e-12)
