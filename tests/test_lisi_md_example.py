"""scripts/lisi_md.py on a finished tiny search (Morse reference, linear model): one NVT run per
composition and temperature from the search's lowest amorphous structure, D_Li and an Arrhenius fit
per composition, RDFs; a rerun reuses the finished runs; bad input is one line and exit code 2;
configs/lisi_md.yaml validates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pesmith import ase_files
from conftest import load_script
from test_search_loop import run_search, tiny_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "lisi_md.py"
MD = {"ensemble": "bussi", "timestep_fs": 2.0, "steps": 150, "interval": 5, "taut_fs": 50.0}

pytestmark = [
    pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning"),  # MD takes the linear model off its data
    pytest.mark.slow,  # a complete tiny search first
]


@pytest.fixture(scope="module")
def example():
    return load_script("lisi_md")


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("search")
    run_search(tiny_config(folder, path=[3.75, 3.0]))
    return folder / "out"


def write_config(folder: Path, search_folder: Path, **changes) -> Path:
    config = {"search": str(search_folder), "output": "md_out", "workers": 2, "compositions": [3.75, 3.0], "supercell": [2, 1, 1],
              "temperatures_K": [300.0, 900.0], "md": MD, "equilibration_ps": 0.06, "n_blocks": 2, "rdf": {"r_max": 5.0, "bins": 50}}
    config.update(changes)
    path = folder / "lisi_md.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_script(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(config)], capture_output=True, text=True, timeout=600)


def test_md_per_composition_and_temperature_from_the_searchs_lowest_structure(tmp_path, search):
    config = write_config(tmp_path, search)
    done = run_script(config)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "md_out" / "results.json").read_text())
    entries = json.loads((search / "hull.json").read_text())["entries"]
    assert [c["x"] for c in results["compositions"]] == [3.75, 3.0]
    for composition in results["compositions"]:
        here = [e for e in entries if e["kind"] not in ("crystal", "baseline") and e["li_per_si"] is not None and abs(e["li_per_si"] - composition["x"]) < 1e-6]
        lowest = min(here, key=lambda e: e["energy_per_atom_eV"])
        assert composition["structure"] == str(search / lowest["structure"])
        assert composition["atoms"] == 2 * len(ase_files.read(search / lowest["structure"], index=-1))
        assert [r["T_K"] for r in composition["runs"]] == [300.0, 900.0]
        for run in composition["runs"]:
            frames = ase_files.read(tmp_path / "md_out" / "md" / f"x{composition['x']:g}_{run['T_K']:g}K.xyz", index=":")
            assert len(frames) == MD["steps"] // MD["interval"] and len(frames[0]) == composition["atoms"]
            assert run["production_ps"] == pytest.approx((len(frames) - 6) * MD["timestep_fs"] * MD["interval"] / 1000)  # 0.06 ps = 6 frames dropped
            assert run["D_A2_per_fs"] > 0 and run["mean_T_K"] > 0
        fit = composition["arrhenius"]
        assert ("Ea_eV" in fit) != ("reason" in fit)
        assert composition["rdf_lowest_T"]["Si-Si"]["peak_A"] > 1.5
    for name in ("summary.md", "diffusion.png", "rdf.png"):
        assert (tmp_path / "md_out" / name).stat().st_size > 0

    trajectories = sorted((tmp_path / "md_out" / "md").glob("*.xyz"))
    stamps = [p.stat().st_mtime_ns for p in trajectories]
    again = run_script(config)
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in trajectories] == stamps  # finished runs are reused, not rerun
    assert json.loads((tmp_path / "md_out" / "results.json").read_text())["compositions"] == results["compositions"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"compositions": [2.0]}, "key 'compositions': the search in"),
        ({"temperatures_K": [300.0]}, "temperatures_K"),
        ({"equilibration_ps": 1.0}, "key 'equilibration_ps'"),
        ({"search": "nowhere"}, "key 'search'"),
        ({"calculator": {"skin": -1.0}}, "calculator.skin"),
        ({"calculator": {"dtype": "float16"}}, "calculator.dtype"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, search, change, message):
    done = run_script(write_config(tmp_path, search, **change))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "md_out").exists()


def test_shipped_config_validates(example):
    config = example.LiSiMDConfig.model_validate(yaml.safe_load((ROOT / "configs" / "lisi_md.yaml").read_text()))
    assert config.temperatures_K == [600.0, 800.0, 1000.0] and config.supercell == (2, 2, 2)
    assert (config.calculator.skin, config.calculator.dtype) == (1.0, "float64")
