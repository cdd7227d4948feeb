"""Chebyshev (aenet) descriptor: agreement with a plain NumPy loop implementation, the typed
set, the descriptor contract through a network, and clear errors for bad hyper-parameters."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk

from pesmith import cli
from pesmith.errors import ConfigError
from pesmith.plugins.descriptors import chebyshev as chebyshev_module
from pesmith.plugins.descriptors.chebyshev import Chebyshev, default_weights
from pesmith.plugins.models.nn import BehlerParrinello
from pesmith.potential import Potential
from pesmith.registry import Registry
from pesmith.structures import build_batch
from pesmith.testing import (
    check_descriptor,
    check_gradients,
    check_invariance,
    distorted_lisi,
    features_gradients_jacobian,
    potential_energy,
    sample_structure,
)

# ---------------------------------------------------------------------------------------------
# An independent reference: explicit loops, its own periodic image search, T_n(x) = cos(n acos x)
# ---------------------------------------------------------------------------------------------


def reference_neighbors(atoms: Atoms, cutoff: float) -> list[list[tuple[np.ndarray, str]]]:
    """For each atom, (vector to the neighbor image in Å, neighbor symbol) for all images within ``cutoff``.

    Images: every lattice translation n1 a1 + n2 a2 + n3 a3 with |n_k| up to the number of
    lattice-plane spacings that fit in the cutoff (plus one for positions anywhere in the cell).
    """
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    reach = []
    for k in range(3):
        other = np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])
        spacing = volume / np.linalg.norm(other)  # distance between lattice planes (Å)
        reach.append(int(math.ceil(cutoff / spacing)) + 1)
    positions = atoms.positions
    symbols = atoms.get_chemical_symbols()
    result = []
    for i in range(len(atoms)):
        neighbors = []
        for n in itertools.product(*(range(-r, r + 1) for r in reach)):
            shift = np.array(n) @ cell
            for j in range(len(atoms)):
                if j == i and n == (0, 0, 0):
                    continue
                vector = positions[j] + shift - positions[i]
                if np.linalg.norm(vector) < cutoff:
                    neighbors.append((vector, symbols[j]))
        result.append(neighbors)
    return result


def reference_features(atoms: Atoms, rc_r: float, rc_a: float, n_r: int, n_a: int, weights: dict | None) -> np.ndarray:
    """The formulas of the class docstring, one term at a time."""

    def fc(d: float, rc: float) -> float:
        return 0.5 * (math.cos(math.pi * d / rc) + 1.0) if d < rc else 0.0

    def cheb(x: float, order: int) -> np.ndarray:
        theta = math.acos(min(1.0, max(-1.0, x)))
        return np.array([math.cos(n * theta) for n in range(order + 1)])

    rows = []
    for neighbors in reference_neighbors(atoms, max(rc_r, rc_a)):
        radial = np.zeros(n_r + 1)
        angular = np.zeros(n_a + 1)
        radial_typed = np.zeros(n_r + 1)
        angular_typed = np.zeros(n_a + 1)
        for vector, symbol in neighbors:
            d = np.linalg.norm(vector)
            if d < rc_r:
                term = fc(d, rc_r) * cheb(2 * d / rc_r - 1, n_r)
                radial += term
                if weights:
                    radial_typed += weights[symbol] * term
        for a in range(len(neighbors)):
            for b in range(a + 1, len(neighbors)):
                (vj, sj), (vk, sk) = neighbors[a], neighbors[b]
                dj, dk = np.linalg.norm(vj), np.linalg.norm(vk)
                if dj >= rc_a or dk >= rc_a:
                    continue
                term = fc(dj, rc_a) * fc(dk, rc_a) * cheb(np.dot(vj, vk) / (dj * dk), n_a)
                angular += term
                if weights:
                    angular_typed += weights[sj] * weights[sk] * term
        parts = [radial, angular] + ([radial_typed, angular_typed] if weights else [])
        rows.append(np.concatenate(parts))
    return np.array(rows)


def small_triclinic_lisi() -> Atoms:
    """5 atoms in a strongly sheared cell whose shortest lattice-plane spacing (~3.4 Å) is far
    below the cutoffs used with it: many images of each atom, including of itself, are neighbors."""
    cell = np.array([[4.1, 0.0, 0.0], [1.6, 3.9, 0.0], [-1.2, 0.9, 4.4]])
    fractional = np.array([[0.0, 0.0, 0.0], [0.52, 0.1, 0.3], [0.2, 0.61, 0.55], [0.71, 0.48, 0.12], [0.4, 0.3, 0.85]])
    return Atoms("LiSi2LiSi", scaled_positions=fractional, cell=cell, pbc=True)


def features_of(descriptor: Chebyshev, atoms: Atoms) -> np.ndarray:
    return descriptor.featurize(build_batch([atoms], descriptor.cutoff)).detach().numpy()


@pytest.mark.parametrize(
    "atoms,rc_r,rc_a,n_r,n_a",
    [
        (distorted_lisi((1, 1, 1), seed=1), 5.0, 4.0, 11, 11),
        (distorted_lisi((2, 1, 1), seed=2), 6.5, 5.0, 8, 6),
        (small_triclinic_lisi(), 6.5, 4.5, 11, 7),
        (small_triclinic_lisi(), 4.0, 5.5, 5, 9),  # angular cutoff above the radial one
    ],
    ids=["diamond-1x1x1", "diamond-2x1x1", "small-triclinic", "small-triclinic-angular>radial"],
)
def test_chebyshev_equals_numpy_loops_on_periodic_lisi(atoms, rc_r, rc_a, n_r, n_a):
    weights = {"Li": -1.0, "Si": 1.0}
    descriptor = Chebyshev(["Si", "Li"], radial_cutoff=rc_r, angular_cutoff=rc_a, radial_order=n_r, angular_order=n_a)
    assert descriptor.weights == weights  # aenet's default for two species
    ours = features_of(descriptor, atoms)
    expected = reference_features(atoms, rc_r, rc_a, n_r, n_a, weights)
    assert ours.shape == expected.shape == (len(atoms), 2 * (n_r + n_a + 2))
    assert np.abs(ours - expected).max() < 1e-10
    assert np.abs(expected).max() > 1.0  # not trivially zero


def test_small_triclinic_cell_is_smaller_than_twice_the_cutoff():
    atoms = small_triclinic_lisi()
    cell = atoms.cell.array
    spacings = [atoms.get_volume() / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    assert max(atoms.cell.lengths()) < 2 * 4.5 and max(spacings) < 4.5  # below every cutoff used with it
    assert abs(atoms.cell.cellpar()[3:] - 90).max() > 10  # triclinic


def test_single_species_equals_numpy_loops_and_has_only_the_structural_set():
    atoms = distorted_lisi((1, 1, 1), seed=4)
    atoms.symbols[:] = "Si"
    descriptor = Chebyshev(["Si"], radial_cutoff=6.0, angular_cutoff=4.5, radial_order=9, angular_order=6)
    ours = features_of(descriptor, atoms)
    expected = reference_features(atoms, 6.0, 4.5, 9, 6, None)
    assert ours.shape == (len(atoms), 10 + 7) == (len(atoms), descriptor.n_features)
    assert np.abs(ours - expected).max() < 1e-10
    assert not any("typed" in name for name in descriptor.describe())


def test_typed_set_with_unit_weights_equals_structural_set():
    atoms = small_triclinic_lisi()
    descriptor = Chebyshev(["Li", "Si"], radial_cutoff=6.0, angular_cutoff=5.0, radial_order=7, angular_order=5,
                           weights={"Li": 1, "Si": 1})
    features = features_of(descriptor, atoms)
    half = descriptor.n_features // 2
    assert np.abs(features[:, :half]).max() > 1.0
    np.testing.assert_allclose(features[:, half:], features[:, :half], rtol=0, atol=1e-12)
    # and weights -1/+1 on a pure-Si cell flip nothing, on pure Li flip the sign of the radial part
    signed = Chebyshev(["Li", "Si"], radial_cutoff=6.0, angular_cutoff=5.0, radial_order=7, angular_order=5)
    li_only = atoms.copy()
    li_only.symbols[:] = "Li"
    g = features_of(signed, li_only)
    np.testing.assert_allclose(g[:, half : half + 8], -g[:, :8], atol=1e-12)  # w_j = -1
    np.testing.assert_allclose(g[:, half + 8 :], g[:, 8:half], atol=1e-12)  # w_j w_k = +1


def test_feature_order_and_names():
    descriptor = Chebyshev(["Si", "Li"], radial_cutoff=6.0, angular_cutoff=5.0, radial_order=11, angular_order=11)
    names = descriptor.describe()
    assert descriptor.species == ("Li", "Si") and descriptor.cutoff == 6.0
    assert descriptor.n_features == len(names) == 48  # the LixSi study's size
    assert names[0] == "structural radial T0(2r/Rc-1) Rc=6"
    assert names[12] == "structural angular T0(cos) Rc=5"
    assert names[24] == "typed[Li-1,Si+1] radial T0(2r/Rc-1) Rc=6"
    assert names[47] == "typed[Li-1,Si+1] angular T11(cos) Rc=5"
    assert Chebyshev(["Li"], radial_cutoff=4.0, angular_cutoff=7.0).cutoff == 7.0


@pytest.mark.parametrize(
    "species,expected",
    [
        (["Li"], [0.0]),
        (["Li", "Si"], [-1.0, 1.0]),
        (["Li", "O", "Si"], [-1.0, 0.0, 1.0]),
        (["Li", "O", "P", "Si"], [-2.0, -1.0, 1.0, 2.0]),
        (["Li", "C", "O", "P", "Si"], [-2.0, -1.0, 0.0, 1.0, 2.0]),
    ],
)
def test_default_weights_follow_aenet(species, expected):
    assert list(default_weights(species).values()) == expected


def test_config_round_trip_keeps_explicit_weights():
    descriptor = Chebyshev(["Li", "Si"], radial_cutoff=6.0, angular_cutoff=5.0, weights={"Li": 0.5, "Si": 2})
    rebuilt = Chebyshev(**descriptor.get_config())
    assert rebuilt.weights == {"Li": 0.5, "Si": 2.0} and rebuilt.get_config() == descriptor.get_config()
    assert Chebyshev(["Li"], radial_cutoff=4.0, angular_cutoff=4.0).get_config()["weights"] is None


# ---------------------------------------------------------------------------------------------
# The descriptor contract and exact forces/stress through a network
# ---------------------------------------------------------------------------------------------


def test_contract_lisi():
    check_descriptor(Chebyshev(["Li", "Si"], radial_cutoff=5.5, angular_cutoff=4.5, radial_order=8, angular_order=6))


def test_contract_single_species_angular_cutoff_above_radial():
    check_descriptor(Chebyshev(["Li"], radial_cutoff=4.0, angular_cutoff=5.0, radial_order=6, angular_order=8))


def test_contract_three_species_default_weights():
    descriptor = Chebyshev(["Li", "Si", "O"], radial_cutoff=4.5, angular_cutoff=4.0, radial_order=5, angular_order=4)
    assert descriptor.weights == {"Li": -1.0, "O": 0.0, "Si": 1.0}
    check_descriptor(descriptor)


def random_potential(descriptor: Chebyshev, atoms: Atoms, seed: int = 0) -> Potential:
    """An untrained network whose normalisation puts ``atoms``' features in tanh's useful range."""
    torch.manual_seed(seed)
    model = BehlerParrinello(descriptor.species, descriptor.n_features, hidden=[15, 15])
    features = torch.as_tensor(features_of(descriptor, atoms))
    with torch.no_grad():
        model.feature_mean.copy_(features.mean(0).expand_as(model.feature_mean))
        model.feature_scale.copy_((features.std(0) + 1.0).expand_as(model.feature_scale))
    return Potential(descriptor, model, {s: -1.0 for s in descriptor.species})


@pytest.mark.parametrize("species", [("Li", "Si"), ("Si",)])
def test_nn_forces_and_stress_match_finite_differences_on_small_triclinic_cell(species):
    descriptor = Chebyshev(list(species), radial_cutoff=6.0, angular_cutoff=5.0, radial_order=11, angular_order=11)
    atoms = sample_structure(descriptor.species, descriptor.cutoff, seed=7, n_atoms=8)
    assert max(atoms.cell.lengths()) < 2 * descriptor.cutoff and not atoms.cell.orthorhombic
    potential = random_potential(descriptor, atoms)
    energy_fn = potential_energy(potential)
    check_gradients(descriptor, atoms, step=1e-4, atol=1e-6, energy_fn=energy_fn)
    check_invariance(descriptor, atoms, atol=1e-10, energy_fn=energy_fn)


def test_collinear_triplets_have_finite_exact_forces():
    """bcc Li: every atom has neighbor pairs at exactly 180 degrees, where theta(r) has a kink;
    T_n(cos theta) is smooth there, so autograd forces and stress stay finite and exact."""
    atoms = bulk("Li", "bcc", 3.45, cubic=True)
    atoms.positions[0] += [0.05, -0.03, 0.02]  # one atom off-site; the other keeps its collinear pairs
    descriptor = Chebyshev(["Li"], radial_cutoff=5.0, angular_cutoff=5.0, radial_order=6, angular_order=10)
    check_gradients(descriptor, atoms, step=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad hyper-parameters: ConfigError at construction naming the key, and exit 2 through the CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"radial_cutoff": -1.0}, "descriptor.radial_cutoff must be a positive number"),
        ({"angular_cutoff": float("nan")}, "descriptor.angular_cutoff must be a positive number"),
        ({"radial_cutoff": 1.5}, "descriptor.radial_cutoff = 1.5 Å is shorter than the shortest Li/Si bond"),
        ({"angular_cutoff": 1.0}, "descriptor.angular_cutoff = 1.0 Å is shorter"),
        ({"radial_order": -1}, "descriptor.radial_order must be in 0..50"),
        ({"angular_order": 51}, "descriptor.angular_order must be in 0..50"),
        ({"radial_order": 2.5}, "descriptor.radial_order must be an integer"),
        ({"angular_order": "11"}, "descriptor.angular_order must be an integer"),
        ({"species": ["Li", "Xx"]}, r"species: unknown chemical symbol\(s\) \['Xx'\]"),
        ({"weights": {"Li": -1, "Si": 1, "Ge": 0}}, r"descriptor.weights: species \['Ge'\] not in"),
        ({"weights": {"Li": -1}}, r"descriptor.weights: no weight for \['Si'\]"),
        ({"weights": {"Li": -1, "Si": float("inf")}}, "descriptor.weights.Si must be a finite number"),
        ({"weights": [-1, 1]}, "descriptor.weights must map every species"),
    ],
)
def test_bad_hyperparameters_name_the_key(kwargs, message):
    options = {"species": ["Li", "Si"], "radial_cutoff": 6.0, "angular_cutoff": 5.0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Chebyshev(**options)


@pytest.mark.parametrize(
    "descriptor,parts",
    [
        ({"radial_order": 99}, ["descriptor.radial_order must be in 0..50", "got 99"]),
        ({"angular_cutoff": -2.0}, ["descriptor.angular_cutoff must be a positive number"]),
        ({"weights": {"Si": 1, "Li": -1}}, ["descriptor.weights: species ['Li'] not in", "(Si)"]),
        ({"radial_orders": 11}, ["unknown key 'descriptor.radial_orders'", "descriptor kind 'chebyshev'", "radial_order"]),
    ],
)
def test_cli_bad_chebyshev_key_exits_2_naming_it(write_config, capsys, monkeypatch, descriptor, parts):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    config = write_config(descriptor={"kind": "chebyshev", "radial_cutoff": 4.0, "angular_cutoff": 3.5, **descriptor})
    code = cli.main(["train", str(config)])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0]
    assert not (config.parent / "out").exists()  # nothing written


def test_cli_trains_a_chebyshev_model_on_two_files(tmp_path, small_si_xyz, small_li_xyz, capsys, monkeypatch):
    """`pesmith train` with ``data.train`` a list (Li file + Si file), a Chebyshev descriptor,
    and a calculator from the written model that reproduces the report's energies."""
    import pesmith

    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))
    config = {
        "data": {"train": [str(small_li_xyz), str(small_si_xyz)], "validation_fraction": 0.2, "seed": 0},
        "descriptor": {"kind": "chebyshev", "radial_cutoff": 4.5, "angular_cutoff": 3.5, "radial_order": 4,
                       "angular_order": 3, "weights": {"Li": -1, "Si": 1}},
        "model": {"kind": "nn", "hidden": [4]},
        "training": {"epochs": 2, "batch_size": 4, "progress": False, "seed": 0},
        "output": str(tmp_path / "lisi.pt"),
    }
    path = tmp_path / "lisi.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path)]) == 0
    capsys.readouterr()
    report = json.loads((tmp_path / "lisi_report.json").read_text())
    assert report["data"]["train"] == [str(small_li_xyz), str(small_si_xyz)]
    assert report["split"]["n_train"] + report["split"]["n_validation"] == 5
    assert report["config"]["descriptor"]["kind"] == "chebyshev"
    calculator = pesmith.load_calculator(tmp_path / "lisi.pt")
    import ase.io

    atoms = ase.io.read(small_li_xyz)
    atoms.calc = calculator
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_stress()).all()


@pytest.mark.parametrize("species", [["Li", "Si"], ["Si"]])
def test_triplet_chunks_do_not_change_features_gradients_or_jacobian(monkeypatch, species):
    descriptor = Chebyshev(species, radial_cutoff=5.0, angular_cutoff=4.0, radial_order=6, angular_order=5)
    atoms = distorted_lisi() if len(species) == 2 else bulk("Si", "diamond", a=5.43, cubic=True)
    whole = features_gradients_jacobian(descriptor, atoms)
    monkeypatch.setattr(chebyshev_module, "TRIPLET_CHUNK", 7)
    chunked = features_gradients_jacobian(descriptor, atoms)
    for one, other in zip(whole, chunked):
        assert torch.allclose(one, other, atol=1e-12, rtol=0)


def test_second_derivatives_through_chebyshev_are_refused():
    descriptor = Chebyshev(["Li", "Si"], radial_cutoff=5.0, angular_cutoff=4.0)
    batch = build_batch([distorted_lisi()], descriptor.cutoff)
    vectors = batch.edge_vectors().detach().requires_grad_(True)
    features = descriptor(batch.numbers, batch.edge_index, vectors)
    with pytest.raises(NotImplementedError, match="differentiable once"):
        torch.autograd.grad(features.sum(), vectors, create_graph=True)
