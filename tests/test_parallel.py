"""pesmith.parallel: one map for labeling and the search, on local processes or MPI ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk

from pesmith.plugins.references.morse import Morse
from pesmith.labeling import label_one
from pesmith.parallel import THREAD_VARIABLES, mpi_workers, parallel_map
from pesmith.reference_db import structure_hash
from pesmith.testing import distorted_lisi

from conftest import mpiexec


def square(x: int) -> int:
    return x * x


def pid_of(_: int) -> int:
    return os.getpid()


def parent_pid(_: int) -> int:
    return os.getppid()


def search_path(_: int) -> list[str]:
    return sys.path


def thread_counts(_: int) -> tuple[int, str | None]:
    import torch

    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def blas_threads(_: int) -> int:
    from threadpoolctl import threadpool_info

    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


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


def test_each_worker_gets_its_share_of_the_cores():
    share = max(1, (os.cpu_count() or 1) // 2)
    assert {counts for _, counts in parallel_map(thread_counts, range(6), workers=2)} == {(share, str(share))}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every process gets the one core")
def test_workers_limit_blas_threads_when_the_environment_does_not():
    """The README's command sets no OMP_NUM_THREADS: numpy's OpenBLAS, loaded by the forkserver,
    would then run a thread per core in every worker (2 workers x 2 threads on 2 cores)."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_parallel import blas_threads\nfrom pesmith.parallel import parallel_map\n"
        "if __name__ == '__main__':\n    print(sorted({n for _, n in parallel_map(blas_threads, range(4), workers=2)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == str([max(1, os.cpu_count() // 2)])


def test_workers_are_not_forked_from_the_caller_and_see_its_sys_path():
    """Forkserver children: their parent is the server, not this (torch-threaded) process."""
    assert os.getpid() not in {ppid for _, ppid in parallel_map(parent_pid, range(4), workers=2)}
    for _, path in parallel_map(search_path, range(2), workers=2):
        assert str(Path(__file__).parent) in path  # so tests/flaky_calculators.py reaches workers


def test_a_partial_with_a_reference_object_reaches_the_workers():
    atoms = [distorted_lisi(seed=seed) for seed in range(3)]
    labels = dict(parallel_map(partial(label_one, Morse(), None), atoms, workers=2))
    for index, structure in enumerate(atoms):
        assert labels[index].ok and labels[index].energy == pytest.approx(Morse().label(structure)[0], rel=1e-12)


def test_exceptions_reach_the_caller():
    with pytest.raises(ValueError, match="three"):
        list(parallel_map(fail_on_three, range(6), workers=2))


def die_on_two(x: int) -> int:
    if x == 2:
        os._exit(3)
    return x


def test_the_pool_is_kept_between_maps_and_replaced_after_a_worker_dies():
    first = {pid for _, pid in parallel_map(pid_of, range(8), workers=2)}
    second = {pid for _, pid in parallel_map(pid_of, range(8), workers=2)}
    assert second <= first  # the same processes served both maps (what they loaded stays loaded)
    with pytest.raises(BrokenProcessPool):
        list(parallel_map(die_on_two, range(6), workers=2))
    assert dict(parallel_map(square, range(5), workers=2)) == {i: i * i for i in range(5)}
    assert not {pid for _, pid in parallel_map(pid_of, range(8), workers=2)} & first


def test_no_mpi_without_mpi4py_futures():
    assert mpi_workers() == 0


MPI_TIMEOUT_S = 300  # a hang fails the test instead of blocking CI; a healthy run takes about 10 s


def mpi_label_command(config: Path, ranks: int = 3) -> list[str]:
    """``mpiexec -n ranks python -m mpi4py.futures -m pesmith label config`` (skips without MPI:
    :func:`conftest.mpiexec`)."""
    return [str(mpiexec()), "-n", str(ranks), sys.executable, "-m", "mpi4py.futures", "-m", "pesmith", "label", str(config)]


def run_mpi_label(folder: Path, structures: list) -> subprocess.CompletedProcess:
    """Write ``structures`` and a morse label config to ``folder`` and label them on 3 MPI ranks."""
    ase.io.write(folder / "s.xyz", structures)
    config = folder / "label.yaml"
    config.write_text(yaml.safe_dump({"structures": "s.xyz", "database": "m.db", "reference": {"kind": "morse"}, "progress": False}))
    env = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1"}
    return subprocess.run(mpi_label_command(config), capture_output=True, text=True, timeout=MPI_TIMEOUT_S, env=env)


def test_label_under_mpi4py_futures(tmp_path):
    structures = []
    for seed in range(5):
        atoms = bulk("LiSi", "zincblende", a=5.9)
        atoms.rattle(0.05, seed=seed)
        structures.append(atoms)
    result = run_mpi_label(tmp_path, structures)
    assert result.returncode == 0, result.stderr
    assert "5 structures: 5 labeled, 0 failed" in result.stdout
    with ase.db.connect(str(tmp_path / "m.db")) as db:
        assert db.count(status="ok") == 5


def test_large_cells_under_mpi_match_a_serial_label(tmp_path):
    """Four 512-atom cells: each pickled structure and each row with forces is far above MPI's
    eager limit, so an ASE call that broadcasts from rank 0 (ase.io.read, db.write/select without
    ``serial=True``) would block rank 0 forever; it used to hang here."""
    structures = [distorted_lisi((4, 4, 4), seed=seed) for seed in range(4)]
    result = run_mpi_label(tmp_path, structures)
    assert result.returncode == 0, result.stderr
    assert "4 structures: 4 labeled, 0 failed" in result.stdout
    with ase.db.connect(str(tmp_path / "m.db")) as db:
        stored = {row.structure_hash: row for row in db.select()}
    morse = Morse()
    written = ase.io.read(tmp_path / "s.xyz", index=":")  # what the run read (extxyz rounds positions)
    assert sorted(stored) == sorted(structure_hash(atoms) for atoms in written)
    for atoms in written:
        row = stored[structure_hash(atoms)]
        energy, forces, _ = morse.label(atoms)
        assert row.status == "ok" and row.natoms == 512
        assert row.energy == pytest.approx(energy, rel=1e-12)
        np.testing.assert_allclose(row.forces, forces, rtol=0, atol=1e-10)
