"""Fitting: derivative storage within a memory budget, stress in the loss, the model contract
(a closed-form linear model beside the network) and what a fit learns on an analytic reference."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

from pesmith import cli, hookimpl
from pesmith.data import Dataset
from pesmith.errors import ConfigError, DataError
from pesmith.features import concatenate_feature_sets, featurize_dataset, plan_for
from pesmith.loss import evaluate
from pesmith.fit_settings import FitSettings
from pesmith.model import FitSummary, Model
from pesmith.model_file import load_potential, save_potential
from pesmith.potential import ATOM_ENERGIES, ENERGY, ENERGY_STD, FEATURES, FORCES, STRESS, Potential
from pesmith.registry import Registry
from pesmith.structures import DTYPE
from pesmith.testing import amorphous_lisi, check_model
from pesmith.training import AdamSettings, take_step, train_one_epoch
from pesmith.validation import predict_dataset

from conftest import train_config, write_xyz

SPECIES = ("Li", "Si")


def morse_dataset(n_structures: int, seed: int, with_stress: bool = True) -> Dataset:
    """Random Li-Si cells of 19 or 38 atoms (Li fraction 0.5-0.85) at 15.5-19 Å^3/atom, labeled by the morse reference."""
    from pesmith.plugins.references.morse import Morse

    reference = Morse()
    rng = np.random.default_rng(seed)
    structures, energies, forces, stresses = [], [], [], []
    for k in range(n_structures):
        atoms = amorphous_lisi(int(rng.choice([19, 38])), volume_per_atom=rng.uniform(15.5, 19), seed=seed * 1000 + k, tilt=0.1)
        atoms.symbols = np.where(rng.uniform(size=len(atoms)) < rng.uniform(0.5, 0.85), "Li", "Si")  # LixSi, x ~ 1-6
        energy, force, stress = reference.label(atoms)
        structures.append(atoms)
        energies.append(energy)
        forces.append(force)
        stresses.append(stress if with_stress else None)
    return Dataset(structures, np.array(energies), forces, stresses, source=f"morse cells (seed {seed})")


@pytest.fixture(scope="module")
def morse_train() -> Dataset:
    return morse_dataset(40, seed=1)


@pytest.fixture(scope="module")
def morse_test() -> Dataset:
    return morse_dataset(12, seed=2)


def chebyshev(registry: Registry):
    return registry.get("descriptor", "chebyshev")(
        species=list(SPECIES), radial_cutoff=6.0, angular_cutoff=3.5, radial_order=8, angular_order=2
    )


def network(registry: Registry, descriptor) -> Model:
    return registry.get("model", "nn")(species=SPECIES, n_features=descriptor.n_features, hidden=[10])


def linear(registry: Registry, descriptor) -> Model:
    return registry.get("model", "linear")(species=SPECIES, n_features=descriptor.n_features)


# --- storage of feature derivatives ----------------------------------------------------------


@pytest.fixture(scope="module")
def small_set(morse_train):
    return morse_train.subset(range(12))


def featurized(descriptor, dataset, storage, tmp_path, **settings):
    fit = AdamSettings(feature_storage=storage, memory_gb=1.0, progress=False, **settings)
    plan, edges = plan_for(descriptor, [dataset], fit, tmp_path)
    return featurize_dataset(descriptor, dataset, {"Li": -1.0, "Si": -3.0}, plan, tmp_path / f"{storage}.f32", edges[0]), fit


def test_memory_disk_and_recompute_storage_give_the_same_fit(registry, small_set, tmp_path):
    descriptor = chebyshev(registry)
    weights = {}
    for storage in ("memory", "disk", "recompute"):
        data, settings = featurized(descriptor, small_set, storage, tmp_path, force_weight=0.1, stress_weight=1.0, batch_size=5)
        assert data.jacobian.storage == storage
        torch.manual_seed(0)
        model = network(registry, descriptor)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        train_one_epoch(model, optimizer, data, settings, torch.Generator().manual_seed(0))
        weights[storage] = (torch.cat([p.detach().ravel() for p in model.parameters()]), evaluate(model, data, settings))
    for storage in ("disk", "recompute"):
        rel = 1e-6 if storage == "disk" else 1e-12  # disk holds float32
        assert torch.allclose(weights[storage][0], weights["memory"][0], rtol=rel, atol=rel)
        for key, value in weights["memory"][1].items():
            assert weights[storage][1][key] == pytest.approx(value, rel=rel)


def test_a_minibatch_over_budget_runs_in_parts_with_the_same_gradient(registry, small_set, tmp_path):
    descriptor = chebyshev(registry)
    data, settings = featurized(descriptor, small_set, "memory", tmp_path, force_weight=0.3, stress_weight=2.0)
    rows = torch.arange(8)
    gradients = []
    for chunk_edges in (10**9, int(data.edges_per_structure.max())):  # one part, then one structure per part
        data.chunk_edges = chunk_edges
        parts = data.parts(rows)
        torch.manual_seed(0)
        model = network(registry, descriptor)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        sums = take_step(model, optimizer, parts, settings)
        gradients.append((len(parts), torch.cat([p.grad.ravel() for p in model.parameters()]), sums))
    assert gradients[0][0] == 1 and gradients[1][0] >= 4
    assert torch.allclose(gradients[0][1], gradients[1][1], rtol=1e-10, atol=1e-14)
    assert gradients[0][2] == pytest.approx(gradients[1][2], rel=1e-10)


def test_concatenated_feature_sets_equal_featurizing_everything(registry, small_set, tmp_path):
    descriptor = chebyshev(registry)
    whole, settings = featurized(descriptor, small_set, "disk", tmp_path, force_weight=0.1, stress_weight=1.0)
    first, _ = featurized(descriptor, small_set.subset(range(5)), "memory", tmp_path)
    second, _ = featurized(descriptor, small_set.subset(range(5, 12)), "disk", tmp_path / "new")
    joined = concatenate_feature_sets([first, second])
    model = network(registry, descriptor)
    a, b = evaluate(model, whole, settings), evaluate(model, joined, settings)
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-6)
    assert torch.equal(joined.edge_index, whole.edge_index)


def test_no_derivatives_are_built_without_force_and_stress_terms(registry, small_set, tmp_path):
    data, settings = featurized(chebyshev(registry), small_set, "auto", tmp_path, force_weight=0.0)
    assert data.jacobian is None
    assert not list(tmp_path.glob("*.f32"))
    assert set(evaluate(network(registry, chebyshev(registry)), data, settings)) == {"loss", "energy_rmse_meV_per_atom"}


def test_auto_storage_goes_to_disk_when_memory_does_not_hold_the_derivatives(registry, small_set, tmp_path):
    descriptor = chebyshev(registry)
    settings = AdamSettings(memory_gb=1.0, progress=False)
    plan, _ = plan_for(descriptor, [small_set], settings, tmp_path)
    assert plan.storage == "memory"
    tight = settings.model_copy(update={"memory_gb": plan.resident_gb + 0.5 * plan.jacobian_gb + 0.001})
    tight_plan, _ = plan_for(descriptor, [small_set], tight, tmp_path)
    assert tight_plan.storage == "disk"
    assert tight_plan.chunk_edges < plan.chunk_edges


def test_a_budget_below_one_structure_names_the_minimum(registry, small_set, tmp_path):
    descriptor = chebyshev(registry)
    with pytest.raises(ConfigError, match="set memory_gb to at least") as error:
        plan_for(descriptor, [small_set], AdamSettings(memory_gb=1e-5), tmp_path)
    minimum = float(str(error.value).rsplit("at least", 1)[1])
    plan, _ = plan_for(descriptor, [small_set], AdamSettings(memory_gb=minimum), tmp_path)
    assert plan.storage in ("disk", "recompute")


# --- the model contract: a closed-form linear model beside the network ------------------------


def test_linear_energy_fit_is_the_ridge_least_squares_solution(registry, morse_train):
    """With energies only, the fit equals numpy's least squares on per-element sums of the
    standardized features (and a count per element) per atom, stacked on sqrt(alpha) I for the
    penalized weights (not the biases)."""
    descriptor = chebyshev(registry)
    model = linear(registry, descriptor)
    potential = Potential(descriptor, model)
    alpha = 1e-4
    potential.fit(morse_train, None, model.settings_schema(force_weight=0.0, alpha=alpha, progress=False))
    data = featurize_dataset(descriptor, morse_train, potential.reference)
    rows = model._energy_rows(data.features, data.numbers, data.structure_index, data.n_structures).numpy()
    atoms = data.atoms_per_structure.numpy()[:, None]
    n = data.n_structures
    penalized = np.ones(rows.shape[1], dtype=bool)
    penalized[descriptor.n_features :: descriptor.n_features + 1] = False  # the per-element biases
    design = np.vstack([rows / atoms / np.sqrt(n), np.sqrt(alpha) * np.eye(rows.shape[1])[penalized]])
    target = np.concatenate([data.energies.numpy() / atoms[:, 0] / np.sqrt(n), np.zeros(penalized.sum())])
    theta, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = torch.cat([model.weights, model.bias[:, None]], dim=1).ravel().numpy()
    np.testing.assert_allclose(fitted, theta, rtol=1e-6, atol=1e-8)


def test_linear_model_passes_the_model_contract_and_reports_an_energy_std(registry, morse_train, tmp_path):
    descriptor = chebyshev(registry)
    potential = Potential(descriptor, linear(registry, descriptor))
    potential.fit(morse_train, None, potential.model.settings_schema(force_weight=0.1, progress=False))
    check_model(potential.model, descriptor)
    path = save_potential(potential, tmp_path / "linear.pt", registry=registry)
    calculator = load_potential(path, registry)[0]
    near = morse_train.structures[0].copy()
    far = near.copy()
    far.set_cell(far.cell * 0.82, scale_atoms=True)  # compressed beyond anything in training
    std = [float(calculator.predict([a])[ENERGY_STD][0]) for a in (near, far)]
    assert 0 < std[0] < std[1]
    from pesmith.calculator import PesmithCalculator

    near.calc = PesmithCalculator(calculator)
    near.get_potential_energy()
    assert near.calc.results["energy_std"] == pytest.approx(std[0])


class SparseCenters(Model):
    """A test model whose state has a data-dependent shape: it keeps the first ``n`` training
    environments as kernel centers (as GAP keeps sparse points) and fits one weight each."""

    def __init__(self, species, n_features, n_centers: int = 5):
        super().__init__(species, n_features)
        self.n_centers = n_centers
        self.register_buffer("centers", torch.zeros(0, n_features, dtype=DTYPE))
        self.register_buffer("weights", torch.zeros(0, dtype=DTYPE))

    def get_config(self):
        return {"n_centers": self.n_centers}

    def forward(self, features, numbers):
        distance = torch.cdist(features, self.centers) if len(self.centers) else features[:, :0]
        return (torch.exp(-distance / 10) * self.weights).sum(1)

    def fit(self, train, validation, settings):
        self.centers = train.features[: self.n_centers].clone()
        self.weights = torch.linspace(-0.1, 0.1, len(self.centers), dtype=DTYPE)
        return FitSummary(info={"n_centers": len(self.centers)})


@hookimpl
def pesmith_register_models(register) -> None:
    register("sparse-centers", SparseCenters)


def test_a_model_whose_state_shapes_depend_on_the_data_is_rebuilt_from_its_file(registry, morse_train, tmp_path):
    test_registry = Registry(entry_points=False, modules=[sys.modules[__name__]])
    descriptor = chebyshev(test_registry)
    potential = Potential(descriptor, SparseCenters(SPECIES, descriptor.n_features, n_centers=7))
    summary = potential.fit(morse_train, None, FitSettings(force_weight=0.0, progress=False))
    assert summary.history is None and summary.info["n_centers"] == 7
    path = save_potential(potential, tmp_path / "sparse.pt", registry=test_registry)
    loaded, _ = load_potential(path, test_registry)
    assert loaded.model.centers.shape == (7, descriptor.n_features)
    before, after = potential.predict(morse_train.structures[:2]), loaded.predict(morse_train.structures[:2])
    for key in (ENERGY, FORCES, STRESS):
        assert torch.allclose(before[key], after[key], atol=1e-12)


# --- what the fit learns ------------------------------------------------------------------


def fit_network(registry, train, settings: AdamSettings, validation=None, isolated=None):
    descriptor = chebyshev(registry)
    potential = Potential(descriptor, network(registry, descriptor))
    summary = potential.fit(train, validation, settings, isolated)
    return potential, summary


QUICK = dict(epochs=40, batch_size=4, learning_rate=5e-3, lr_patience=200, patience=200, progress=False)


def test_network_loss_decreases_and_the_best_validation_epoch_is_the_saved_one(registry, morse_train, morse_test):
    potential, summary = fit_network(registry, morse_train, AdamSettings(force_weight=0.1, **QUICK), validation=morse_test)
    losses = [entry["validation"]["loss"] for entry in summary.history]
    assert min(losses) < 0.2 * losses[0]
    best = summary.info["best_epoch"]
    assert losses[best - 1] == min(losses)
    reference = featurize_dataset(potential.descriptor, morse_test, potential.reference)
    now = evaluate(potential.model, reference, AdamSettings(force_weight=0.1))
    assert now["loss"] == pytest.approx(min(losses), rel=1e-9)


def test_the_force_term_changes_the_fit_and_lowers_the_force_error(registry, morse_train, morse_test):
    errors = {}
    for weight in (0.0, 0.3):
        potential, _ = fit_network(registry, morse_train, AdamSettings(force_weight=weight, **QUICK))
        errors[weight] = predict_dataset(potential, morse_test).metrics()["force_rmse_eV_per_A"]
    assert errors[0.3] < 0.7 * errors[0.0]


def test_isolated_atom_energies_are_the_reference_energies(registry, morse_train):
    isolated = {"Li": -0.25, "Si": -1.5}
    potential, _ = fit_network(registry, morse_train, AdamSettings(force_weight=0.0, **(QUICK | {"epochs": 2})), isolated=isolated)
    assert potential.reference == isolated
    atoms = morse_train.structures[0]
    results = potential.predict([atoms], stress=False)
    learned = potential.model(results[FEATURES], torch.as_tensor(atoms.numbers)).detach()
    expected = [isolated[symbol] for symbol in atoms.get_chemical_symbols()]
    np.testing.assert_allclose((results[ATOM_ENERGIES] - learned).numpy(), expected, atol=1e-12)


def test_linear_model_on_the_morse_reference_reaches_a_stated_accuracy(registry, morse_train, morse_test):
    """A pair potential is linear in typed radial Chebyshev features: held-out errors must be
    a small fraction of the spread of the labels (stated: < 5 meV/atom, < 0.05 eV/Å, < 0.2 GPa)."""
    descriptor = chebyshev(registry)
    potential = Potential(descriptor, linear(registry, descriptor))
    potential.fit(morse_train, None, linear(registry, descriptor).settings_schema(force_weight=0.1, stress_weight=1.0, progress=False))
    metrics = predict_dataset(potential, morse_test).metrics()
    force_spread = float(np.concatenate(morse_test.forces).std())
    assert force_spread > 0.3
    assert metrics["energy_rmse_meV_per_atom"] < 5
    assert metrics["force_rmse_eV_per_A"] < 0.05
    assert metrics["stress_rmse_GPa"] < 0.2


def test_the_stress_term_lowers_the_held_out_stress_error(registry, morse_train, morse_test):
    """On energies alone the virial is only learned through E(V); stress labels add it directly
    (measured: 1.35 -> 0.84 GPa)."""
    errors = {}
    for weight in (0.0, 10.0):
        potential, _ = fit_network(registry, morse_train, AdamSettings(force_weight=0.0, stress_weight=weight, **QUICK))
        errors[weight] = predict_dataset(potential, morse_test).metrics()["stress_rmse_GPa"]
    assert errors[10.0] < 0.8 * errors[0.0]


def test_stress_weight_without_stress_labels_names_the_data(registry, tmp_path):
    unlabeled = morse_dataset(3, seed=3, with_stress=False)
    with pytest.raises(DataError, match="morse cells .seed 3. has no periodic structure with a stress label"):
        fit_network(registry, unlabeled, AdamSettings(stress_weight=1.0, **QUICK))


# --- configs and the command line ------------------------------------------------------------


def test_train_a_model_without_epochs_through_the_cli(tmp_path, morse_train, builtin_cli, capsys):
    data = write_xyz(morse_train, tmp_path / "morse.xyz")
    config = train_config(tmp_path, data, "{kind: linear}", "{force_weight: 0.1, stress_weight: 1.0, alpha: 1.0e-8, progress: false}")
    assert cli.main(["train", str(config)]) == 0
    out = capsys.readouterr().out
    assert "stress_rmse_GPa" in out
    report = (tmp_path / "out" / "model_report.md").read_text()
    assert "epochs run" not in report and "stored: memory" in report
    assert cli.main(["evaluate", str(tmp_path / "out" / "model.pt"), str(data)]) == 0
    assert "stress_rmse_GPa" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob(".model_features_*"))  # the cache folder is gone


@pytest.mark.parametrize(
    "model,training,message",
    [
        ("linear", "{epochs: 10}", "unknown key 'training.epochs'; valid keys in training: force_weight"),
        ("nn", "{alpha: 1.0}", "unknown key 'training.alpha'; valid keys in training: force_weight"),
        ("nn", "{memory_gb: 1.0e-6}", "set memory_gb to at least"),
        ("nn", "{feature_storage: tape}", "training.feature_storage"),
        ("nn", "{force_weight: 0.0, force_weight_start: 1.0}", "training.force_weight_start needs training.force_weight > 0"),
    ],
)
def test_bad_training_settings_are_one_line(tmp_path, morse_train, builtin_cli, capsys, model, training, message):
    data = write_xyz(morse_train.subset(range(6)), tmp_path / "morse.xyz")
    code = cli.main(["train", str(train_config(tmp_path, data, f"{{kind: {model}}}", training))])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out" / "model.pt").exists()


def test_stress_weight_without_stress_labels_through_the_cli(tmp_path, builtin_cli, capsys):
    data = write_xyz(morse_dataset(4, seed=4, with_stress=False), tmp_path / "nostress.xyz")
    code = cli.main(["train", str(train_config(tmp_path, data, "{kind: nn}", "{stress_weight: 1.0, epochs: 2, progress: false}"))])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "nostress.xyz" in err and "stress label" in err, err



def test_stress_rmse_is_in_gpa():
    from ase.units import GPa

    from pesmith.loss import EV_PER_A3_IN_GPA

    assert EV_PER_A3_IN_GPA == pytest.approx(1 / GPa, rel=1e-8)


def test_the_fit_loop_runs_on_one_thread_and_restores_the_count(registry, morse_train, monkeypatch):
    seen = []
    from pesmith import training

    original = training.train_one_epoch
    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: seen.append(torch.get_num_threads()) or original(*a, **k))
    torch.set_num_threads(2)
    try:
        fit_network(registry, morse_train.subset(range(6)), AdamSettings(force_weight=0.0, **(QUICK | {"epochs": 2})))
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_the_command_line_asks_openmp_to_wait_passively(monkeypatch, builtin_cli, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert cli.main(["plugins"]) == 0
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli.main(["plugins"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # a user's choice stays


def test_workflows_train_refuses_to_replace_a_model_unless_told_to(write_config, tmp_path):
    from pesmith.config import load_train_config
    from pesmith.workflows import train

    registry = Registry(entry_points=False)
    config = load_train_config(write_config(output=str(tmp_path / "model.pt")), registry)
    train(config, registry)
    first = (tmp_path / "model.pt").read_bytes()
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'model.pt'} already exists") + r".*overwrite=True"):
        train(config, registry)
    assert (tmp_path / "model.pt").read_bytes() == first
    report = train(config, registry, overwrite=True).report
    assert report["model_file"] == str(tmp_path / "model.pt") and (tmp_path / "model.pt").is_file()


# --- warm start -------------------------------------------------------------------------------


def test_train_continues_from_an_initial_model(write_config, tiny_si_model, small_si_xyz, tmp_path):
    import ase.io

    from conftest import TINY_TRAINING

    registry = Registry(entry_points=False)
    standing_still = dict(TINY_TRAINING, learning_rate=1e-12, epochs=1)  # the fit cannot move the weights
    warm = cli.train_command(write_config("warm.yaml", output=str(tmp_path / "warm.pt"), initial_model=str(tiny_si_model), training=standing_still), registry)
    cold = cli.train_command(write_config("cold.yaml", output=str(tmp_path / "cold.pt"), training=standing_still), registry)
    first, _ = load_potential(tiny_si_model, registry)
    structures = ase.io.read(small_si_xyz, index=":")
    energies = {name: load_potential(report["model_file"], registry)[0].predict(structures)[ENERGY] for name, report in (("warm", warm), ("cold", cold))}
    assert torch.allclose(energies["warm"], first.predict(structures)[ENERGY], atol=1e-8)
    assert not torch.allclose(energies["cold"], first.predict(structures)[ENERGY], atol=1e-3)
    assert warm["reference_energies_eV"] == first.reference


def test_an_initial_model_of_other_settings_is_refused(write_config, tiny_si_model, tmp_path):
    from conftest import TINY_DESCRIPTOR

    config = write_config("other.yaml", output=str(tmp_path / "other.pt"), initial_model=str(tiny_si_model), descriptor=dict(TINY_DESCRIPTOR, cutoff=4.5))
    with pytest.raises(ConfigError, match=r"initial_model .*si_tiny.pt: its descriptor .* differs from the config's"):
        cli.train_command(config, Registry(entry_points=False))
    assert not (tmp_path / "other.pt").exists()


def test_warm_start_of_a_model_that_cannot_continue_is_refused(morse_train):
    test_registry = Registry(entry_points=False, modules=[sys.modules[__name__]])
    descriptor = chebyshev(test_registry)
    potential = Potential(descriptor, SparseCenters(SPECIES, descriptor.n_features, n_centers=3))
    with pytest.raises(ConfigError, match="SparseCenters cannot continue from a saved state"):
        potential.fit(morse_train, None, FitSettings(force_weight=0.0, progress=False), warm_start=True)


@pytest.mark.parametrize("schedule", ["cosine", "exponential"])
def test_cosine_and_exponential_schedules_warm_up_then_decay_to_the_minimum_rate(registry, morse_train, morse_test, schedule):
    import math

    settings = AdamSettings(**(QUICK | {"epochs": 12, "learning_rate": 4e-3}), min_learning_rate=1e-4, lr_schedule=schedule, warmup_epochs=3)
    _, summary = fit_network(registry, morse_train, settings, validation=morse_test)
    rates = [entry["learning_rate"] for entry in summary.history]
    assert len(rates) == 12  # no stop at the minimum rate: the schedule ends there
    np.testing.assert_allclose(rates[:4], [4e-3 / 3, 8e-3 / 3, 4e-3, 4e-3], rtol=1e-12)
    t = np.arange(9) / 8  # epochs 4..12
    expected = 1e-4 + (4e-3 - 1e-4) * 0.5 * (1 + np.cos(math.pi * t)) if schedule == "cosine" else 4e-3 * (1e-4 / 4e-3) ** t
    np.testing.assert_allclose(rates[3:], expected, rtol=1e-12)


def test_the_plateau_schedule_stays_the_default_and_records_its_rate(registry, morse_train):
    _, summary = fit_network(registry, morse_train, AdamSettings(**(QUICK | {"epochs": 3})))
    assert AdamSettings().lr_schedule == "plateau"
    assert [entry["learning_rate"] for entry in summary.history] == [QUICK["learning_rate"]] * 3


def test_a_force_weight_schedule_follows_the_learning_rate_and_the_best_epoch_uses_the_final_weight(registry, morse_train, morse_test):
    settings = AdamSettings(**(QUICK | {"epochs": 10, "learning_rate": 4e-3}), min_learning_rate=4e-4, lr_schedule="cosine",
                            warmup_epochs=2, force_weight=0.01, force_weight_start=1.0)
    _, summary = fit_network(registry, morse_train, settings, validation=morse_test)
    rates = np.array([entry["learning_rate"] for entry in summary.history])
    weights = np.array([entry["force_weight"] for entry in summary.history])
    np.testing.assert_allclose(weights[:2], 1.0)  # the warm-up keeps the starting weight
    np.testing.assert_allclose(weights[2:], 0.01 + 0.99 * rates[2:] / 4e-3, rtol=1e-12)
    assert weights[-1] < 0.2
    validation = [entry["validation"] for entry in summary.history]
    for metrics in validation:  # the monitored loss weighs forces by force_weight in every epoch
        expected = (metrics["energy_rmse_meV_per_atom"] / 1000) ** 2 + 0.01 * metrics["force_rmse_eV_per_A"] ** 2
        assert metrics["loss"] == pytest.approx(expected, rel=1e-9)
    assert summary.info["best_validation_loss"] == min(metrics["loss"] for metrics in validation)


def test_without_a_force_weight_schedule_every_epoch_uses_force_weight(registry, morse_train):
    _, summary = fit_network(registry, morse_train, AdamSettings(**(QUICK | {"epochs": 3}), force_weight=0.2))
    assert [entry["force_weight"] for entry in summary.history] == [0.2] * 3
    assert all(entry["seconds"] > 0 for entry in summary.history)

