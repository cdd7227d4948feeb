"""Ctrl-C (SIGINT) during `pesmith train`: the best model so far is saved whole, the report says
when, one line on stderr, exit code 130; nothing half-written whatever the timing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk

import pesmith
from pesmith import cli, workflows
from pesmith.registry import Registry

from conftest import tiny_config

PESMITH = Path(sys.executable).with_name("pesmith")
# Enough epochs, and no early stop or learning-rate floor, that only Ctrl-C ends the run.
ENDLESS = {"epochs": 100_000, "patience": 100_000, "lr_patience": 100_000, "batch_size": 4, "seed": 0, "progress": True}
TQDM_DEL_NOISE = re.compile(
    r"Exception ignored in: <function tqdm\.__del__ at 0x[0-9a-f]+>\nTraceback \(most recent call last\):\n(?:  .*\n)+AttributeError: '\w+' object has no attribute '\w+'\n"
)
BARS = re.compile(r"\s*(training|features|evaluating)\b")  # progress-bar text on stderr, not messages
# The models here are fitted on 3 structures: a rattled Si8 cell is outside their feature range.
pytestmark = pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler for the in-process tests: a shell's background job (``cmd &``,
    as CI may start the suite) inherits SIGINT ignored, and pesmith then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def builtin_registry(monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))


class Training:
    """`pesmith train` in a subprocess, its stderr read as it comes (progress bars use \\r)."""

    def __init__(self, config: Path):
        env = dict(os.environ, PESMITH_DISABLE_ENTRY_POINTS="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [str(PESMITH), "train", str(config)],
            cwd=config.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Python turns SIGINT into KeyboardInterrupt only if it starts with the default action,
            # which a shell's background job may not have.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.stderr = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.process.stderr.read1(4096), b""):
            self.stderr.extend(chunk)

    def wait_for_epoch(self, epoch: int, timeout: float = 240.0) -> int:
        """Block until the training bar shows ``epoch`` epochs done; return the count it shows."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [int(n) for n in re.findall(rb"(\d+)/100000\b", bytes(self.stderr))]
            if done and done[-1] >= epoch:
                return done[-1]
            if self.process.poll() is not None:
                pytest.fail(f"training ended before epoch {epoch}:\n{self.stderr.decode()}")
            time.sleep(0.05)
        self.process.kill()
        pytest.fail(f"no epoch {epoch} within {timeout} s:\n{self.stderr.decode()}")

    def wait_for_output(self, pattern: bytes, timeout: float = 240.0) -> None:
        """Block until stderr matches ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, bytes(self.stderr)):
                return
            if self.process.poll() is not None:
                pytest.fail(f"training ended before {pattern!r} was printed:\n{self.stderr.decode()}")
            time.sleep(0.05)
        self.process.kill()
        pytest.fail(f"no {pattern!r} within {timeout} s:\n{self.stderr.decode()}")

    def finish(self, timeout: float = 240.0) -> tuple[int, str, list[str]]:
        """Exit code, stdout and the stderr lines that are not progress bars, after checking
        that there is one such line and no traceback."""
        try:
            self.process.wait(timeout)
        finally:
            self.process.kill()
        stdout = self.process.stdout.read()  # not communicate(): it would read stderr too
        self.reader.join(timeout)
        text = self.stderr.decode()
        # A second Ctrl-C that lands inside tqdm's constructor leaves a half-made bar whose
        # destructor prints an ignored AttributeError (tqdm's own code, a microseconds-wide race).
        text = TQDM_DEL_NOISE.sub("", text)
        assert "Traceback" not in text, text
        # A bar cut short by the second Ctrl-C may leave its clearing spaces, or its unfinished
        # line, before the message.
        messages = [p.strip() for p in re.split(r"[\r\n]+|(?=interrupted )", text) if p.strip() and not BARS.match(p)]
        assert len(messages) == 1, repr(text[-2000:])
        return self.process.returncode, stdout.decode(), messages


def write_endless_config(folder: Path, data: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data, output="out/model.pt", training=ENDLESS), sort_keys=False))
    return path


def energy_of_si8(model_file: Path) -> float:
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.02, seed=1)
    atoms.calc = pesmith.load_calculator(str(model_file))
    return atoms.get_potential_energy()


def test_ctrl_c_saves_the_best_epoch_so_far(tmp_path, small_si_xyz):
    run = Training(write_endless_config(tmp_path, small_si_xyz))
    seen = run.wait_for_epoch(3)
    run.process.send_signal(signal.SIGINT)
    code, stdout, messages = run.finish()

    assert code == 130
    match = re.fullmatch(r"interrupted at epoch (\d+): wrote \S*out/model\.pt \(best epoch (\d+) of (\d+) run\) and its report", messages[0])
    assert match, messages[0]
    epoch, best, run_epochs = map(int, match.groups())
    assert epoch >= seen >= 3 and run_epochs in (epoch - 1, epoch) and 1 <= best <= run_epochs
    assert "energy_rmse_meV_per_atom" in stdout  # the final metrics are printed as after a full run

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "model.pt", "model_config.yaml", "model_parity.png", "model_report.json", "model_report.md"
    ]
    report = json.loads((out / "model_report.json").read_text())
    assert report["interrupted"] == f"at epoch {epoch}"
    assert report["training"]["interrupted_at_epoch"] == epoch and report["training"]["best_epoch"] == best
    assert len(report["history"]) == run_epochs
    assert f"interrupted (Ctrl-C) at epoch {epoch}" in (out / "model_report.md").read_text()
    # The saved weights are the best epoch's, not the last: its validation errors are the metrics.
    best_validation = report["history"][best - 1]["validation"]
    for key in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A"):
        assert report["metrics"]["validation"][key] == pytest.approx(best_validation[key], rel=1e-6)
    assert np.isfinite(energy_of_si8(out / "model.pt"))


def test_second_ctrl_c_never_leaves_a_broken_model_file(tmp_path, small_si_xyz):
    run = Training(write_endless_config(tmp_path, small_si_xyz))
    run.wait_for_epoch(3)
    run.process.send_signal(signal.SIGINT)
    # The first Ctrl-C has ended the fit once the final evaluation's bar shows, so the second is a
    # signal of its own (two pending at once would be one); it lands in the evaluation, the saving
    # or after the exit, which varies from run to run.
    run.wait_for_output(rb"evaluating")
    run.process.send_signal(signal.SIGINT)
    code, _, messages = run.finish()

    assert code == 130
    assert messages[0].startswith("interrupted "), messages
    out = tmp_path / "out"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file or cache left
    if (out / "model.pt").exists():
        assert np.isfinite(energy_of_si8(out / "model.pt"))
    else:
        assert messages[0] == "interrupted before the fit had a model to keep: nothing was written"


def interrupt_self(*args, **kwargs) -> None:
    """SIGINT to this thread (the main one), as Ctrl-C sends it (whatever it replaces is called with): Python runs its handler before
    the next bytecode. ``os.kill(os.getpid(), ...)`` instead lets the kernel deliver it to any of
    the process's threads (torch's, tqdm's), so it could arrive later, after the code under test."""
    signal.raise_signal(signal.SIGINT)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped pesmith's CLI")
    out, err = capsys.readouterr()
    return code, out, err


def test_ctrl_c_while_saving_waits_until_the_model_file_is_whole(tmp_path, small_si_xyz, monkeypatch, capsys):
    real_save = torch.save

    def save_interrupted(payload, path, *args, **kwargs):
        interrupt_self()
        real_save(payload, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_interrupted)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(small_si_xyz, output="out/model.pt")))
    code, _, err = run_cli(capsys, "train", config)

    assert code == 130
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(
        r"interrupted while saving, after every file was written: wrote \S*out/model\.pt \(best epoch [12] of 2 run\) and its report\n",
        err,
    )
    monkeypatch.undo()
    assert np.isfinite(energy_of_si8(tmp_path / "out" / "model.pt"))
    assert len(list((tmp_path / "out").iterdir())) == 5


def test_ctrl_c_during_the_final_evaluation_keeps_the_model_without_metrics(tmp_path, small_si_xyz, monkeypatch, capsys):
    real_predict = workflows.predict_dataset

    def predict_interrupted(*args, **kwargs):
        interrupt_self()
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(workflows, "predict_dataset", predict_interrupted)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(small_si_xyz, output="out/model.pt")))
    code, out, err = run_cli(capsys, "train", config)

    assert code == 130 and out == ""
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(
        r"interrupted during the final evaluation: wrote \S*out/model\.pt \(best epoch [12] of 2 run\) and its report, without metrics\n",
        err,
    )
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["model.pt", "model_config.yaml", "model_report.json", "model_report.md"]
    report = json.loads((tmp_path / "out" / "model_report.json").read_text())
    assert report["interrupted"] == "during the final evaluation" and report["metrics"] == {}
    assert np.isfinite(energy_of_si8(tmp_path / "out" / "model.pt"))


def test_ctrl_c_during_a_fit_without_epochs_writes_nothing(tmp_path, small_si_xyz, monkeypatch, capsys):
    real_cholesky = torch.linalg.cholesky_ex

    def cholesky_interrupted(*args, **kwargs):
        interrupt_self()
        return real_cholesky(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", cholesky_interrupted)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(small_si_xyz, output="out/model.pt", model={"kind": "linear"},
                                                 training={"progress": False})))
    code, out, err = run_cli(capsys, "train", config)

    assert code == 130 and out == ""
    assert err.splitlines() == ["interrupted before the fit had a model to keep: nothing was written"]
    assert list((tmp_path / "out").iterdir()) == []


def test_ctrl_c_while_the_feature_cache_is_removed_saves_without_evaluating(tmp_path, small_si_xyz, monkeypatch, capsys):
    real_cleanup = tempfile.TemporaryDirectory.cleanup

    def cleanup_interrupted(self):
        interrupt_self()
        real_cleanup(self)

    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", cleanup_interrupted)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(small_si_xyz, output="out/model.pt")))
    code, out, err = run_cli(capsys, "train", config)

    assert code == 130 and out == ""
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(
        r"interrupted before the final evaluation: wrote \S*out/model\.pt \(best epoch [12] of 2 run\) and its report, without metrics\n",
        err,
    )
    report = json.loads((tmp_path / "out" / "model_report.json").read_text())
    assert "interrupted_at_epoch" not in report["training"] and report["training"]["epochs_run"] == 2
    assert np.isfinite(energy_of_si8(tmp_path / "out" / "model.pt"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model.pt", "model_config.yaml", "model_report.json", "model_report.md"
    ]  # the cache folder is gone too
