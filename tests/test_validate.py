"""pesmith validate: errors per config_type and element, extrapolation counts, the report folder."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from pesmith import cli
from pesmith.data import read_dataset
from pesmith.model_file import load_potential
from pesmith.potential import FEATURES
from pesmith.registry import Registry
from pesmith.validation import Predictions, predict_dataset
from pesmith.validation_report import FILES, markdown, validation_report


@pytest.fixture
def typed_xyz(tmp_path, small_si_xyz) -> Path:
    """The four small Si structures, two of config_type 'slab', one 'strained' and one with none;
    the strained one compressed by 10 %."""
    structures = ase.io.read(small_si_xyz, index=":")
    for atoms, kind in zip(structures, ("slab", "slab", "strained", None)):
        atoms.info.pop("config_type", None)
        if kind:
            atoms.info["config_type"] = kind
    strained = structures[2]
    calc = strained.calc
    strained.set_cell(strained.cell * 0.9, scale_atoms=True)
    strained.calc = calc  # its labels stay those of the unstrained cell: only the errors change
    path = tmp_path / "typed.xyz"
    ase.io.write(path, structures, format="extxyz")
    return path


def test_per_config_type_metrics_equal_those_of_each_subset(tiny_si_model, typed_xyz, tmp_path):
    potential, _ = load_potential(tiny_si_model, Registry(entry_points=False))
    dataset = read_dataset(typed_xyz)
    per_type = predict_dataset(potential, dataset).metrics_per_config_type()
    assert set(per_type) == {"slab", "strained", "-"}
    structures = ase.io.read(typed_xyz, index=":")
    for name, rows in (("slab", [0, 1]), ("strained", [2]), ("-", [3])):
        ase.io.write(tmp_path / "subset.xyz", [structures[i] for i in rows], format="extxyz")
        alone = predict_dataset(potential, read_dataset(tmp_path / "subset.xyz")).metrics()
        assert per_type[name] == pytest.approx(alone, rel=1e-12, abs=1e-12)


def test_force_errors_per_element():
    forces = np.zeros((3, 3))
    predictions = Predictions(
        energy_per_atom_ref=np.zeros(1), energy_per_atom_pred=np.zeros(1), forces_ref=forces,
        forces_pred=np.array([[0.3, 0.0, 0.0], [0.0, -0.3, 0.0], [0.1, 0.2, -0.2]]), numbers=np.array([3, 3, 14]),
        atom_structure=np.zeros(3, dtype=int), config_types=["-"],
    )
    per_element = predictions.force_metrics_per_element()
    assert per_element["Li"] == pytest.approx({"n_atoms": 2, "force_rmse_eV_per_A": np.sqrt(0.18 / 6), "force_mae_eV_per_A": 0.1})
    assert per_element["Si"] == pytest.approx({"n_atoms": 1, "force_rmse_eV_per_A": np.sqrt(0.09 / 3), "force_mae_eV_per_A": 0.5 / 3})


def test_uncertainty_statistics_by_hand():
    predictions = Predictions(
        energy_per_atom_ref=np.zeros(4), energy_per_atom_pred=np.array([0.1, -0.2, 0.3, 0.05]),
        forces_ref=np.zeros((3, 3)), forces_pred=np.array([[0.1, 0.0, 0.0], [0.0, 0.4, 0.0], [0.2, 0.2, 0.2]]),
        energy_std=np.array([0.05, 0.25, 0.4, 0.01]), forces_std=np.array([[0.2, 0.2, 0.2], [0.1, 0.1, 0.5], [0.3, 0.1, 0.3]]),
    )
    stats = predictions.uncertainty()
    assert stats["energy_coverage_1sigma"] == pytest.approx(2 / 4)  # 0.2 <= 0.25 and 0.3 <= 0.4
    assert stats["energy_spearman"] == pytest.approx(1.0)  # the spreads rank the errors exactly
    assert stats["force_coverage_1sigma"] == pytest.approx(7 / 9)  # all but 0.4 > 0.1 and 0.2 > 0.1
    assert stats["force_spearman"] == pytest.approx(1.0)  # per-atom norms: spreads 0.35, 0.52, 0.44; errors 0.10, 0.40, 0.35
    assert Predictions(energy_per_atom_ref=np.zeros(1), energy_per_atom_pred=np.zeros(1), forces_ref=np.zeros((1, 3)), forces_pred=np.zeros((1, 3))).uncertainty() == {}


def test_uncertainty_within_each_config_type_and_against_the_force_norm_by_hand():
    """Two structures of two config types, two atoms each: within type a the larger spread has the
    smaller error (Spearman -1), within b the larger (+1); over all four atoms the spreads rank the
    errors at -0.4, the reference force norms (0.1, 1, 2, 3) at +0.4."""
    predictions = Predictions(
        energy_per_atom_ref=np.zeros(2), energy_per_atom_pred=np.array([0.01, 0.02]),
        forces_ref=np.array([[0.1, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]]),
        forces_pred=np.array([[0.1, 0.3, 0], [1.0, 0.1, 0], [2.0, 0.2, 0], [3.0, 0.4, 0]]),  # errors 0.3, 0.1, 0.2, 0.4
        energy_std=np.array([0.02, 0.01]), forces_std=np.array([[0.1, 0, 0], [0.4, 0, 0], [0.2, 0, 0], [0.3, 0, 0]]),
        numbers=np.array([14, 14, 14, 14]), atom_structure=np.array([0, 0, 1, 1]), config_types=["a", "b"],
    )
    overall = predictions.uncertainty()
    assert overall["force_spearman"] == pytest.approx(-0.4)  # spread ranks 1, 4, 2, 3 against error ranks 3, 1, 2, 4
    assert overall["force_spearman_of_reference_norm"] == pytest.approx(0.4)  # ranks 1-4 against error ranks 3, 1, 2, 4
    per_type = predictions.uncertainty_per_config_type()
    assert per_type["a"]["force_spearman"] == pytest.approx(-1.0) and per_type["b"]["force_spearman"] == pytest.approx(1.0)
    assert per_type["a"]["force_coverage_1sigma"] == pytest.approx(4 / 6)  # 0.3 > 0.1 and 0.1 > 0
    report = validation_report(predictions, "m.pt", "d.xyz")
    assert "Within each config_type" in markdown(report) and set(report["uncertainty_per_config_type"]) == {"a", "b"}


def test_extrapolation_counts_match_the_features_against_the_training_range(tiny_si_model, typed_xyz):
    potential, _ = load_potential(tiny_si_model, Registry(entry_points=False))
    structures = ase.io.read(typed_xyz, index=":")
    predictions = predict_dataset(potential, read_dataset(typed_xyz))
    features = potential.predict(structures)[FEATURES]
    outside = ((features < potential.feature_min) | (features > potential.feature_max)).numpy()
    assert np.array_equal(predictions.atoms_outside, outside.any(1))
    assert np.array_equal(predictions.features_outside, outside.sum(0))
    strained = predictions.atom_structure == 2
    assert predictions.atoms_outside[strained].all()  # 10 % shorter bonds than any training structure
    assert torch.isfinite(potential.feature_min).all()


def test_validate_writes_the_report_folder_and_refuses_to_overwrite_it(tiny_si_model, typed_xyz, tmp_path, capsys):
    output = tmp_path / "report"
    assert cli.main(["validate", str(tiny_si_model), str(typed_xyz), "--output", str(output), "--no-progress"]) == 0
    assert sorted(p.name for p in output.iterdir()) == sorted(FILES)
    report = json.loads((output / "report.json").read_text())
    assert set(report["per_config_type"]) == {"slab", "strained", "-"}
    assert report["force_per_element"]["Si"]["n_atoms"] == sum(len(a) for a in ase.io.read(typed_xyz, index=":"))
    assert report["extrapolation"]["atoms_outside"] >= len(ase.io.read(typed_xyz, index=2))
    markdown = (output / "report.md").read_text()
    assert "| force_rmse_eV_per_A | eV/Å |" in markdown and "strained" in markdown
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}
    assert cli.main(["validate", str(tiny_si_model), str(typed_xyz), "--output", str(output), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {output} already holds a validation report ({', '.join(FILES)}); pass --overwrite or choose --output"]
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == before
    assert cli.main(["validate", str(tiny_si_model), str(typed_xyz), "--output", str(output), "--overwrite", "--no-progress"]) == 0


def test_validate_without_the_data_file_is_one_line(tiny_si_model, tmp_path, capsys):
    missing = tmp_path / "nope.xyz"
    assert cli.main(["validate", str(tiny_si_model), str(missing), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
    assert not (tmp_path / "r").exists()
