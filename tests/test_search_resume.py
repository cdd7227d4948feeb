"""Continuing a search whose config was fixed in place, the reasons of a step where everything
failed, and the step numbers that ``--status``, the ``--resume`` line and the log agree on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from functools import partial

from pesmith import ase_files
from pesmith.errors import ConfigError, DataError
from pesmith.registry import default_registry
from pesmith.search import checkpoint
from pesmith.search.config import load_search_config
from pesmith.search.loop import Search
from pesmith.search.relaxation import relax_with_reference
from pesmith.search.status import grouped_reasons
from pesmith.simulate.relax import Relaxed

from test_search_loop import tiny_config
from test_search_state import a_state

PESMITH = Path(sys.executable).with_name("pesmith")
ENV = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1", "OMP_NUM_THREADS": "1"}


def run_pesmith(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(PESMITH), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def reference_rows(output: Path) -> dict[int, tuple]:
    with ase_files.connect(output / "reference.db") as db:
        return {r.id: (r.structure_hash, r.source, r.status, r.get("energy")) for r in db.select()}


# ------------------------------------------------------------------ which changes a resume accepts

CONFIG = {
    "output": "/runs/out", "seed": 3, "reference": {"kind": "morse"}, "initial": {"labeled": []},
    "potential": {"model": {"kind": "linear"}}, "start": {"file": "start.xyz"}, "path": [3.75, 3.0, 2.25],
    "ga": {"population": 8}, "fitness": {"relax": "positions", "fmax": 0.1, "steps": 60},
    "confirm": {"steps": 100}, "hull": {"crystals": ["Li.xyz", "Si.xyz"]}, "holdout": [],
}


def saved_state(tmp_path: Path, **changes) -> Path:
    """The checkpoint of :func:`a_state` (step 1 being confirmed, one model trained), written with CONFIG."""
    state = a_state()
    state.config_hash, state.config = checkpoint.config_hash(CONFIG), checkpoint.stable_config(CONFIG)
    for name, value in changes.items():
        setattr(state, name, value)
    path = tmp_path / "checkpoint.json"
    checkpoint.save(path, state)
    return path


def changed(key: str, value) -> dict:
    config = json.loads(json.dumps(CONFIG))
    *sections, name = key.split(".")
    target = config
    for section in sections:
        target = target[section]
    target[name] = value
    return config


@pytest.mark.parametrize(
    "key, value, keys",
    [
        ("fitness.steps", 300, ["fitness.steps"]),
        ("confirm.steps", 400, ["confirm.steps"]),
        ("ga.population", 16, ["ga.population"]),
        ("path", [3.75, 3.0, 2.0], ["path[2]"]),  # step 2 has not begun
        ("path", [3.75, 3.0, 2.25, 1.5], ["path[3]"]),
        ("workers", 4, []),
        ("progress", False, []),
    ],
)
def test_a_resume_continues_when_the_change_shaped_no_finished_work(tmp_path, key, value, keys):
    path = saved_state(tmp_path)
    config = changed(key, value)
    state, found = checkpoint.resume(path, config, "search.yaml")
    assert found == keys
    assert state.config_hash == checkpoint.config_hash(config) and state.config == checkpoint.stable_config(config)
    assert state.phase == "confirm" and state.confirm.done  # nothing of the finished work dropped


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("seed", 4, "seed"),
        ("reference", {"kind": "lj"}, "reference.kind"),
        ("potential.model", {"kind": "nn"}, "potential.model.kind"),  # model_0 is trained
        ("path", [3.75, 2.9, 2.25], "path[1]"),  # step 1 has begun
        ("path", [3.5, 3.0, 2.25], "path[0]"),  # the start is relaxed
        ("start", {"file": "other.xyz"}, "start.file"),
        ("hull", {"crystals": ["Li.xyz"]}, "hull.crystals"),
        ("initial", {"labeled": ["more.xyz"]}, "initial.labeled"),
    ],
)
def test_a_resume_refuses_a_change_to_finished_work_in_one_line(tmp_path, key, value, named):
    path = saved_state(tmp_path)
    before = path.read_text()
    with pytest.raises(ConfigError) as error:
        checkpoint.resume(path, changed(key, value), "search.yaml")
    message = str(error.value)
    assert "\n" not in message and named in message and "another output folder" in message and "search.yaml" in message
    assert path.read_text() == before


def test_before_training_the_potential_may_still_change(tmp_path):
    path = saved_state(tmp_path, phase="train", step=0, models=[], start=None, steps=[], confirm=None, ga=None, entries=[])
    _, found = checkpoint.resume(path, changed("potential.model", {"kind": "nn"}), "search.yaml")
    assert found == ["potential.model.kind"]


def test_after_the_last_step_the_path_may_not_grow(tmp_path):
    path = saved_state(tmp_path, phase="hull", step=1)
    with pytest.raises(ConfigError, match=r"path\[3\] changed since"):
        checkpoint.resume(path, changed("path", [3.75, 3.0, 2.25, 1.5]), "search.yaml")


def test_a_checkpoint_without_its_config_resumes_with_the_same_config_only(tmp_path):
    path = saved_state(tmp_path, config=None)
    state, found = checkpoint.resume(path, CONFIG, "search.yaml")
    assert found == [] and state.config == checkpoint.stable_config(CONFIG)  # it learns its config
    checkpoint.save(path, state)
    path = saved_state(tmp_path, config=None)
    with pytest.raises(ConfigError, match="does not record the config"):
        checkpoint.resume(path, changed("fitness.steps", 300), "search.yaml")


def test_failure_reasons_are_grouped_by_their_first_line_most_frequent_first():
    reasons = ["fmax 0.1 eV/Å not reached in 60 steps (positions): 0.3"] * 3 + ["RuntimeError: boom\ntraceback"] + [None]
    assert grouped_reasons(reasons) == (
        "3 x 'fmax 0.1 eV/Å not reached in 60 steps (positions): 0.3', 1 x 'RuntimeError: boom', 1 x 'no reason given'"
    )


# ------------------------------------------------------------------ through the console script


@pytest.mark.slow  # a failing search, then a complete resumed loop
def test_every_candidate_failing_names_the_reasons_and_a_fixed_fitness_continues(tmp_path):
    failing = {"relax": "positions", "fmax": 0.001, "steps": 1}
    config = tiny_config(tmp_path, path=[3.75, 3.0], fitness=failing)
    output = tmp_path / "out"
    result = run_pesmith("search", config)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"step 1: all \d+ candidates failed with the model: \d+ x 'fmax 0.001 eV/Å not reached in 1 steps", result.stderr), result.stderr
    assert "raise fitness.steps" in result.stderr and f"pesmith search {config} --resume" in result.stderr
    generations = [line for line in result.stdout.splitlines() if line.startswith("step 1, generation")]
    assert generations and all(line.endswith("failed, best -") for line in generations), result.stdout
    assert "inf" not in result.stdout
    labels = reference_rows(output)
    starts = [key for key, source, _, _ in labels.values() if source == "start"]
    assert starts and len(starts) == len(set(starts))  # the start's labels are written once
    with ase_files.connect(output / "candidates.db") as db:
        failed_candidates = db.count(step=1)
    checkpoint_text = (output / "checkpoint.json").read_text()

    assert "--resume" in run_pesmith("search", config).stderr  # a plain rerun still points to --resume
    tiny_config(tmp_path, path=[3.75, 3.0], fitness=failing, seed=4)
    refused = run_pesmith("search", config, "--resume")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "seed changed since" in refused.stderr and "another output folder" in refused.stderr
    assert (output / "checkpoint.json").read_text() == checkpoint_text

    tiny_config(tmp_path, path=[3.75, 3.0], fitness={"relax": "none"})  # fixed in place
    resumed = run_pesmith("search", config, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert lines[0] == f"resuming {output}: phase ga, at step 1"
    assert lines[1].startswith("config changed since the checkpoint: fitness.") and "fitness.relax" in lines[1]
    assert lines[1].endswith("the GA of step 1 starts again with them")
    after = reference_rows(output)
    assert {k: after[k] for k in labels} == labels  # the labels paid for are kept, not redone
    assert all(source.startswith("step 1 candidate") for k, (_, source, _, _) in after.items() if k not in labels)
    with ase_files.connect(output / "candidates.db") as db:
        rows = list(db.select(step=1))
        assert sum(r.status == "failed" for r in rows) == failed_candidates  # the failed attempt's rows stay
        assert sum(bool(r.get("confirmed")) for r in rows) == 2
    assert json.loads((output / "checkpoint.json").read_text())["phase"] == "done"


@pytest.mark.slow  # a failing search, then a complete resumed loop
def test_a_failed_start_relaxation_continues_once_the_confirm_settings_are_fixed(tmp_path):
    strict = {"candidates": 2, "relax": "positions", "fmax": 0.001, "steps": 2, "frame_interval": 10}
    config = tiny_config(tmp_path, path=[3.75, 3.0], confirm=strict)
    output = tmp_path / "out"
    result = run_pesmith("search", config)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "the reference relaxation failed: fmax 0.001 eV/Å not reached in 2 steps" in result.stderr
    assert "raise confirm.steps" in result.stderr and f"pesmith search {config} --resume" in result.stderr
    labels = reference_rows(output)
    models = sorted(p.name for p in (output / "models").iterdir())

    tiny_config(tmp_path, path=[3.75, 3.0])  # fixed in place
    resumed = run_pesmith("search", config, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert lines[:2] == [
        f"resuming {output}: phase start, before step 1",
        "config changed since the checkpoint: confirm.fmax, confirm.steps; they apply to the work still to do",
    ]
    after = reference_rows(output)
    assert {k: after[k] for k in labels} == labels  # the initial set is not labeled again
    assert not any(line.startswith("initial data") for line in lines)
    assert {"model_0.pt", "model_1.pt"} <= {p.name for p in (output / "models").iterdir()} and "model_0.pt" in models


def failing_for_candidates(reference, settings, interval, atoms):
    """The reference relaxation, failing for the GA's candidates (Li-Si cells of fewer than 19 atoms)."""
    if len(atoms) < 19 and {3, 14} <= set(atoms.numbers):
        return Relaxed(reason="RuntimeError: SCF not converged\nin iteration 40")
    return relax_with_reference(reference, settings, interval, atoms)


class FailingConfirmations(Search):
    def _reference_task(self):
        return partial(failing_for_candidates, self.reference, self.config.confirm, self.config.confirm.frame_interval)


@pytest.mark.slow  # a failing search, then a complete resumed loop
def test_every_confirmation_failing_names_the_reasons_and_they_run_again_after_a_fix(tmp_path):
    config_path = tiny_config(tmp_path, path=[3.75, 3.0])
    registry = default_registry()
    with pytest.raises(DataError) as error:
        FailingConfirmations(load_search_config(config_path, registry), registry, config_path).run()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("step 1: all 2 reference relaxations failed: 2 x 'RuntimeError: SCF not converged'; raise confirm.steps")
    tiny_config(tmp_path, path=[3.75, 3.0], confirm={"candidates": 2, "relax": "positions", "fmax": 0.2, "steps": 120, "frame_interval": 10})
    lines = []
    result = Search(load_search_config(config_path, registry), registry, config_path, echo=lines.append).run(resume=True)
    assert lines[:2] == [
        f"resuming {tmp_path / 'out'}: phase confirm, at step 1",
        "config changed since the checkpoint: confirm.steps; the 2 failed reference relaxations of step 1 run again with them",
    ]
    assert result.steps[0].confirmed == 2 and result.steps[0].failed_confirmations == 0


# ------------------------------------------------------------------ one step number everywhere

STOPPER = '''
import os, signal, sys
from pesmith import cli
from pesmith.search import loop

phase, step = sys.argv[1], int(sys.argv[2])
real = dict(loop.RUN)


def stopping(name):
    def run(ctx):
        if phase in (name, "any") and (step < 0 or ctx.state.step == step):
            os.kill(os.getpid(), signal.SIGKILL)  # the checkpoint says this phase, as after a kill in it
        return real[name](ctx)
    return run


for name in real:
    loop.RUN[name] = stopping(name)
sys.exit(cli.main(sys.argv[3:]))
'''


def run_until(phase: str, state_step: int, *args) -> list[str]:
    """``pesmith *args``, killed as phase ``phase`` begins with ``state.step == state_step``; its log lines."""
    done = subprocess.run([sys.executable, "-c", STOPPER, phase, str(state_step), *map(str, args)], capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.splitlines()


def last_logged_step(lines: list[str]) -> int:
    return [int(m.group(1)) for m in map(re.compile(r"^step (\d+)\b").match, lines) if m][-1]


def status_of(config: Path) -> str:
    result = run_pesmith("search", config, "--status")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0].partition(": ")[2]


@pytest.mark.slow  # a search killed and resumed three times: about a complete loop
def test_status_the_resume_line_and_the_log_name_the_same_step(tmp_path):
    config = tiny_config(tmp_path)
    output = tmp_path / "out"
    # killed as step 2's confirmation begins: the log's last step is 2 ("step 2, generation g")
    lines = run_until("confirm", 1, "search", config)
    assert lines[-1].startswith("step 2, generation")
    assert status_of(config) == "phase confirm, at step 2" and last_logged_step(lines) == 2
    # resumed, then killed as the retraining on step 2's labels begins: the log's last line is step 2's confirmation
    lines = run_until("train", 2, "search", config, "--resume")
    assert lines[0] == f"resuming {output}: phase confirm, at step 2"
    assert lines[-1].startswith("step 2 (x 3.000 -> 2.250)")
    assert status_of(config) == "phase train, at step 2" and last_logged_step(lines) == 2
    lines = run_until("any", -1, "search", config, "--resume")
    assert lines == [f"resuming {output}: phase train, at step 2"]
