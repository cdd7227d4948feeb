"""scripts/holdout_accuracy.py: a stratified held-out share, trained through pesmith train's code
path (so sums of terms and baselines work), with the held-out structures kept out of the fit."""

from __future__ import annotations

import json

import numpy as np
import yaml

from conftest import load_script, write_xyz
from test_delta_learning import PAIRS, morse_cells


def test_a_gap_of_two_terms_over_a_baseline_is_scored_on_structures_it_never_saw(tmp_path, monkeypatch):
    script = load_script("holdout_accuracy")
    labeled = morse_cells(12, seed=40)
    for k, atoms in enumerate(labeled.structures):
        atoms.info["config_type"] = "small" if len(atoms) == 8 else "large"
    data = write_xyz(labeled, tmp_path / "data.xyz")
    gap = {"kind": "gap", "kernel": "linear", "delta": 1.0}
    config = {
        "data": {"train": str(data), "validation_fraction": 0.2, "seed": 0},
        "terms": [
            {"descriptor": {"kind": "distance_2b", "cutoff": 4.0, "theta": 0.5}, "model": gap, "training": {"sparse_method": "basis"}},
            {"descriptor": {"kind": "distance_2b", "cutoff": 5.0, "theta": 1.0}, "model": gap, "training": {"sparse_method": "basis"}},
        ],
        "training": {"n_sparse": 10, "sigma_energy": 0.002, "sigma_force": 0.05, "progress": False},
        "baseline": {"kind": "pair", "pairs": {"Li-Si": PAIRS["Li-Si"]}},
        "output": "never_written.pt",
    }
    path = tmp_path / "holdout.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results" / "holdout")
    out = tmp_path / "holdout.json"
    script.main([str(path), "--fraction", "0.25", "--seed", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    held = result["holdout"]["source_indices"]
    assert len(held) == 3 and {"small", "large"} <= set(result["holdout_by_config_type"])
    assert result["metrics"]["train"]["n_structures"] + result["metrics"]["validation"]["n_structures"] == 9
    assert result["metrics"]["holdout"]["n_structures"] == 3 and np.isfinite(result["metrics"]["holdout"]["force_rmse_eV_per_A"])
    assert result["config"]["data"]["train"] == [str(data)] or result["config"]["data"]["train"] == str(data)
    assert result["config"]["baseline"]["kind"] == "pair" and len(result["config"]["terms"]) == 2
    assert not (tmp_path / "never_written.pt").exists()


def pair_gap_config(data, path):
    """A quick config at ``path``: a pair-distance GAP on ``data``, its model never written."""
    config = {
        "data": {"train": str(data), "validation_fraction": 0.2, "seed": 0},
        "descriptor": {"kind": "distance_2b", "cutoff": 4.5, "theta": 0.5},
        "model": {"kind": "gap", "kernel": "linear", "delta": 1.0},
        "training": {"sparse_method": "basis", "sigma_energy": 0.002, "sigma_force": 0.05, "progress": False},
        "output": "never_written.pt",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_several_seeds_give_the_mean_and_spread_of_the_held_out_errors(tmp_path, monkeypatch, capsys):
    script = load_script("holdout_accuracy")
    labeled = morse_cells(10, seed=41)
    data = write_xyz(labeled, tmp_path / "data.xyz")
    path = pair_gap_config(data, tmp_path / "seeds.yaml")
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results" / "holdout")
    result = script.main([str(path), "--fraction", "0.2", "--seeds", "0", "1", "--out", str(tmp_path / "seeds.json")])
    runs = result["runs"]
    assert [run["holdout"]["seed"] for run in runs] == [0, 1] and runs[0]["holdout"]["source_indices"] != runs[1]["holdout"]["source_indices"]
    energies = [run["metrics"]["holdout"]["energy_rmse_meV_per_atom"] for run in runs]
    spread = result["summary"]["energy_rmse_meV_per_atom"]
    assert spread["values"] == energies and np.isclose(spread["mean"], np.mean(energies)) and np.isclose(spread["std"], np.std(energies, ddof=1))
    assert "mean ± sample standard deviation" in capsys.readouterr().out


def test_a_file_of_two_chemical_systems_is_held_out_and_scored_per_system(tmp_path, monkeypatch, capsys):
    script = load_script("holdout_accuracy")
    labeled = morse_cells(12, seed=42)
    for atoms in labeled.structures[:6]:  # labels stay those of the Li-Si cells: only the grouping is tested
        atoms.set_chemical_symbols(["Si"] * len(atoms))
    data = write_xyz(labeled, tmp_path / "data.xyz")
    path = pair_gap_config(data, tmp_path / "systems.yaml")
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results" / "holdout")
    result = script.main([str(path), "--fraction", "0.34", "--seeds", "0", "1", "--out", str(tmp_path / "systems.json")])
    for run in result["runs"]:
        held = run["holdout"]["source_indices"]
        assert sum(k < 6 for k in held) == 2 and sum(k >= 6 for k in held) == 2  # round(0.34 * 6) of each system
        assert set(run["holdout_by_system"]) == {"Si", "Li-Si"}
        assert all(metrics["n_structures"] == 2 for metrics in run["holdout_by_system"].values())
    per_system = result["summary"]["by_system"]["Si"]["force_rmse_eV_per_A"]
    assert per_system["values"] == [run["holdout_by_system"]["Si"]["force_rmse_eV_per_A"] for run in result["runs"]]
    assert "  Si: energy" in capsys.readouterr().out
