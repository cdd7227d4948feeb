"""scripts/li3po4_example.py: every stage on a tiny config with the analytic Morse reference (Li-P-O
pairs made up for the test, not physical); a rerun skips the finished stages; bad input is one
line and exit code 2; configs/li3po4.yaml validates."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from pesmith.registry import Registry

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "li3po4_example.py"
STAGES = ["data", "train", "amorphous", "vacancies", "neb", "diffusion"]

# (D eV, alpha 1/Å, r0 Å): P-O bonds near 1.54 Å, Li-O near 1.95 Å, weak repulsion elsewhere
MORSE = {
    "P-O": [4.0, 2.0, 1.55], "Li-O": [0.6, 1.6, 1.95], "O-O": [0.05, 1.5, 2.8],
    "Li-Li": [0.1, 1.0, 3.0], "Li-P": [0.05, 1.2, 3.0], "P-P": [0.05, 1.2, 3.5],
}

TINY = f"""
output: out
seed: 0
workers: 1
reference: {{kind: morse, cutoff: 5.0, width: 1.0, pairs: {json.dumps(MORSE)}}}
data:
  crystal: {ROOT / "data" / "li3po4" / "Li3PO4_beta.xyz"}
  supercells: [[1, 1, 1]]
  scale: {{min: 0.98, max: 1.02, n: 3}}
  rattle: {{stdev: 0.05, n: 2}}
  strained: 3
  vacancies: 3
  amorphous:
    cells: 1
    formula_units: 2
    melt_quench: {{melt_K: 1500.0, melt_ps: 0.02, quench_ps: 0.02, final_K: 300.0, timestep_fs: 1.0, interval: 5}}
    snapshots: 4
train:
  descriptor: {{kind: acsf, cutoff: 4.5, angular_cutoff: 3.5, n_radial: 4, r_min: 1.0, n_angular: 1, zetas: [1]}}
  model: {{kind: nn, hidden: [5, 5], activation: tanh}}
  training: {{epochs: 40, force_weight: 0.3, batch_size: 4, learning_rate: 1.0e-2, seed: 0}}
  validation_fraction: 0.2
amorphous:
  supercell: [1, 1, 1]
  melt_quench: {{melt_K: 1000.0, melt_ps: 0.02, quench_ps: 0.03, final_K: 300.0, timestep_fs: 1.0, interval: 10}}
  relax: {{relax: positions, fmax: 0.2, steps: 300}}
  nvt: {{ensemble: bussi, temperature_K: 300.0, timestep_fs: 1.0, steps: 40, interval: 5}}
  r_max: 4.0
  bins: 40
vacancies:
  supercell: [1, 1, 1]
  relax: {{relax: positions, fmax: 0.2, steps: 500}}
neb:
  hops: 1
  band: {{images: 1, fmax: 0.3, steps: 100, relax_endpoints: false}}
diffusion:
  temperatures_K: [1000.0, 2000.0]
  md: {{ensemble: bussi, timestep_fs: 1.0, steps: 200, interval: 5, seed: 1}}
  n_blocks: 2
  sites: {{min_occupancy: 0.0}}
  kmc: {{r_cut: 3.5, hops_per_carrier: 20, records: 40, copies: 2}}
"""


@pytest.fixture(scope="module")
def example():
    return load_script("li3po4_example")


def test_every_stage_runs_and_a_rerun_skips_them(example, tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(TINY)
    registry = Registry(entry_points=False)
    config = example.load_config(config_path, registry)
    messages: list[str] = []
    results = example.run_stages(config, registry, echo=messages.append)
    out = tmp_path / "out"
    assert list(results) == STAGES and all((out / f"{name}.json").is_file() for name in STAGES)
    assert json.loads((out / "results.json").read_text()) == results == {name: json.loads((out / f"{name}.json").read_text()) for name in STAGES}
    assert all(f"| {name} |" in (out / "summary.md").read_text() for name in STAGES)
    data, train = results["data"], results["train"]
    assert data["labeled"] == data["structures"] > 10 and data["failed"] == 0
    assert math.isfinite(train["validation"]["force_rmse_eV_per_A"]) and train["model"]["hidden"] == [5, 5]
    amorphous = results["amorphous"]
    assert amorphous["atoms"] == 16 and 1.0 < amorphous["rdf_crystal"]["P-O"]["peak_A"] < 1.7
    assert (out / "rdf_amorphous.csv").is_file() and (out / "amorphous.xyz").is_file()
    for who in ("network", "reference"):
        assert all(math.isfinite(site["E_f_eV"]) for site in results["vacancies"][who]["sites"])
        assert math.isfinite(results["neb"]["hops"][0][who]["barrier_forward_eV"])
    md = results["diffusion"]["md"]
    assert all(run["D_A2_per_fs"] > 0 for run in md["runs"])
    for who, kmc in results["diffusion"]["kmc"].items():  # kMC with the network's and the reference's mean barrier
        assert all(run["D_A2_per_s"] > 0 for run in kmc["runs"]) and kmc["sites"] >= 2
        assert kmc["arrhenius"]["Ea_eV"] == pytest.approx(kmc["barrier_eV"], abs=0.3)  # one barrier: Ea is about it
    # a rerun finds every stage's file and computes nothing
    again: list[str] = []
    assert example.run_stages(config, registry, echo=again.append) == results
    assert again == [f"{name}: done before ({results[name]['time_s']:.0f} s), skipped" for name in STAGES]
    # an interrupted run resumes at the missing stage
    (out / "diffusion.json").unlink()
    resumed: list[str] = []
    example.run_stages(config, registry, echo=resumed.append)
    assert resumed[-2:] == ["diffusion: running", resumed[-1]] and resumed[-1].startswith("diffusion: ")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace("hops: 1\n", "hops: 1\n  wrong_key: 3\n"), "unknown key 'neb.wrong_key'"),
        (lambda text: text.replace("temperatures_K: [1000.0, 2000.0]", "temperatures_K: [1000.0]"), "diffusion.temperatures_K"),
        (lambda text: text.replace("Li3PO4_beta.xyz", "missing.xyz"), "data.crystal"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, edit, message):
    config_path = tmp_path / "bad.yaml"
    config_path.write_text(edit(TINY))
    done = subprocess.run([sys.executable, str(SCRIPT), str(config_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_shipped_config_validates(example):
    config = example.load_config(ROOT / "configs" / "li3po4.yaml", Registry(entry_points=False))
    assert config.train.model.options["hidden"] == [5, 5] and config.reference.kind == "sevennet"
    assert config.output.resolve().is_relative_to(ROOT / "results")  # git-ignored
    assert len(config.diffusion.temperatures_K) >= 3
