"""scripts/li_carbon_example.py: every stage on a tiny config with the analytic Morse reference
(C-C, Li-C and Li-Li pairs made up for the test, not physical); a rerun skips the finished
stages; bad input is one line and exit code 2; configs/li_carbon.yaml validates."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pesmith.registry import Registry

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "li_carbon_example.py"
STAGES = ["data", "carbon", "li_gap", "analysis"]

# (D eV, alpha 1/Å, r0 Å): C-C bonds near 1.45 Å, Li-C near 2.2 Å, weak Li-Li
MORSE = {"C-C": [3.0, 2.0, 1.45], "Li-C": [0.5, 1.5, 2.2], "Li-Li": [0.1, 1.0, 3.0]}

TINY = f"""
output: out
seed: 0
workers: 1
reference: {{kind: morse, cutoff: 4.5, width: 1.0, pairs: {json.dumps(MORSE)}}}
data:
  graphite: {{supercell: [2, 2, 1]}}
  amorphous:
    densities: [2.0, 2.5]
    atoms: 16
    melt_quench: {{melt_K: 3000.0, melt_ps: 0.02, quench_ps: 0.03, final_K: 300.0, timestep_fs: 1.0, interval: 10}}
    snapshots: 3
  hosts_per_density: 2
  lithium: {{counts: [1, 2], min_separation: 2.5, grid: 0.4}}
  rattle: {{stdev: 0.05, n: 1}}
  strained: 1
  test_hosts: 0.5
carbon_model:
  terms:
    - descriptor: {{kind: distance_2b, cutoff: 3.5, theta: 0.5, pairs: [[C, C]]}}
      model: {{kind: gap, kernel: linear, delta: 5.0}}
      training: {{sparse_method: basis}}
    - descriptor: {{kind: soap, cutoff: 3.5, n_max: 3, l_max: 2, centers: [C], neighbors: [C]}}
      model: {{kind: gap, kernel: dot_product, zeta: 2, delta: 0.5}}
      training: {{n_sparse: 20}}
  training: {{sigma_energy: 0.002, sigma_force: 0.1}}
li_gap:
  terms:
    - descriptor: {{kind: distance_2b, cutoff: 4.0, theta: 0.5, pairs: [[Li, Li]]}}
      model: {{kind: gap, kernel: linear, delta: 1.0}}
      training: {{sparse_method: basis}}
    - descriptor: {{kind: distance_2b, cutoff: 4.0, theta: 0.5, pairs: [[C, Li]]}}
      model: {{kind: gap, kernel: linear, delta: 1.0}}
      training: {{sparse_method: basis}}
    - descriptor: {{kind: angle_3b, cutoff: 3.0, theta: 1.0, r_min: 1.5, centers: [Li], neighbors: [C]}}
      model: {{kind: gap, kernel: linear, delta: 0.05}}
      training: {{sparse_method: basis}}
    - descriptor: {{kind: soap, cutoff: 3.5, n_max: 3, l_max: 2, centers: [Li], neighbors: [C]}}
      model: {{kind: gap, kernel: dot_product, zeta: 2, delta: 0.3}}
      training: {{n_sparse: 5}}
  training: {{sigma_energy: 0.002, sigma_force: 0.05}}
analysis:
  md_host: graphite
  md: {{ensemble: bussi, temperature_K: 300.0, timestep_fs: 1.0, steps: 100, interval: 2}}
  r_max: 4.0
  bins: 40
  vdos_max_lag_fs: 50.0
"""


@pytest.fixture(scope="module")
def example():
    return load_script("li_carbon_example")


def test_every_stage_runs_and_a_rerun_skips_them(example, tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(TINY)
    registry = Registry(entry_points=False)
    config = example.load_config(config_path, registry)
    messages: list[str] = []
    results = example.run_stages(config, registry, echo=messages.append)
    out = tmp_path / "out"
    assert list(results) == STAGES and all((out / f"{name}.json").is_file() for name in STAGES)
    assert json.loads((out / "results.json").read_text()) == results
    assert all(f"| {name} |" in (out / "summary.md").read_text() for name in STAGES)
    data = results["data"]
    assert data["labeled"] == data["structures"] > 30 and data["failed"] == 0
    assert data["hosts"] == sorted(["graphite", "a-C 2", "a-C 2 #1", "a-C 2.5", "a-C 2.5 #1"])
    assert len(data["test_hosts"]) == 2 and {h.split(" #")[0] for h in data["test_hosts"]} == {"a-C 2", "a-C 2.5"}  # one per density
    assert data["test_structures"] > 0
    # the most open site of the AB graphite gallery: above an atom of one layer (distance z) and a hexagon centre of
    # the other (distance sqrt(1.42^2 + (c/2 - z)^2)); equal at z = (1.42^2 + (c/2)^2) / c = 1.976 Å (no site is a
    # hollow of both layers, as in AA-stacked LiC6)
    graphite_li = [a for a in example.labeled_structures(config) if a.info["host"] == "graphite" and a.info["kind"] == "intercalated"]
    bond, half = 2.46 / np.sqrt(3), 6.70 / 2
    assert example.shortest_li_c(graphite_li[0]) == pytest.approx((bond**2 + half**2) / (2 * half), abs=0.03)
    for stage in ("carbon", "li_gap"):
        assert math.isfinite(results[stage]["train"]["force_rmse_eV_per_A"])
    # the Li GAP holds the carbon model as its baseline
    header = (out / "models" / "li_gap.pt").read_bytes()[:20000].decode("latin-1")
    assert "baseline" in header
    r = results["analysis"]
    rows = r["intercalation"]["by_host"]
    assert {row["n_li"] for row in rows} == {1, 2} and len(rows) == 2 * len(data["hosts"])
    assert all(math.isfinite(row["gap_eV"]) and math.isfinite(row["reference_eV"]) for row in rows)
    assert r["intercalation"]["rmse_meV_per_Li_test_hosts"] is not None
    assert r["test"]["li_gap_with_li"]["n"] > 0 and r["test"]["carbon_model_on_carbon"]["n"] > 0
    md = r["md"]
    assert md["li"] == 2 and md["frames"] >= 50 and md["li_vdos_peak_THz"] > 0
    for name in ("intercalation.png", "rdf_li_c.png", "vdos_li.png", "rdf_li_c.csv", "vdos_li.csv", "md.xyz"):
        assert (out / name).is_file()
    # a rerun finds every stage's file and computes nothing
    again: list[str] = []
    assert example.run_stages(config, registry, echo=again.append) == results
    assert again == [f"{name}: done before ({results[name]['time_s']:.0f} s), skipped" for name in STAGES]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace("  strained: 1\n", "  strained: 1\n  wrong_key: 3\n"), "unknown key 'data.wrong_key'"),
        (lambda text: text.replace("md_host: graphite", "md_host: diamond"), "analysis.md_host"),
        (lambda text: text.replace("pairs: [[C, Li]]", "pairs: [[C, Si]]"), "pairs"),
        (lambda text: text.replace("centers: [Li], neighbors: [C]}\n      model: {kind: gap, kernel: linear",
                                   "centers: [Li], neighbors: [C], species: [Li]}\n      model: {kind: gap, kernel: linear"), "species"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, edit, message):
    config_path = tmp_path / "bad.yaml"
    text = edit(TINY)
    assert text != TINY
    config_path.write_text(text)
    done = subprocess.run([sys.executable, str(SCRIPT), str(config_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr and done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_shipped_config_validates(example):
    config = example.load_config(ROOT / "configs" / "li_carbon.yaml", Registry(entry_points=False))
    assert config.reference.kind == "sevennet" and config.output.resolve().is_relative_to(ROOT / "results")
    kinds = [(t.descriptor.kind, t.descriptor.options) for t in config.li_gap.term_sections]
    assert [k for k, _ in kinds] == ["distance_2b", "distance_2b", "angle_3b", "soap"]
    assert kinds[3][1]["centers"] == ["Li"] and kinds[3][1]["neighbors"] == ["C"]
