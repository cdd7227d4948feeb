"""search/parallel.py: one map for labeling and the search, on local processes or MPI ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ase.db
import ase.io
import pytest
import yaml
from ase.build import bulk

from pesmith.search.parallel import mpi_workers, parallel_map


def square(x: int) -> int:
    return x * x


def pid_of(_: int) -> int:
    return os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_comes_back_once_with_its_index(workers):
    results = dict(parallel_map(square, range(10), workers=workers))
    assert results == {i: i * i for i in range(10)}


def test_two_workers_are_two_processes():
    assert os.getpid() not in {pid for _, pid in parallel_map(pid_of, range(8), workers=2)}
    assert {pid for _, pid in parallel_map(pid_of, range(3), workers=1)} == {os.getpid()}


def test_exceptions_reach_the_caller():
    with pytest.raises(ValueError, match="three"):
        list(parallel_map(fail_on_three, range(6), workers=2))


def test_no_mpi_without_mpi4py_futures():
    assert mpi_workers() == 0


MPIEXEC = Path(sys.executable).with_name("mpiexec")


@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside the Python interpreter (pip install 'pesmith[mpi]')")
def test_label_under_mpi4py_futures(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py not installed (pip install 'pesmith[mpi]')")
    structures = []
    for seed in range(5):
        atoms = bulk("LiSi", "zincblende", a=5.9)
        atoms.rattle(0.05, seed=seed)
        structures.append(atoms)
    ase.io.write(tmp_path / "s.xyz", structures)
    (tmp_path / "label.yaml").write_text(yaml.safe_dump({"structures": "s.xyz", "database": "m.db", "reference": {"kind": "morse"}, "progress": False}))
    command = [str(MPIEXEC), "-n", "3", sys.executable, "-m", "mpi4py.futures", "-m", "pesmith", "label", str(tmp_path / "label.yaml")]
    env = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    assert "5 structures: 5 labeled, 0 failed" in result.stdout
    with ase.db.connect(str(tmp_path / "m.db")) as db:
        assert db.count(status="ok") == 5
