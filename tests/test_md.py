"""pesmith md / pesmith.simulate.dynamics: NVE conserves energy, the thermostats hold their
temperature on a 256-atom cell, a killed run resumes from its last frame, bad input is one line."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from pesmith import cli
from pesmith.simulate.dynamics import MDSettings, run_md

EMT_OPTIONS = ["--reference", "ase", "--option", "calculator=ase.calculators.emt.EMT", "--option", "periodic=true"]


@pytest.fixture
def cu256(tmp_path):
    path = tmp_path / "cu.xyz"
    ase.io.write(path, bulk("Cu", "fcc", a=3.61, cubic=True).repeat(4), format="extxyz")  # 256 atoms
    return path


def test_nve_conserves_energy(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    settings = MDSettings(ensemble="nve", timestep_fs=2.0, steps=400, temperature_K=600.0, interval=20)
    run = run_md(atoms, EMT(), settings, tmp_path / "nve.xyz", tmp_path / "nve.csv")
    log = np.loadtxt(tmp_path / "nve.csv", delimiter=",", skiprows=1)
    assert run.steps == 400 and run.frames == 20 and len(log) == 20
    assert np.ptp(log[:, 5]) / len(atoms) < 2e-4  # eV/atom
    assert np.ptp(log[:, 3]) / len(atoms) > 10 * np.ptp(log[:, 5]) / len(atoms)  # the energy does move between kinetic and potential


@pytest.mark.slow  # 3,000 EMT steps of 256 atoms per thermostat: about a minute each on 2 busy cores
@pytest.mark.parametrize("ensemble", ["langevin", "bussi"])
def test_thermostats_hold_the_target_on_a_256_atom_cell(cu256, tmp_path, ensemble, capsys):
    stem = tmp_path / ensemble
    assert cli.main(["md", str(cu256), *EMT_OPTIONS, "--ensemble", ensemble, "--temperature-K", "500", "--timestep-fs", "4",
                     "--steps", "3000", "--interval", "5", "--friction", "0.02", "--taut-fs", "50", "--output", str(stem)]) == 0
    log = np.loadtxt(stem.with_name(ensemble + ".csv"), delimiter=",", skiprows=1)
    mean = log[log[:, 0] > 600, 2].mean()
    assert mean == pytest.approx(500.0, rel=0.02)
    assert f"mean temperature after the first fifth {mean:.1f} K" in capsys.readouterr().out
    frames = ase.io.read(stem.with_name(ensemble + ".xyz"), index=":")
    assert len(frames) == 600 and frames[-1].info["md_step"] == 3000 and np.abs(frames[-1].get_momenta()).sum() > 0


def test_a_langevin_ramp_reaches_its_final_temperature(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    settings = MDSettings(ensemble="langevin", timestep_fs=4.0, steps=1500, temperature_K=900.0, final_K=100.0, friction=0.05, interval=10)
    run_md(atoms, EMT(), settings, tmp_path / "q.xyz", tmp_path / "q.csv")
    log = np.loadtxt(tmp_path / "q.csv", delimiter=",", skiprows=1)
    assert log[log[:, 0] > 1350, 2].mean() == pytest.approx(settings.target_K(1425), rel=0.25)
    assert log[log[:, 0] <= 300, 2].mean() > 3 * log[log[:, 0] > 1350, 2].mean()


def test_a_run_resumes_from_its_last_frame(cu256, tmp_path):
    stem = tmp_path / "run"
    args = ["md", str(cu256), *EMT_OPTIONS, "--steps", "60", "--interval", "10", "--timestep-fs", "2", "--output", str(stem)]
    assert cli.main(["md", str(cu256), *EMT_OPTIONS, "--steps", "30", "--interval", "10", "--timestep-fs", "2", "--output", str(stem)]) == 0
    first = ase.io.read(stem.with_name("run.xyz"), index=":")
    assert [f.info["md_step"] for f in first] == [10, 20, 30]
    assert cli.main([*args, "--resume"]) == 0
    frames = ase.io.read(stem.with_name("run.xyz"), index=":")
    assert [f.info["md_step"] for f in frames] == [10, 20, 30, 40, 50, 60]
    assert np.allclose(frames[2].positions, first[2].positions)
    log = np.loadtxt(stem.with_name("run.csv"), delimiter=",", skiprows=1)
    assert log[:, 0].tolist() == [10, 20, 30, 40, 50, 60]


def test_md_refuses_to_overwrite_a_trajectory_and_a_large_time_step(cu256, tmp_path, capsys):
    stem = tmp_path / "run"
    assert cli.main(["md", str(cu256), *EMT_OPTIONS, "--steps", "10", "--output", str(stem)]) == 0
    before = stem.with_name("run.xyz").read_bytes()
    capsys.readouterr()
    assert cli.main(["md", str(cu256), *EMT_OPTIONS, "--steps", "10", "--output", str(stem)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {stem.with_name('run.xyz')} exists: pass --resume to continue it, or choose another output"]
    assert stem.with_name("run.xyz").read_bytes() == before
    assert cli.main(["md", str(cu256), *EMT_OPTIONS, "--timestep-fs", "8", "--output", str(tmp_path / "big")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--large-timestep" in err[0]
    assert cli.main(["md", str(cu256), *EMT_OPTIONS, "--ensemble", "bussi", "--final-K", "100", "--output", str(tmp_path / "r")]) == 2
    assert "final_K (a temperature ramp) needs ensemble langevin" in capsys.readouterr().err


def test_md_with_a_model_takes_the_calculators_skin_and_dtype(tiny_si_model, tmp_path, capsys):
    path = tmp_path / "si.xyz"
    ase.io.write(path, bulk("Si", "diamond", a=5.43, cubic=True).repeat(2), format="extxyz")
    for skin, dtype in (("0", "float64"), ("0.8", "float32")):
        stem = tmp_path / f"run_{dtype}"
        arguments = ["md", str(path), "--model", str(tiny_si_model), "--ensemble", "nve", "--steps", "6", "--interval", "3"]
        assert cli.main([*arguments, "--skin", skin, "--dtype", dtype, "--output", str(stem)]) == 0
    first, second = (ase.io.read(tmp_path / f"run_{dtype}.xyz", index=":") for dtype in ("float64", "float32"))
    assert len(first) == len(second) == 2
    np.testing.assert_allclose(second[-1].positions, first[-1].positions, atol=1e-5)  # float32 forces, 6 steps of 1 fs
    capsys.readouterr()
    assert cli.main(["md", str(path), "--model", str(tiny_si_model), "--skin", "-1", "--output", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: skin: -1.0 Å is not a valid neighbor-list skin; give a value >= 0 Å (0: a new list every call, 1.0 for MD)"
    ]
    assert cli.main(["md", str(path), *EMT_OPTIONS, "--dtype", "float32", "--output", str(tmp_path / "ref")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --skin and --dtype set how a --model file is evaluated; they do not apply to --reference"
    ]
