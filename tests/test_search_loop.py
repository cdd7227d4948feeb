"""The search loop end to end on a cheap reference (morse) and model (linear), through the API,
the CLI (resume after SIGKILL, bad input), injected worker failures and MPI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith import ase_files
from pesmith.cli import print_search_summary
from pesmith.errors import ConfigError
from pesmith.parallel import parallel_map
from pesmith.registry import default_registry
from pesmith.search.config import load_search_config
from pesmith.search.loop import Search
from pesmith.plugins.references.morse import MorseCalculator
from pesmith.search.relaxation import relax_with_model
from pesmith.testing import amorphous_lisi

from test_parallel import MPI_TIMEOUT_S, mpi_label_command

CRYSTALS = Path(__file__).resolve().parents[1] / "data" / "lisi_crystals"
PESMITH = Path(sys.executable).with_name("pesmith")


def tiny_config(folder: Path, **changes) -> Path:
    """A search config of two steps on a 19-atom Li15Si4 cell (morse reference, linear model)."""
    ase.io.write(folder / "start.xyz", amorphous_lisi(19, volume_per_atom=17.0, seed=1))
    config = {
        "output": "out",
        "seed": 3,
        "workers": 1,
        "progress": False,
        "reference": {"kind": "morse"},
        "initial": {
            "generate": {
                "crystals": [str(CRYSTALS / f) for f in ("Li_bcc.xyz", "Si_diamond.xyz", "Li13Si4.xyz")],
                "max_atoms": 40,
                "supercells": [],
                "scale": {"min": 0.95, "max": 1.05, "n": 3},
                "rattle": {"stdev": 0.05, "n": 2},
                "surfaces": None,
                "clusters": None,
            }
        },
        "potential": {
            "descriptor": {"kind": "chebyshev", "radial_cutoff": 5.0, "angular_cutoff": 4.0, "radial_order": 6, "angular_order": 3},
            "model": {"kind": "linear"},
            "training": {"force_weight": 1.0},
        },
        "start": {"file": "start.xyz"},
        "path": [3.75, 3.0, 2.25],
        "ga": {"population": 8, "generations": 4, "patience": 3},
        "fitness": {"relax": "none"},
        "confirm": {"candidates": 2, "relax": "positions", "fmax": 0.2, "steps": 100, "frame_interval": 10},
        "hull": {"crystals": [str(CRYSTALS / "Li_bcc.xyz"), str(CRYSTALS / "Si_diamond.xyz")]},
    }
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            config[section][name] = value
        else:
            config[section] = value
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_search(config_path: Path, search_class=Search, **kwargs):
    registry = default_registry()
    config = load_search_config(config_path, registry)
    return search_class(config, registry, config_path, **kwargs).run()


def candidate_rows(output: Path) -> list[tuple]:
    with ase_files.connect(output / "candidates.db") as db:
        return sorted((r.step, r.genome_hash, r.status, round(r.get("model_energy", 0.0), 8)) for r in db.select())


def final_state(output: Path) -> dict:
    state = json.loads((output / "checkpoint.json").read_text())
    hull = json.loads((output / "hull.json").read_text())
    tables = ("entries", "voltages", "amorphous_voltages", "baseline_voltages", "search_vs_baseline")
    baseline = [{k: v for k, v in entry.items() if k != "wall_time"} for entry in state["baseline"]]
    return {"population": state["ga"]["population"], "baseline": baseline} | {name: hull[name] for name in tables}


def truth_frames(path: Path, noise: float) -> float:
    """Write three 19-atom cells labeled with the Morse reference plus Gaussian force noise of
    ``noise`` eV/Å (a stand-in for a more accurate method) to ``path``; return the noise's RMS."""
    frames, offsets = [], []
    for seed in range(3):
        atoms = amorphous_lisi(19, volume_per_atom=17.0, seed=10 + seed)
        atoms.calc = MorseCalculator()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        offset = np.random.default_rng(seed).normal(0.0, noise, forces.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces + offset)
        atoms.info["method"] = "truth"
        frames.append(atoms)
        offsets.append(offset)
    ase.io.write(path, frames, format="extxyz")
    return float(np.sqrt(np.mean(np.concatenate(offsets) ** 2)))


def test_search_runs_the_loop_and_writes_the_phase_diagram(tmp_path, capsys):
    noise = truth_frames(tmp_path / "truth.xyz", noise=0.1)
    truth_frames(tmp_path / "holdout.xyz", noise=0.0)
    config = tiny_config(
        tmp_path, fitness={"relax": "positions", "fmax": 0.2, "steps": 40}, holdout=["holdout.xyz"], holdout_truth=["truth.xyz"]
    )
    result = run_search(config)
    output = tmp_path / "out"
    # against the truth, the reference errs by exactly the noise added to its own forces, and a
    # model by its error against the reference combined with that noise (independent of it)
    assert result.reference_truth["force_rmse_eV_per_A"] == pytest.approx(noise, rel=1e-6)
    for model in result.models:
        assert model["truth"]["force_rmse_eV_per_A"] ** 2 == pytest.approx(model["holdout"]["force_rmse_eV_per_A"] ** 2 + noise**2, rel=0.2)
    print_search_summary(result)
    assert "the reference itself" in capsys.readouterr().out
    assert [s.step for s in result.steps] == [0, 1]
    for record in result.steps:
        assert record.n_li_removed == 3 and record.evaluated > 0 and record.confirmed == 2
        assert record.model_force_rmse_eV_per_A is not None and record.new_labels >= 2
    assert [round(s.x_to, 2) for s in result.steps] == [3.0, 2.25]
    for name in ("hull.png", "voltage.png", "ga_convergence.png", "hull.csv", "voltage.csv", "hull.json"):
        assert (output / name).stat().st_size > 0
    kinds = {row["kind"] for row in result.hull}
    assert {"crystal", "start", "step 1", "step 2"} <= kinds
    assert result.voltages and result.voltages[0]["x_low"] == 0.0
    with ase_files.connect(output / "candidates.db") as db:
        rows = list(db.select())
        for step in (1, 2):
            keys = [r.genome_hash for r in rows if r.step == step]
            assert len(keys) == len(set(keys)) == result.steps[step - 1].evaluated  # none evaluated twice
        for row in rows:
            assert {"generation", "operator", "parents", "model_hash", "relax", "status"} <= set(row.key_value_pairs)
            assert row.model_hash.startswith("sha256:")  # never a string of digits, which ase.db refuses
        confirmed = [r for r in rows if r.get("confirmed")]
        assert len(confirmed) == 4 and all(r.reference_method == "morse" for r in confirmed)
    # the database grew by the confirmed structures and frames, and every model was retrained on it,
    # each from the one before (warm start)
    assert len(json.loads((output / "checkpoint.json").read_text())["models"]) == 3
    reports = [json.loads((output / "models" / f"model_{k}_report.json").read_text()) for k in range(3)]
    assert [r["config"]["initial_model"] for r in reports] == [None] + [str(output / "models" / f"model_{k}.pt") for k in range(2)]


GAP_TERMS = {
    "terms": [
        {"descriptor": {"kind": "distance_2b", "cutoff": 5.0, "theta": 0.5}, "model": {"kind": "gap", "kernel": "linear", "delta": 10.0},
         "training": {"sparse_method": "basis"}},
        {"descriptor": {"kind": "soap", "cutoff": 4.0, "n_max": 4, "l_max": 3}, "model": {"kind": "gap", "zeta": 2, "delta": 0.1}},
    ],
    "training": {"n_sparse": 30, "sigma_energy": 0.001, "sigma_force": 0.01},
    "warm_start": False,
}


def test_a_search_with_a_gap_of_two_terms_refits_it_at_every_step(tmp_path):
    """``potential.terms`` as in ``pesmith train``: 2-body + SOAP GAP models, each refitted from
    scratch on the growing database, as accurate on their validation split as the linear model
    of the other tests (0.07 eV/Å)."""
    result = run_search(tiny_config(tmp_path, potential=GAP_TERMS, fitness={"relax": "positions", "fmax": 0.2, "steps": 40}))
    output = tmp_path / "out"
    assert [s.confirmed for s in result.steps] == [2, 2]
    for k in range(3):
        report = json.loads((output / "models" / f"model_{k}_report.json").read_text())
        assert report["config"]["initial_model"] is None
        assert [term["model"]["kind"] for term in report["config"]["terms"]] == ["gap", "gap"]
    assert [m["step"] for m in result.models] == [0, 1, 2]
    assert all(m["metrics"]["force_rmse_eV_per_A"] < 0.15 for m in result.models)


EXPLORE = {"frames": 3, "interval": 5, "temperature_K": 500.0, "timestep_fs": 1.0}
SHORT_QUENCH = {"melt_quench": {"melt_K": 1200.0, "melt_ps": 0.02, "quench_ps": 0.04, "final_K": 300.0, "timestep_fs": 2.0, "interval": 10},
                "relax": {"relax": "positions", "fmax": 0.1, "steps": 100}}
POOL = {"anneal": {"candidates": 2, "melt_quenches": 1, "screen": True, **SHORT_QUENCH}, "baseline": {"enabled": True, **SHORT_QUENCH}}


def trained_sizes(lines: list[str]) -> list[int]:
    """Training-set sizes from the search's "model models/model_k.pt: N structures" lines."""
    return [int(re.search(r": (\d+) structures", line).group(1)) for line in lines if line.startswith("model models/")]


@pytest.mark.slow  # two complete search loops
def test_exploration_labels_md_frames_of_the_confirmed_structures_before_retraining(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "explore").mkdir()
    plain_lines, lines = [], []
    run_search(tiny_config(tmp_path / "plain"), echo=plain_lines.append)
    result = run_search(tiny_config(tmp_path / "explore", explore=EXPLORE), echo=lines.append)
    with ase_files.connect(tmp_path / "explore" / "out" / "reference.db") as db:
        for record in result.steps:
            rows = list(db.select(source=f"step {record.step + 1} explore"))
            assert len(rows) == record.explored_frames and record.failed_explore_labels == 0
            assert 0 < record.explored_frames <= 3 * record.confirmed
            if not record.explore_stops:
                assert record.explored_frames == 3 * record.confirmed
            assert all(r.status == "ok" and r.natoms == 19 - 3 * (record.step + 1) for r in rows)
            assert record.explore_force_rmse_eV_per_A is not None and record.wall_time_explore_s > 0
    assert sum("explored 2 structures at 500 K" in line for line in lines) == 2
    # the models after the first are trained on the explored frames too
    sizes, plain = trained_sizes(lines), trained_sizes(plain_lines)
    assert sizes[0] == plain[0] and all(a > b for a, b in zip(sizes[1:], plain[1:]))


def test_cli_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir()
    killed.mkdir()
    env = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1"}
    done = subprocess.run([str(PESMITH), "search", str(tiny_config(straight, explore=EXPLORE, **POOL))], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr

    config = tiny_config(killed, explore=EXPLORE, **POOL)
    process = subprocess.Popen([str(PESMITH), "search", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoint = killed / "out" / "checkpoint.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            state = json.loads(checkpoint.read_text())
        except (OSError, json.JSONDecodeError):
            state = {}
        if state.get("phase") == "baseline" and state.get("step") == 1:  # after step 1's confirmation: killed while it samples
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    status = subprocess.run([str(PESMITH), "search", str(config), "--status"], capture_output=True, text=True, env=env, timeout=120)
    assert "phase baseline" in status.stdout
    resumed = subprocess.run([str(PESMITH), "search", str(config), "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert candidate_rows(killed / "out") == candidate_rows(straight / "out")
    assert final_state(killed / "out") == final_state(straight / "out")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"path": [3.75, 3.9]}, "must decrease"),
        ({"ga": {"population": 1}}, "ga.population"),
        ({"ga": {"mutation_rate": 1.5}}, "ga.mutation_rate"),
        ({"ga": {"population": 4, "generations": 2}, "confirm.candidates": 9}, "more than the GA can evaluate"),
        ({"potential.training": {"epochs": 3}}, "potential.training.epochs"),
        ({"anneal": {"candidates": 1}}, "anneal.candidates + anneal.melt_quenches (1) is fewer than confirm.candidates (2)"),
        ({"anneal": {"candidates": 2, "melt_quench": {"timestep_fs": 50.0}}}, "anneal.melt_quench.timestep_fs"),
        ({"anneal": {"screen": True}}, "anneal.screen ranks the annealed pool"),
        ({"baseline": {"enabled": True, "draws": 0}}, "baseline.draws"),
        ({"baseline": {"enabled": True, "melt_quench": {"melt_K": 20000.0}}}, "baseline.melt_quench.melt_K"),
    ],
)
def test_cli_bad_search_config_is_one_line_exit_2(tmp_path, change, message):
    config = tiny_config(tmp_path, **change)
    result = subprocess.run([str(PESMITH), "search", str(config)], capture_output=True, text=True, timeout=120, env={**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_start_without_lithium_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    atoms = amorphous_lisi(19, volume_per_atom=17.0, seed=1)
    ase.io.write(tmp_path / "start.xyz", atoms[atoms.numbers == 14])
    with pytest.raises(ConfigError, match="has no Li"):
        run_search(config)
    assert not (tmp_path / "out").exists()


def crash_or_hang(marker_folder: str, model_path: str, settings, threads: int, atoms):
    """Fitness that kills its process on the first structure it sees and hangs on the second
    (once each across processes, through marker files), else the model's relaxation."""
    for name, act in (("crash", lambda: os._exit(9)), ("hang", lambda: time.sleep(600))):
        try:
            os.close(os.open(os.path.join(marker_folder, name), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        from pesmith.parallel import call_with_time_limit

        def misbehave(_):
            act()

        from pesmith.errors import LabelingFailed
        from pesmith.simulate.relax import Relaxed

        try:
            call_with_time_limit(misbehave, atoms, settings.time_limit)
        except LabelingFailed as exc:
            return Relaxed(reason=str(exc))
    return relax_with_model(model_path, settings, threads, atoms)


class TrappedSearch(Search):
    marker_folder = ""

    def _fitness_task(self, model_path):
        return partial(crash_or_hang, self.marker_folder, model_path, self.config.fitness, self.worker_threads)


@pytest.mark.slow  # a complete search loop
def test_a_crashing_and_a_hanging_evaluation_fail_only_their_candidates(tmp_path):
    TrappedSearch.marker_folder = str(tmp_path)
    config = tiny_config(tmp_path, workers=2, path=[3.75, 3.0], fitness={"relax": "none", "time_limit": 3.0})
    result = run_search(config, TrappedSearch)
    assert (tmp_path / "crash").exists() and (tmp_path / "hang").exists()
    with ase_files.connect(tmp_path / "out" / "candidates.db") as db:
        reasons = sorted(r.reason for r in db.select(status="failed"))
    assert len(reasons) == 2
    assert any("died" in r for r in reasons) and any("time limit of 3 s" in r for r in reasons)
    assert result.steps[0].failed_evaluations == 2 and result.steps[0].confirmed == 2


@pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")  # the pool's MD takes the linear model far from its data
def test_two_mpi_ranks_match_the_serial_search(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "mpi"
    serial.mkdir()
    parallel.mkdir()
    # one training thread in both: by default rank 0 trains on the cores the other ranks leave it
    same = {"path": [3.75, 3.0], "explore": EXPLORE, "potential.training": {"force_weight": 1.0, "threads": 1}, **POOL}
    run_search(tiny_config(serial, **same))
    command = mpi_label_command(tiny_config(parallel, **same), ranks=3)
    command[command.index("label")] = "search"
    env = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=MPI_TIMEOUT_S, env=env)
    assert result.returncode == 0, result.stderr
    assert candidate_rows(parallel / "out") == candidate_rows(serial / "out")
    assert final_state(parallel / "out") == final_state(serial / "out")


def reversed_map(fn, items, workers=1, progress=False, description=""):
    """A map whose results arrive in the reverse order: as parallel workers may finish them."""
    return reversed(list(parallel_map(fn, items)))


@pytest.mark.slow  # two complete search loops
def test_the_order_in_which_workers_finish_does_not_change_the_search(tmp_path):
    inorder, reversed_ = tmp_path / "inorder", tmp_path / "reversed"
    inorder.mkdir()
    reversed_.mkdir()
    run_search(tiny_config(inorder, path=[3.75, 3.0], explore=EXPLORE))
    run_search(tiny_config(reversed_, path=[3.75, 3.0], explore=EXPLORE), map_fn=reversed_map)
    assert final_state(reversed_ / "out") == final_state(inorder / "out")
    models = [json.loads((folder / "out" / "checkpoint.json").read_text())["models"] for folder in (inorder, reversed_)]
    assert [m["metrics"] for m in models[1]] == [m["metrics"] for m in models[0]]


@pytest.mark.parametrize("driver", ["model", "reference"])
@pytest.mark.slow  # a complete search loop per driver
def test_start_made_by_melt_quench(tmp_path, driver):
    melt = {"melt_K": 2000.0, "melt_ps": 0.1, "quench_ps": 0.1, "final_K": 300.0, "interval": 50}
    config = tiny_config(tmp_path, start={"atoms": 19, "melt_quench": melt, "driver": driver}, path=[3.75, 3.0])
    lines = []
    result = run_search(config, echo=lines.append)
    name = "models/model_0.pt" if driver == "model" else "morse"
    assert any(line.startswith("start: Li15Si4 at") and f"with {name} (200 MD steps" in line for line in lines), lines
    start = ase.io.read(tmp_path / "out" / "structures" / "start.xyz")
    assert start.get_chemical_formula() == "Li15Si4"
    assert result.steps[0].confirmed == 2


@pytest.mark.slow  # a complete search loop
def test_the_last_step_to_pure_silicon_has_one_arrangement(tmp_path):
    result = run_search(tiny_config(tmp_path, path=[3.75, 0.0], confirm={"candidates": 2, "relax": "positions", "fmax": 0.2, "steps": 100}))
    [step] = result.steps
    assert step.arrangements == 1 and step.evaluated == 1 and step.confirmed == 1
    assert step.n_li_removed == 15
    assert any(row["kind"] == "step 1" and row["formula"] == "Si4" for row in result.hull)


@pytest.mark.slow  # two complete search loops
def test_diversity_filter_skips_candidates_too_similar_to_one_picked(tmp_path):
    confirm = {"candidates": 2, "relax": "positions", "fmax": 0.2, "steps": 100, "frame_interval": 10}
    (tmp_path / "loose").mkdir()
    (tmp_path / "strict").mkdir()
    loose = run_search(tiny_config(tmp_path / "loose", path=[3.75, 3.0], confirm=confirm))
    strict = run_search(tiny_config(tmp_path / "strict", path=[3.75, 3.0], confirm=confirm | {"diversity": 2.0}))  # every pair differs by less
    assert loose.steps[0].candidates == 2 and strict.steps[0].candidates == strict.steps[0].confirmed == 1


@pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")  # melt-quenches with the first linear model
@pytest.mark.slow  # a complete search loop
def test_start_is_the_lowest_of_a_pool_of_model_melt_quenches(tmp_path, monkeypatch):
    """start.pool: each random cell is melt-quenched and relaxed with the first model; the one
    with the lowest model energy is what the reference relaxes as the start (workers: 1 runs
    the map in this process, so the pool's results can be recorded)."""
    from pesmith.search.phases import anneal as anneal_phase

    pool = []

    def recording(*args):
        result = real(*args)
        pool.append(result)
        return result

    real = anneal_phase.anneal_with_model
    monkeypatch.setattr(anneal_phase, "anneal_with_model", recording)
    quench = dict(SHORT_QUENCH["melt_quench"])
    config = tiny_config(tmp_path, start={"atoms": 19, "melt_quench": quench, "driver": "model", "pool": 3},
                         anneal=SHORT_QUENCH, path=[3.75, 3.0])
    lines = []
    run_search(config, echo=lines.append)
    [line] = [line for line in lines if line.startswith("start: the lowest of")]
    ok = [r for r in pool[:3] if r.ok]  # the start's pool comes first
    assert ok and f"the lowest of {len(ok)} Li15Si4 cells" in line and f"({3 - len(ok)} failed;" in line
    lowest = min(ok, key=lambda r: r.energy)
    assert f"{lowest.energy / 19:.4f} eV/atom with the model" in line
    assert len(pool) == 3  # anneal sets only the pool's relaxation here: the step's GA candidates go to the reference as they are
