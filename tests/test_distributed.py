"""pesmith.distributed: `pesmith train` over MPI ranks (torch.distributed, gloo) equals one rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pesmith import cli
from pesmith.distributed import Ranks, balanced_blocks, check_shareable, rank_threads, shard
from pesmith.errors import DataError
from pesmith.model_file import load_potential
from pesmith.registry import Registry

from conftest import mpiexec, train_config, write_xyz
from test_training import morse_dataset

MPI_TIMEOUT_S = 300  # a hang fails the test; a healthy 2-rank run takes about 15 s
NN = "{kind: nn, hidden: [8]}"
TRAINING = "{epochs: 2, batch_size: 4, force_weight: 0.1, stress_weight: 1.0, seed: 3, progress: false}"


def run_on_ranks(config: Path, ranks: int, launcher: str = "mpiexec") -> subprocess.CompletedProcess:
    """``mpiexec -n ranks python -m pesmith train config`` (or the same under ``torchrun``) in
    the config's folder."""
    env = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1", "OMP_NUM_THREADS": "1"}
    if launcher == "mpiexec":
        command = [str(mpiexec()), "-n", str(ranks), sys.executable, "-m", "pesmith", "train", str(config)]
    else:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
        command = torchrun + ["-m", "pesmith", "train", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=MPI_TIMEOUT_S, env=env, cwd=config.parent)


def configs(tmp_path: Path, n_structures: int, model: str = NN, training: str = TRAINING) -> tuple[Path, Path]:
    """The same train config on ``n_structures`` morse cells in two folders: one rank, two ranks."""
    data = write_xyz(morse_dataset(n_structures, seed=5), tmp_path / "cells.xyz")
    folders = [tmp_path / "one", tmp_path / "two"]
    for folder in folders:
        folder.mkdir()
    return tuple(train_config(folder, data, model, training) for folder in folders)


@pytest.mark.parametrize("launcher", ["mpiexec", "torchrun"])
def test_two_ranks_train_the_model_of_one_rank(tmp_path, builtin_cli, capsys, launcher):
    """6 training cells in minibatches of 4 (shards of 2 + 2, then 1 + 1) and 2 validation cells,
    energy, force and stress terms: the ranks featurize half each, and the gradients and error
    sums are summed over the ranks, so the steps, the metrics and the weights are those of one
    rank up to the order of additions."""
    one, two = configs(tmp_path, 8, NN)
    assert cli.main(["train", str(one)]) == 0
    capsys.readouterr()
    result = run_on_ranks(two, 2, launcher)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("and its report") == 1  # rank 0 alone prints
    reports = [json.loads((config.parent / "out" / "model_report.json").read_text()) for config in (one, two)]
    assert reports[0]["split"] == reports[1]["split"] and reports[0]["split"]["n_train"] == 6
    for ours, theirs in zip(reports[0]["history"], reports[1]["history"]):
        for which in ("train", "validation"):
            assert ours[which].keys() == theirs[which].keys() and "stress_rmse_GPa" in ours[which]
            assert theirs[which] == pytest.approx(ours[which], rel=1e-6)
    for name in ("train", "validation"):
        assert reports[1]["metrics"][name] == pytest.approx(reports[0]["metrics"][name], rel=1e-6)
    registry = Registry(entry_points=False)
    weights = [load_potential(config.parent / "out" / "model.pt", registry)[0].state_dict() for config in (one, two)]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=1e-10)


def test_more_ranks_than_training_structures_is_one_line_and_exit_code_2(tmp_path):
    _, two = configs(tmp_path, 2, NN)  # validation_fraction 0.2 keeps one of two cells for validation
    result = run_on_ranks(two, 2)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "2 ranks cannot share 1 training structure(s)" in lines[0] and "use fewer ranks" in lines[0]
    assert not (two.parent / "out" / "model.pt").exists()


def test_a_closed_form_model_over_ranks_is_refused_in_one_line(tmp_path):
    _, two = configs(tmp_path, 4, "{kind: linear}", "{progress: false}")
    result = run_on_ranks(two, 2)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot be trained over 2 ranks" in lines[0] and "run `pesmith train` on one rank" in lines[0]


def test_shards_of_a_minibatch_cover_it_once_and_differ_by_at_most_one():
    rows = torch.tensor([7, 2, 9, 4, 0])
    shards = [shard(rows, Ranks(rank, 2)) for rank in range(2)]
    assert sorted(torch.cat(shards).tolist()) == sorted(rows.tolist())
    assert [len(s) for s in shards] == [3, 2]
    assert shard(rows, None) is rows


def test_ranks_share_the_cores_and_need_a_structure_each():
    share = max(1, (os.cpu_count() or 1) // 2)
    assert rank_threads(8, Ranks(0, 2)) == min(8, share) and rank_threads(8, None) == 8
    check_shareable(2, Ranks(1, 2), "cells.xyz")
    with pytest.raises(DataError, match="3 ranks cannot share 2 training structure"):
        check_shareable(2, Ranks(0, 3), "cells.xyz")


def test_featurization_blocks_are_consecutive_and_share_the_edges():
    edges = [100, 50, 50, 100, 10, 90]
    blocks = balanced_blocks(edges, 2)
    assert [list(b) for b in blocks] == [[0, 1, 2], [3, 4, 5]]
    assert [list(b) for b in balanced_blocks([5], 3)] == [[], [], [0]]  # fewer structures than ranks: empty blocks
    assert [i for b in balanced_blocks(edges, 4) for i in b] == list(range(6))
