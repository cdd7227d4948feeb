"""Why a training stopped: `pesmith train` says it on the console, in the JSON report beside the
model and in the markdown report, for each rule that ends the Adam loop.

A learning rate of 1e-300 moves no weight (the Adam step is ~ the rate), so the monitored loss
repeats exactly from epoch 1 on and early stopping fires at the epoch the patience fixes. One of
1e-7 changes the loss by far less than the plateau threshold of the rate schedule (1e-4 relative),
so the schedule lowers the rate after ``lr_patience`` + 1 epochs."""

from __future__ import annotations

import json
from pathlib import Path

from pesmith import cli

FROZEN_RATE = 1e-300  # an Adam rate whose steps leave every weight (float32 or float64) unchanged
PLATEAU_RATE = 1e-7  # an Adam rate whose steps improve the loss by less than the schedule's threshold


def train_through_the_cli(write_config, tmp_path: Path, capsys, training: dict) -> tuple[dict, str, str]:
    """Run `pesmith train` on the tiny Si config with ``training`` settings; return the report's
    ``training`` section, its markdown report and the console output."""
    config = write_config(output=str(tmp_path / "model.pt"), training={"batch_size": 4, "progress": False, "seed": 0, **training})
    assert cli.main(["train", str(config)]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "model_report.json").read_text())["training"]
    return report, (tmp_path / "model_report.md").read_text(), out


def assert_said_everywhere(report: dict, markdown: str, out: str, stopped_by: str, reason: str) -> None:
    assert report["stopped_by"] == stopped_by
    assert report["stop_reason"] == reason
    assert f"training stopped: {reason}\n" in out
    assert f"- training stopped: {reason}\n" in markdown


def test_a_training_that_runs_all_its_epochs_says_so(write_config, tmp_path, capsys, builtin_cli):
    epochs = 3
    report, markdown, out = train_through_the_cli(write_config, tmp_path, capsys, {"epochs": epochs, "patience": epochs + 1})
    assert report["epochs_run"] == epochs
    reason = f"all {epochs} epochs run (training.epochs), best epoch {report['best_epoch']}"
    assert_said_everywhere(report, markdown, out, "epochs", reason)


def test_early_stopping_names_the_patience_and_the_best_epoch(write_config, tmp_path, capsys, builtin_cli):
    patience, epochs = 2, 20
    training = {"epochs": epochs, "patience": patience, "learning_rate": FROZEN_RATE, "lr_patience": epochs,
                "min_learning_rate": FROZEN_RATE / 10}
    report, markdown, out = train_through_the_cli(write_config, tmp_path, capsys, training)
    assert report["best_epoch"] == 1 and report["epochs_run"] == 1 + patience
    reason = f"early stopping: no validation improvement for {patience} epochs (training.patience = {patience}), best epoch 1"
    assert_said_everywhere(report, markdown, out, "patience", reason)


def test_a_learning_rate_below_the_minimum_stops_the_training(write_config, tmp_path, capsys, builtin_cli):
    epochs, lr_factor, lr_patience = 20, 0.5, 1
    training = {"epochs": epochs, "patience": epochs, "learning_rate": PLATEAU_RATE, "lr_factor": lr_factor,
                "lr_patience": lr_patience, "min_learning_rate": PLATEAU_RATE}
    report, markdown, out = train_through_the_cli(write_config, tmp_path, capsys, training)
    assert report["epochs_run"] == lr_patience + 2  # the first epoch sets the best loss, then lr_patience + 1 without progress
    reason = (
        f"the learning rate fell to {PLATEAU_RATE * lr_factor:.3g}, below training.min_learning_rate = {PLATEAU_RATE:.3g},"
        f" at epoch {report['epochs_run']}, best epoch {report['best_epoch']}"
    )
    assert_said_everywhere(report, markdown, out, "min_learning_rate", reason)
