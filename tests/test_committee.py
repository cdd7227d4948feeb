"""The ``committee`` model: the mean of its members, their spread as energy_std and forces_std."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from pesmith import cli
from pesmith.calculator import PesmithCalculator
from pesmith.model_file import load_potential
from pesmith.potential import ENERGY, ENERGY_STD, FORCES, Potential
from pesmith.structures import build_batch
from test_gap import chebyshev, morse_cells


@pytest.fixture(scope="module")
def committee_potential(registry_module):
    """An unfitted 3-member committee on Chebyshev features, each member's weights drawn with its
    own seed (as a fit would leave them, different from one another)."""
    descriptor = chebyshev(registry_module)
    committee = registry_module.get("model", "committee")(species=descriptor.species, n_features=descriptor.n_features, members=3, hidden=[6])
    for seed, network in enumerate(committee.networks):
        torch.manual_seed(seed)
        for layer in network.networks.values():
            for module in layer:
                if isinstance(module, torch.nn.Linear):
                    module.reset_parameters()
    return Potential(descriptor, committee)


@pytest.fixture(scope="module")
def registry_module():
    from pesmith.registry import Registry

    return Registry(entry_points=False)


def member_predictions(potential: Potential, structures) -> tuple[np.ndarray, np.ndarray]:
    """Energies (K, n_structures) and forces (K, n_atoms, 3) of each member alone, by autograd."""
    energies, forces = [], []
    for network in potential.model.networks:
        alone = Potential(potential.descriptor, network, reference=potential.reference)
        alone.set_core(potential.core_outer)
        results = alone(build_batch(structures, potential.descriptor.cutoff), forces=True)
        energies.append(results[ENERGY].numpy())
        forces.append(results[FORCES].numpy())
    return np.array(energies), np.array(forces)


def test_energy_and_energy_std_are_the_mean_and_spread_of_the_members(committee_potential):
    structures = morse_cells(3, seed=2).structures
    results = committee_potential(build_batch(structures, committee_potential.descriptor.cutoff), forces=True)
    energies, forces = member_predictions(committee_potential, structures)
    assert results[ENERGY].numpy() == pytest.approx(energies.mean(0), abs=1e-10)
    assert results[FORCES].numpy() == pytest.approx(forces.mean(0), abs=1e-10)
    assert results[ENERGY_STD].numpy() == pytest.approx(energies.std(0, ddof=1), abs=1e-10)
    assert (results[ENERGY_STD].numpy() > 1e-6).all()


def test_forces_std_is_the_spread_of_the_members_autograd_forces(committee_potential):
    structures = morse_cells(2, seed=4).structures
    _, forces = member_predictions(committee_potential, structures)
    std = committee_potential.forces_std(build_batch(structures, committee_potential.descriptor.cutoff)).numpy()
    assert std.shape == forces.shape[1:]
    assert std == pytest.approx(forces.std(0, ddof=1), abs=1e-9)
    assert std.max() > 1e-4


def test_a_trained_committee_gives_its_spread_through_the_calculator(tmp_path, small_si_xyz):
    config = {
        "data": {"train": str(small_si_xyz), "validation_fraction": 0.25, "seed": 0},
        "descriptor": {"kind": "acsf", "cutoff": 4.0, "n_radial": 3, "n_angular": 1, "zetas": [1.0]},
        "model": {"kind": "committee", "members": 3, "hidden": [4]},
        "training": {"epochs": 3, "batch_size": 2, "progress": False, "seed": 0, "subsample": 0.7},
        "output": str(tmp_path / "committee.pt"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path)]) == 0
    import ase.io

    atoms = ase.io.read(small_si_xyz, index=0)
    atoms.calc = PesmithCalculator.from_file(tmp_path / "committee.pt")
    energy = atoms.get_potential_energy()
    std = atoms.calc.results["energy_std"]
    forces_std = atoms.calc.get_property("forces_std", atoms)
    assert np.isfinite(energy) and std > 0
    assert forces_std.shape == (len(atoms), 3) and (forces_std > 0).any()
    report = tmp_path / "report"
    assert cli.main(["validate", str(tmp_path / "committee.pt"), str(small_si_xyz), "--output", str(report), "--no-progress"]) == 0
    uncertainty = json.loads((report / "report.json").read_text())["uncertainty"]
    assert set(uncertainty) == {"energy_spearman", "energy_coverage_1sigma", "force_spearman", "force_spearman_of_reference_norm", "force_coverage_1sigma"}
    assert 0 <= uncertainty["force_coverage_1sigma"] <= 1 and -1 <= uncertainty["force_spearman"] <= 1
    assert (report / "uncertainty.png").is_file() and "Spearman" in (report / "report.md").read_text()


def test_a_committee_of_one_is_refused_in_one_line(tmp_path, small_si_xyz, capsys):
    config = {
        "data": {"train": str(small_si_xyz)},
        "descriptor": {"kind": "acsf", "cutoff": 4.0, "n_radial": 3, "n_angular": 1, "zetas": [1.0]},
        "model": {"kind": "committee", "members": 1},
        "output": str(tmp_path / "c.pt"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: model.members must be at least 2 (a committee of one has no spread), got 1"]
    assert not (tmp_path / "c.pt").exists()


def test_train_committee_flag_turns_the_nn_config_into_a_committee(tmp_path, write_config):
    config = write_config(output=str(tmp_path / "flag.pt"))
    assert cli.main(["train", str(config), "--committee", "3"]) == 0
    potential, header = load_potential(tmp_path / "flag.pt")
    assert header["model"]["kind"] == "committee" and len(potential.model.networks) == 3
    assert header["model"]["hidden"] == yaml.safe_load(config.read_text())["model"]["hidden"]


def test_train_committee_flag_needs_an_nn_model(tmp_path, write_config, capsys):
    config = write_config(output=str(tmp_path / "gap.pt"), model={"kind": "gap"}, training={"n_sparse": 5})
    assert cli.main(["train", str(config), "--committee", "3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {config}: --committee needs model kind 'nn' (it fits several nn networks), got 'gap'"
    ]
    assert not (tmp_path / "gap.pt").exists()


def test_members_of_several_architectures_take_them_in_turn_and_reload(tmp_path, small_si_xyz):
    config = {
        "data": {"train": str(small_si_xyz), "validation_fraction": 0.25, "seed": 0},
        "descriptor": {"kind": "acsf", "cutoff": 4.0, "n_radial": 3, "n_angular": 1, "zetas": [1.0]},
        "model": {"kind": "committee", "members": 3, "hidden": [[4], [6, 3]]},
        "training": {"epochs": 2, "batch_size": 2, "progress": False, "seed": 0},
        "output": str(tmp_path / "mixed.pt"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path)]) == 0
    potential, header = load_potential(tmp_path / "mixed.pt")
    assert header["model"]["hidden"] == [[4], [6, 3]]
    assert [network.hidden for network in potential.model.networks] == [(4,), (6, 3), (4,)]
    import ase.io

    atoms = ase.io.read(small_si_xyz, index=0)
    energies, forces = member_predictions(potential, [atoms])
    results = potential(build_batch([atoms], potential.descriptor.cutoff), forces=True)
    assert results[ENERGY].numpy() == pytest.approx(energies.mean(0), abs=1e-10)
    assert results[ENERGY_STD].numpy() == pytest.approx(energies.std(0, ddof=1), abs=1e-10)


@pytest.mark.parametrize("hidden, fragment", [([[4], 6], "mixes layer sizes and lists"), ([], "must be a list of layer sizes")])
def test_bad_committee_architectures_are_refused_in_one_line(tmp_path, small_si_xyz, capsys, hidden, fragment):
    config = {
        "data": {"train": str(small_si_xyz)},
        "descriptor": {"kind": "acsf", "cutoff": 4.0, "n_radial": 3, "n_angular": 1, "zetas": [1.0]},
        "model": {"kind": "committee", "members": 2, "hidden": hidden},
        "output": str(tmp_path / "c.pt"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
