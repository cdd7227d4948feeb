"""Delta learning: a baseline (a Born-Mayer pair repulsion or another model file) whose labels
are subtracted before the fit and added back in every prediction, the model file that embeds
it, and the ``baseline:`` section of a training config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.neighborlist import neighbor_list

from pesmith.baseline import ModelBaseline, PairBaseline, ReferenceBaseline
from pesmith.calculator import PesmithCalculator
from pesmith.config import load_train_config
from pesmith.data import Dataset
from pesmith.errors import ConfigError, DataError
from pesmith.model_file import load_potential, save_potential
from pesmith.plugins.references.morse import Morse
from pesmith.potential import ENERGY, FORCES, STRESS, Potential
from pesmith.testing import amorphous_lisi
from pesmith.validation import predict_dataset
from pesmith.workflows import build_baseline, train

from conftest import write_xyz
from test_gap import chebyshev

LISI = ("Li", "Si")
# Steep enough to matter at the 2.2-2.8 Å nearest distances of these cells (0.1-0.3 eV per pair).
PAIRS = {
    "Li-Li": {"A": 400.0, "rho": 0.3, "cutoff": 3.5},
    "Li-Si": {"A": 500.0, "rho": 0.3, "cutoff": 3.5},
    "Si-Si": {"A": 800.0, "rho": 0.28, "cutoff": 3.2},
}


def morse_cells(n_structures: int, seed: int, baseline: PairBaseline | None = None) -> Dataset:
    """Periodic Li-Si cells of 8 or 12 atoms labeled by the morse reference (energy, forces,
    stress) plus, if given, ``baseline``'s labels."""
    reference, rng = Morse(), np.random.default_rng(seed)
    structures, energies, forces, stresses = [], [], [], []
    for k in range(n_structures):
        atoms = amorphous_lisi(int(rng.choice([8, 12])), volume_per_atom=rng.uniform(15.5, 19), seed=seed * 1000 + k, tilt=0.1)
        atoms.symbols = np.where(rng.uniform(size=len(atoms)) < 0.6, "Li", "Si")
        energy, force, stress = reference.label(atoms)
        if baseline is not None:
            extra_energy, (extra_force,), (extra_stress,) = baseline.labels([atoms])
            energy, force, stress = energy + extra_energy[0], force + extra_force, stress + extra_stress
        structures.append(atoms)
        energies.append(energy)
        forces.append(force)
        stresses.append(stress)
    return Dataset(structures, np.array(energies), forces, stresses, source=f"morse cells (seed {seed})")


def pair_potential(registry, baseline=None, cutoff: float = 5.0) -> Potential:
    """A one-term GAP on the 2-body distance descriptor (basis sparse points: fit in a second)."""
    descriptor = registry.get("descriptor", "distance_2b")(species=list(LISI), cutoff=cutoff, theta=0.5, cutoff_transition_width=1.0)
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="linear", delta=1.0)
    return Potential(descriptor, model, baseline=baseline)


def fit(potential: Potential, data: Dataset) -> Potential:
    schema = potential.model.settings_schema
    settings = schema(n_sparse=12, sparse_method="basis", sigma_energy=0.002, sigma_force=0.05, sigma_virial=0.05, progress=False)
    potential.fit(data, None, settings)
    return potential


def assert_same_predictions(a: dict, b: dict, atol: float) -> None:
    for key in (ENERGY, FORCES, STRESS):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


@pytest.fixture(scope="module")
def pair() -> PairBaseline:
    return PairBaseline(PAIRS)


@pytest.fixture(scope="module")
def test_cells() -> Dataset:
    return morse_cells(4, seed=22)


# --- the pair baseline -------------------------------------------------------------------------


def test_pair_baseline_energy_is_the_born_mayer_sum(pair, test_cells):
    """The energy equals a plain numpy sum over pairs, A exp(-r/rho) times the quintic switch."""
    atoms = test_cells.structures[0]
    i, j, d = neighbor_list("ijd", atoms, 3.5)  # every directed pair within the largest cutoff
    symbols = np.array(atoms.get_chemical_symbols())
    expected = 0.0
    for a, b, r in zip(symbols[i], symbols[j], d):
        p = PAIRS["Li-Si" if a != b else f"{a}-{b}"]
        t = np.clip((r - (p["cutoff"] - 0.5)) / 0.5, 0.0, 1.0)
        expected += 0.5 * p["A"] * np.exp(-r / p["rho"]) * (1 - t**3 * (10 - 15 * t + 6 * t**2))
    energy, _, _ = pair.labels([atoms])
    assert expected > 0.1  # the test structure has close pairs
    assert energy[0] == pytest.approx(expected, rel=1e-12)


def test_forces_and_stress_of_a_delta_potential_equal_finite_differences(registry, pair, test_cells):
    potential = fit(pair_potential(registry, pair), morse_cells(6, seed=21, baseline=pair))
    atoms = test_cells.structures[1].copy()
    atoms.rattle(0.05, seed=3)
    atoms.calc = PesmithCalculator(potential)
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-4), atol=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-6)
    bare = pair_potential(registry)
    bare.terms = potential.terms
    bare.set_reference(potential.reference)
    bare.set_core(potential.core_outer)
    without = np.abs(bare.predict([atoms])[FORCES].numpy() - atoms.get_forces()).max()
    assert without > 0.1  # the baseline's forces are in the calculator's


# --- fitting on the residual ---------------------------------------------------------------------


def test_delta_fit_equals_baseline_plus_a_fit_of_the_residual(registry, pair, test_cells):
    """Fitted on Morse + baseline labels over the baseline, the potential predicts exactly the
    baseline plus the same potential fitted on the Morse labels alone."""
    delta = fit(pair_potential(registry, pair), morse_cells(8, seed=23, baseline=pair))
    plain = fit(pair_potential(registry), morse_cells(8, seed=23))
    for name in ("Li", "Si"):
        assert delta.reference[name] == pytest.approx(plain.reference[name], abs=1e-8)
    energies, forces, stresses = pair.labels(test_cells.structures)
    expected = plain.predict(test_cells.structures)
    expected[ENERGY] = expected[ENERGY] + torch.from_numpy(energies)
    expected[FORCES] = expected[FORCES] + torch.from_numpy(np.concatenate(forces))
    expected[STRESS] = expected[STRESS] + torch.from_numpy(np.stack(stresses))
    assert_same_predictions(delta.predict(test_cells.structures), expected, atol=1e-7)


def test_delta_learning_fits_labels_with_a_steep_repulsion_better(registry, pair):
    """On Morse + pair-repulsion labels, a GAP (Chebyshev, squared-exponential kernel) over the
    pair baseline has smaller held-out errors than the same GAP asked to learn the repulsion too."""
    train_set, validation = morse_cells(16, seed=24, baseline=pair), morse_cells(4, seed=25, baseline=pair)
    errors = {}
    for name, baseline in (("delta", pair), ("plain", None)):
        descriptor = chebyshev(registry)
        model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="squared_exponential", theta=5.0)
        potential = Potential(descriptor, model, baseline=baseline)
        potential.fit(train_set, None, model.settings_schema(n_sparse=50, sigma_energy=0.002, sigma_force=0.02, sigma_virial=0.05, progress=False))
        errors[name] = predict_dataset(potential, validation).metrics()
    # measured: force 0.098 vs 0.205 eV/Å, energy 6.9 vs 14.7 meV/atom
    assert errors["delta"]["force_rmse_eV_per_A"] < 0.7 * errors["plain"]["force_rmse_eV_per_A"], errors
    assert errors["delta"]["energy_rmse_meV_per_atom"] < 0.7 * errors["plain"]["energy_rmse_meV_per_atom"], errors


# --- the model baseline and the model file ------------------------------------------------------


@pytest.fixture(scope="module")
def base_model_file(tmp_path_factory, pair) -> tuple:
    """A fitted 2-body GAP over the pair baseline, saved: the baseline of the model tests."""
    from pesmith.registry import Registry

    registry = Registry(entry_points=False)
    potential = fit(pair_potential(registry, pair), morse_cells(6, seed=26, baseline=pair))
    return save_potential(potential, tmp_path_factory.mktemp("base") / "base.pt", registry=registry), potential


def test_a_model_baseline_adds_the_two_potentials(registry, base_model_file, test_cells):
    path, base = base_model_file
    delta = fit(pair_potential(registry, ModelBaseline(load_potential(path, registry)[0], str(path)), cutoff=4.0), morse_cells(6, seed=27))
    alone = pair_potential(registry, cutoff=4.0)
    alone.terms = delta.terms
    alone.set_reference(delta.reference)
    alone.set_core(delta.core_outer)
    ours, theirs, both = (p.predict(test_cells.structures) for p in (alone, base, delta))
    assert_same_predictions(both, {key: ours[key] + theirs[key] for key in (ENERGY, FORCES, STRESS)}, atol=1e-10)
    assert delta.cutoff == base.cutoff == 5.0  # the neighbor list reaches the baseline's terms


@pytest.mark.parametrize("kind", ["pair", "model"])
def test_a_saved_delta_model_is_self_contained_and_equals_the_one_in_memory(registry, pair, base_model_file, test_cells, tmp_path, kind):
    if kind == "pair":
        baseline = pair
    else:
        copy = tmp_path / "copy_of_base.pt"
        copy.write_bytes(base_model_file[0].read_bytes())
        baseline = ModelBaseline(load_potential(copy, registry)[0], str(copy))
    potential = fit(pair_potential(registry, baseline, cutoff=4.0), morse_cells(6, seed=28, baseline=pair))
    path = save_potential(potential, tmp_path / "delta.pt", registry=registry)
    if kind == "model":
        copy.unlink()  # the delta model must not need its baseline's file
    loaded, header = load_potential(path, registry)
    assert header["baseline"]["kind"] == kind
    assert torch.load(path, weights_only=True)["format_version"] == 3
    assert_same_predictions(loaded.predict(test_cells.structures), potential.predict(test_cells.structures), atol=1e-10)
    calculator = PesmithCalculator.from_file(path, registry)
    atoms = test_cells.structures[2].copy()
    atoms.calc = calculator
    assert atoms.get_potential_energy() == pytest.approx(float(potential.predict([atoms])[ENERGY][0]), abs=1e-10)


# --- the training config and workflow ---------------------------------------------------------


def write_train_config(tmp_path: Path, data: Path, baseline: dict) -> Path:
    config = {
        "data": {"train": str(data), "validation_fraction": 0.25, "seed": 0},
        "descriptor": {"kind": "distance_2b", "cutoff": 4.0, "theta": 0.5, "cutoff_transition_width": 1.0},
        "model": {"kind": "gap", "kernel": "linear", "delta": 1.0},
        "training": {"n_sparse": 12, "sparse_method": "basis", "sigma_energy": 0.002, "sigma_force": 0.05, "progress": False},
        "output": "out/delta.pt",
        "baseline": baseline,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_train_with_a_pair_baseline_reports_metrics_of_the_total(registry, pair, tmp_path):
    labeled = morse_cells(8, seed=29, baseline=pair)
    data = write_xyz(labeled, tmp_path / "data.xyz")
    config = load_train_config(write_train_config(tmp_path, data, {"kind": "pair", "pairs": PAIRS}), registry)
    result = train(config, registry)
    assert "baseline + learned" in result.report["baseline"]["metrics"]
    loaded, header = load_potential(config.output, registry)
    assert header["baseline"]["pairs"] == PAIRS
    validation = labeled.subset(result.report["split"]["validation_indices"])
    recomputed = predict_dataset(loaded, validation).metrics()  # against the total labels
    assert recomputed["force_rmse_eV_per_A"] == pytest.approx(result.report["metrics"]["validation"]["force_rmse_eV_per_A"], rel=1e-6)
    assert "metrics are of the total potential" in config.output.with_name("delta_report.md").read_text()


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ({"kind": "model", "file": "missing.pt"}, r"key 'baseline.file': .*missing.pt is not a file; give a model file"),
        ({"kind": "xtb"}, r"key 'baseline.kind': unknown baseline kind 'xtb'; valid kinds: model, pair, reference"),
        ({"kind": "reference"}, r"missing required key 'baseline.reference'"),
        ({"kind": "reference", "reference": {"kind": "nope"}}, r"key 'baseline.reference.kind': .*nope"),
        ({"kind": "reference", "reference": {"kind": "morse", "depth": 1.0}}, r"unknown key 'baseline.reference.depth' for reference kind 'morse'"),
        ({"kind": "pair", "pairs": {"Li-Si": {"A": -1.0, "rho": 0.3, "cutoff": 3.0}}}, r"key 'baseline.pairs.Li-Si.A': Input should be greater than 0"),
        ({"kind": "pair", "pairs": {"Li-Xx": {"A": 1.0, "rho": 0.3, "cutoff": 3.0}}}, r"key 'baseline.pairs': pair 'Li-Xx' is not two element symbols"),
        ({"kind": "pair", "pairs": {"Li-Si": dict(PAIRS["Li-Si"]), "Si-Li": dict(PAIRS["Li-Si"])}}, r"pair 'Si-Li' is the same pair as 'Li-Si'"),
        ({"kind": "pair", "pairs": {"Li-Si": {"A": 1.0, "rho": 0.3, "cutoff": 0.4}}}, r"cutoff 0.4 Å must exceed switch_width 0.5 Å"),
        ({"kind": "pair", "pairs": {"Li-Si": {"A": 1.0, "rho": 0.3}}}, r"missing required key 'baseline.pairs.Li-Si.cutoff'"),
        ({"kind": "pair", "pairs": {}}, r"key 'baseline.pairs' is empty; give at least one pair"),
        ({"kind": "pair", "pairs": dict(PAIRS), "smoothing": 1.0}, r"unknown key 'baseline.smoothing'; valid keys in baseline: kind, pairs, switch_width"),
    ],
)
def test_a_bad_baseline_section_is_refused_at_load(registry, tmp_path, baseline, message):
    path = write_train_config(tmp_path, tmp_path / "data.xyz", baseline)
    with pytest.raises(ConfigError, match=message) as error:
        load_train_config(path, registry)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_baseline_that_does_not_cover_the_species_is_refused(registry, pair, tmp_path):
    descriptor = registry.get("descriptor", "distance_2b")(species=["Li"], cutoff=4.0, theta=0.5, cutoff_transition_width=1.0)
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="linear", delta=1.0)
    cells = morse_cells(4, seed=30)
    only_li = Dataset([a[a.numbers == 3] for a in cells.structures], np.zeros(4), [np.zeros(((a.numbers == 3).sum(), 3)) for a in cells.structures], [None] * 4)
    li_model = fit(Potential(descriptor, model), only_li)
    path = save_potential(li_model, tmp_path / "li.pt", registry=registry)
    config = load_train_config(write_train_config(tmp_path, tmp_path / "data.xyz", {"kind": "model", "file": str(path)}), registry)
    with pytest.raises(ConfigError, match=r"key 'baseline.file': the model baseline is defined for \['Li'\] but the potential also has \['Si'\]"):
        build_baseline(config.baseline, LISI, registry, where=str(tmp_path / "config.yaml"))
    with pytest.raises(ConfigError, match=r"pair baseline names \['Si'\], which the potential's species \['Li'\] lack"):
        Potential(descriptor, model, baseline=pair)
    bad = tmp_path / "not_a_model.pt"
    bad.write_text("no")
    config.baseline.file = bad
    with pytest.raises(ConfigError, match=r"key 'baseline.file': .*not_a_model.pt is not a pesmith model file"):
        build_baseline(config.baseline, LISI, registry)


def test_a_baseline_with_a_warm_start_is_refused(registry, base_model_file, tmp_path):
    path = write_train_config(tmp_path, tmp_path / "data.xyz", {"kind": "pair", "pairs": PAIRS})
    raw = yaml.safe_load(path.read_text()) | {"initial_model": str(base_model_file[0])}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"key 'baseline': a baseline with initial_model \(warm start\) is not supported yet"):
        load_train_config(path, registry)


# --- a reference plugin as the baseline ----------------------------------------------------------


def morse_baseline() -> ReferenceBaseline:
    return ReferenceBaseline(Morse(), {"kind": "morse"})


def test_a_reference_baseline_adds_the_reference_to_the_fit_of_the_residual(registry, pair, test_cells, tmp_path):
    """Over the morse reference, a 2-body GAP fitted on morse + pair-repulsion labels learns the
    repulsion: it predicts what the morse reference plus a GAP fitted on the repulsion alone
    predicts; its calculator's forces and stress are the derivatives of its energy; saved and
    read back (the reference rebuilt from the registry), it predicts the same."""
    delta = fit(pair_potential(registry, morse_baseline()), morse_cells(8, seed=31, baseline=pair))
    repulsion = morse_cells(8, seed=31, baseline=pair)
    morse = Morse()
    for k, atoms in enumerate(repulsion.structures):  # the same cells labeled by the repulsion only
        energy, force, stress = morse.label(atoms)
        repulsion.energies[k] -= energy
        repulsion.forces[k] = repulsion.forces[k] - force
        repulsion.stresses[k] = repulsion.stresses[k] - stress
    plain = fit(pair_potential(registry), repulsion)
    expected = plain.predict(test_cells.structures)
    labels = [morse.label(atoms) for atoms in test_cells.structures]
    expected[ENERGY] = expected[ENERGY] + torch.tensor([e for e, _, _ in labels], dtype=torch.float64)
    expected[FORCES] = expected[FORCES] + torch.from_numpy(np.concatenate([f for _, f, _ in labels]))
    expected[STRESS] = expected[STRESS] + torch.from_numpy(np.stack([s for _, _, s in labels]))
    ours = delta.predict(test_cells.structures)
    assert_same_predictions(ours, expected, atol=1e-7)
    assert float(ours[ENERGY][0] - plain.predict(test_cells.structures[:1])[ENERGY][0]) == pytest.approx(labels[0][0], abs=1e-7)

    atoms = test_cells.structures[1].copy()
    atoms.rattle(0.05, seed=4)
    atoms.calc = PesmithCalculator(delta)
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-4), atol=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-6)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)

    path = save_potential(delta, tmp_path / "over_morse.pt", registry=registry)
    loaded, header = load_potential(path, registry)
    assert header["baseline"] == {"kind": "reference", "reference": {"kind": "morse"}}
    assert_same_predictions(loaded.predict(test_cells.structures), ours, atol=1e-10)


def test_a_reference_baseline_that_fails_on_a_structure_names_it(registry, test_cells):
    baseline = ReferenceBaseline(Morse(pairs={"Li-Li": [0.2, 1.0, 3.0]}), {"kind": "morse", "pairs": {"Li-Li": [0.2, 1.0, 3.0]}})
    with pytest.raises(DataError, match=r"the reference baseline \(morse\) failed on structure 0 \(Li\d*Si\d*\)"):
        baseline.labels(test_cells.structures)


def test_train_with_a_reference_baseline_and_a_model_baseline_over_it_is_refused(registry, pair, tmp_path):
    """pesmith train with `baseline: {kind: reference}`: metrics of the total; a model file that
    carries a reference baseline cannot itself be a model baseline (one line naming the key)."""
    labeled = morse_cells(8, seed=32, baseline=pair)
    data = write_xyz(labeled, tmp_path / "data.xyz")
    config = load_train_config(write_train_config(tmp_path, data, {"kind": "reference", "reference": {"kind": "morse"}}), registry)
    result = train(config, registry)
    assert result.report["baseline"]["reference"] == {"kind": "morse"}
    loaded, _ = load_potential(config.output, registry)
    validation = labeled.subset(result.report["split"]["validation_indices"])
    recomputed = predict_dataset(loaded, validation).metrics()  # the total (morse + GAP) against the labels
    assert recomputed["energy_rmse_meV_per_atom"] == pytest.approx(result.report["metrics"]["validation"]["energy_rmse_meV_per_atom"], rel=1e-6)
    without = Potential(loaded.terms[0].descriptor, loaded.terms[0].model, loaded.reference)
    without.set_core(loaded.core_outer)
    assert predict_dataset(without, validation).metrics()["energy_rmse_meV_per_atom"] > 10 * recomputed["energy_rmse_meV_per_atom"]
    with pytest.raises(ConfigError, match=r"key 'baseline.file': .*has a reference baseline, which a baseline model cannot carry"):
        build_baseline(load_train_config(write_train_config(tmp_path, data, {"kind": "model", "file": str(config.output)}), registry).baseline, LISI, registry)
