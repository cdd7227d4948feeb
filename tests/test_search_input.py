"""What a new user hits in ``pesmith search``: bad input is refused at config load, in one line
on stderr with exit code 2, before anything is labeled or written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
from ase import Atoms
import pytest
import yaml

from pesmith import cli, training
from pesmith.registry import Registry, default_registry
from pesmith.search.config import load_search_config, start_counts
from pesmith.search import loop
from pesmith.search.loop import Search
from pesmith.testing import amorphous_lisi

from test_interrupt import interrupt_self, run_cli
from test_parallel import MPI_TIMEOUT_S, mpi_label_command
from test_search_loop import CRYSTALS, tiny_config

PESMITH = Path(sys.executable).with_name("pesmith")
ENV = {**os.environ, "PESMITH_DISABLE_ENTRY_POINTS": "1", "OMP_NUM_THREADS": "1"}


def edited_config(folder: Path, edit) -> Path:
    """:func:`tiny_config` with ``edit(config_dict, folder)`` applied."""
    path = tiny_config(folder)
    config = yaml.safe_load(path.read_text())
    edit(config, folder)
    path.write_text(yaml.safe_dump(config))
    return path


def run_pesmith(*args, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(PESMITH), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env or ENV)


def assert_refused(config: Path, *fragments: str) -> str:
    """The console script refuses ``config``: exit 2, one line on stderr holding every fragment,
    no traceback, and the output folder was not created (no checkpoint to block a fixed rerun)."""
    result = run_pesmith("search", config)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not (config.parent / "out").exists()
    return result.stderr


def set_key(key: str, value):
    def edit(config: dict, folder: Path) -> None:
        *sections, name = key.split(".")
        target = config
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value

    return edit


def write_start(atoms_filter):
    """Write ``atoms_filter(Li15Si4 cell)`` as start2.xyz and point start.file at it."""

    def edit(config: dict, folder: Path) -> None:
        ase.io.write(folder / "start2.xyz", atoms_filter(amorphous_lisi(19, volume_per_atom=17.0, seed=1)))
        config["start"]["file"] = "start2.xyz"

    return edit


def without_three_li(atoms):
    li = [i for i, z in enumerate(atoms.numbers) if z == 3]
    del atoms[li[:3]]
    return atoms


def with_oxygen(atoms):
    atoms.numbers[list(atoms.numbers).index(3)] = 8
    return atoms


MISSING_FILES = {
    "initial.labeled": set_key("initial.labeled", ["labeled_typo.xyz"]),
    "hull.crystals": set_key("hull.crystals", [str(CRYSTALS / "Li_bcc.xyz"), str(CRYSTALS / "Si_diamnd.xyz")]),
    "start.file": set_key("start.file", "strat.xyz"),
    "initial.generate.crystals": set_key("initial.generate.crystals", [str(CRYSTALS / "Li_bcc.xyz"), "Li13Si4_typo.xyz"]),
    "holdout": set_key("holdout", ["holdout_typo.xyz"]),
    "holdout_truth": set_key("holdout_truth", ["gpaw_typo.xyz"]),
}


@pytest.mark.parametrize("key", list(MISSING_FILES))
def test_a_missing_file_is_refused_at_load_naming_the_key(tmp_path, key):
    config = edited_config(tmp_path, MISSING_FILES[key])
    stderr = assert_refused(config, f"key '{key}'", "is not a file")
    assert str(config) in stderr


@pytest.mark.parametrize(
    "crystals, fragment",
    [
        (["Li_bcc.xyz", "Li13Si4.xyz"], "has no pure Si crystal"),
        (["Li13Si4.xyz", "Li15Si4.xyz"], "has no pure Li and no pure Si crystal"),
        (["Li_bcc.xyz", "Si_diamond.xyz", "oxide.xyz"], "(O2) is not a Li-Si structure"),
    ],
)
def test_hull_crystals_without_the_elements_are_refused_at_load(tmp_path, crystals, fragment):
    """Found at the end of the search, after hours, before the check at load."""
    ase.io.write(tmp_path / "oxide.xyz", Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.2]], cell=[5, 5, 5], pbc=True))
    paths = [str(tmp_path / name if name == "oxide.xyz" else CRYSTALS / name) for name in crystals]
    assert_refused(edited_config(tmp_path, set_key("hull.crystals", paths)), "key 'hull.crystals'", fragment)


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (write_start(without_three_li), ["Li12Si4", "path starts at x = 3.75"]),
        (write_start(lambda a: a[a.numbers == 14]), ["has no Li"]),
        (write_start(with_oxygen), ["must hold Li and Si only"]),
    ],
    ids=["wrong composition", "no Li", "other element"],
)
def test_a_start_file_off_the_path_is_refused_at_load(tmp_path, edit, fragments):
    config = edited_config(tmp_path, edit)
    assert_refused(config, "key 'start.file'", "start2.xyz", *fragments)


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (set_key("path", [3.75, 3.7, 3.0]), ["step 1 (x = 3.75 -> 3.7) removes no Li", "Li15Si4 -> Li15Si4", "fewer steps"]),
        (
            lambda c, f: (set_key("path", [3.75, 3.0, 2.9])(c, f), c.__setitem__("start", {"atoms": 19})),
            ["step 2 (x = 3.0 -> 2.9) removes no Li", "start.atoms: 19 gives Li15Si4", "raise start.atoms"],
        ),
    ],
    ids=["start file", "melt-quench"],
)
def test_a_step_that_removes_no_lithium_is_refused_at_load(tmp_path, edit, fragments):
    assert_refused(edited_config(tmp_path, edit), "key 'path'", *fragments)


def test_start_repeat_makes_a_supercell_of_the_start_file(tmp_path):
    """The 3.75 -> 3.7 step removes no Li from 4 Si but one from the 3 x 1 x 1 supercell's 12."""
    def edit(config, folder):
        set_key("path", [3.75, 3.7, 3.0])(config, folder)
        config["start"]["repeat"] = [3, 1, 1]

    config = load_search_config(edited_config(tmp_path, edit), default_registry())
    assert start_counts(config, tmp_path / "c.yaml") == (45, 12)
    assert_refused(edited_config(tmp_path, set_key("start.repeat", [0, 1, 1])), "start.repeat")


@pytest.mark.parametrize(
    "key, value",
    [
        ("start.melt_quench.timestep_fs", 0.001),
        ("start.melt_quench.timestep_fs", 50.0),
        ("start.melt_quench.melt_K", 20000.0),
        ("explore.timestep_fs", 0.0),
        ("explore.temperature_K", -300.0),
    ],
)
def test_magnitudes_that_cannot_be_meant_are_refused(tmp_path, key, value):
    assert_refused(edited_config(tmp_path, set_key(key, value)), key)


def test_a_population_larger_than_the_arrangements_is_noted(tmp_path):
    config = edited_config(tmp_path, lambda c, f: (set_key("path", [3.75, 3.5, 2.0])(c, f), set_key("ga.population", 20)(c, f)))
    notes = []
    load_search_config(config, default_registry(), warn=notes.append)
    assert len(notes) == 1, notes  # step 2 removes 6 of 14 Li: 3003 arrangements
    assert "step 1 (x = 3.75 -> 3.5) has 15 distinct arrangements (remove 1 of 15 Li), fewer than ga.population (20)" in notes[0]


TASKS = '''
import os, time

def pid_then_sleep(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(600)
'''
MAPPER = '''
import sys
import time
sys.path.insert(0, sys.argv[1])
from pesmith.parallel import parallel_map
from tasks import pid_then_sleep
list(parallel_map(pid_then_sleep, [sys.argv[1]] * 2, workers=2))
'''


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (R, S, Z, ...), ``None`` once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_local_workers_and_the_forkserver_exit_when_the_caller_is_killed(tmp_path):
    (tmp_path / "tasks.py").write_text(TASKS)
    pids = tmp_path / "pids"
    pids.mkdir()
    caller = subprocess.Popen([sys.executable, "-c", MAPPER, str(pids)], env=ENV, cwd=tmp_path)
    try:
        wait_until(lambda: len(list(pids.iterdir())) == 2, 120, "both workers started their task")
        workers = [int(p.name) for p in pids.iterdir()]
        forkserver = parent_of(workers[0])
        assert forkserver != caller.pid and parent_of(forkserver) == caller.pid
    finally:
        caller.kill()  # SIGKILL: nothing of the caller runs after it
        caller.wait()
    gone = lambda: all(process_state(pid) in (None, "Z") for pid in [*workers, forkserver])  # noqa: E731
    wait_until(gone, 10, f"workers {workers} and forkserver {forkserver} exited after the caller's SIGKILL")


# ------------------------------------------------------------------ Ctrl-C, fixing a config in place


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler in-process (a shell's background job inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def builtin_registry(monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))




def test_a_config_fixed_in_place_runs_and_ctrl_c_keeps_the_checkpoint_for_resume(
    tmp_path, monkeypatch, capsys, python_sigint_handler, builtin_registry
):
    config = edited_config(tmp_path, MISSING_FILES["hull.crystals"])
    assert_refused(config, "key 'hull.crystals'")  # a typo: refused at load, nothing written
    tiny_config(tmp_path)  # the same file, fixed in place
    checkpoint = tmp_path / "out" / "checkpoint.json"
    monkeypatch.setitem(loop.RUN, "initial", interrupt_self)
    code, _, err = run_cli(capsys, "search", config)
    assert code == 130
    assert err == f"interrupted: {checkpoint} is kept; `pesmith search {config} --resume` continues the search\n"
    assert json.loads(checkpoint.read_text())["phase"] == "initial"
    code, out, err = run_cli(capsys, "search", config, "--resume")  # the kept checkpoint is this config's
    assert code == 130 and f"resuming {tmp_path / 'out'}: phase initial, before step 1" in out
    assert err.count("\n") == 1 and "--resume" in err


def test_ctrl_c_in_the_search_s_training_ends_the_search_instead_of_the_fit_only(
    tmp_path, monkeypatch, capsys, python_sigint_handler, builtin_registry
):
    """`pesmith train` keeps a fit's best epoch on Ctrl-C and returns; inside a search the same
    Ctrl-C ends the search (the model is retrained on --resume), it does not go on to the GA."""
    potential = {"descriptor": {"kind": "chebyshev", "radial_cutoff": 5.0, "angular_cutoff": 4.0, "radial_order": 4, "angular_order": 2},
                 "model": {"kind": "nn", "hidden": [4]}, "training": {"epochs": 20, "batch_size": 8, "progress": False}}
    config = tiny_config(tmp_path, potential=potential)
    real_evaluate, epochs = training.evaluate, []

    def evaluate_interrupted_in_epoch_2(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 2:  # the fit has a best epoch to keep, as `pesmith train` would on Ctrl-C
            interrupt_self()
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", evaluate_interrupted_in_epoch_2)
    code, _, err = run_cli(capsys, "search", config)
    assert code == 130 and err.count("\n") == 1 and "is kept; `pesmith search" in err, err
    state = json.loads((tmp_path / "out" / "checkpoint.json").read_text())
    assert state["phase"] == "train" and state["models"] == []


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_in_a_search_with_local_workers_is_one_line_exit_130_and_ends_the_workers(tmp_path):
    config = tiny_config(tmp_path)
    search = subprocess.Popen(
        [str(PESMITH), "search", str(config), "--workers", "2"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a foreground job gets it
    )
    try:
        # the forkserver, the resource tracker and two workers: the pool is kept from map to map
        wait_until(lambda: (tmp_path / "out" / "checkpoint.json").exists() and len(descendants(search.pid)) >= 4, 120, "workers started")
        below = descendants(search.pid)
        search.send_signal(signal.SIGINT)
        _, stderr = search.communicate(timeout=60)
    finally:
        search.kill()
    assert search.returncode == 130, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("interrupted: ") and f"pesmith search {config} --resume" in stderr
    wait_until(lambda: all(process_state(pid) in (None, "Z") for pid in below), 10, f"processes {below} ended")


# ------------------------------------------------------------------ MPI without mpi4py.futures


@pytest.mark.parametrize("variables", [{"PMI_SIZE": "3", "PMI_RANK": "{rank}"}, {"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "{rank}"}])
def test_ranks_started_without_mpi4py_futures_are_refused_with_the_right_command(tmp_path, variables):
    config = tiny_config(tmp_path)
    for rank in range(3):
        env = {**ENV, **{name: value.format(rank=rank) for name, value in variables.items()}}
        result = run_pesmith("search", config, env=env)
        assert result.returncode == 2, result.stderr
        if rank == 0:
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
            assert f"run `mpiexec -n 3 python -m mpi4py.futures -m pesmith search {config}`" in result.stderr
        else:
            assert result.stderr == ""  # one line for the user, not one per rank
    assert not (tmp_path / "out").exists()


def test_mpiexec_without_mpi4py_futures_is_one_line_exit_2(tmp_path):
    config = tiny_config(tmp_path)
    command = mpi_label_command(config, ranks=2)  # skips without mpiexec and mpi4py
    result = subprocess.run([command[0], "-n", "2", str(PESMITH), "search", str(config)], capture_output=True, text=True, timeout=MPI_TIMEOUT_S, env=ENV)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "python -m mpi4py.futures -m pesmith search" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "potential, fragments",
    [
        (
            {"terms": [{"descriptor": {"kind": "distance_2b"}, "model": {"kind": "gap", "kernel": "linear"}},
                       {"descriptor": {"kind": "chebyshev"}, "model": {"kind": "nn"}}]},
            ["key 'potential.terms'", "different model kinds (gap, nn)"],
        ),
        (
            {"descriptor": {"kind": "chebyshev"}, "model": {"kind": "linear"},
             "terms": [{"descriptor": {"kind": "distance_2b"}, "model": {"kind": "gap", "kernel": "linear"}}]},
            ["key 'potential.terms'", "not both"],
        ),
        ({"terms": [{"descriptor": {"kind": "soap", "n_maxx": 4}, "model": {"kind": "gap"}}]}, ["potential.terms[0].descriptor", "n_maxx"]),
        ({"model": {"kind": "gap"}}, ["missing required key 'potential.descriptor'"]),
    ],
    ids=["mixed kinds", "both forms", "term key", "no descriptor"],
)
def test_bad_potential_terms_are_refused_at_load_naming_the_key(tmp_path, potential, fragments):
    assert_refused(edited_config(tmp_path, set_key("potential", potential)), *fragments)


@pytest.mark.parametrize(
    "potential, fragment",
    [
        ({"descriptor": {"kind": "soap", "n_max": 4, "l_max": 3}, "model": {"kind": "gap"}}, "model kind 'gap' is refitted from scratch"),
        (
            {"terms": [{"descriptor": {"kind": "distance_2b"}, "model": {"kind": "gap", "kernel": "linear"}, "training": {"sparse_method": "basis"}},
                       {"descriptor": {"kind": "soap", "n_max": 4, "l_max": 3}, "model": {"kind": "gap"}}]},
            "a sum of terms is refitted from scratch",
        ),
    ],
    ids=["gap", "terms"],
)
def test_a_gap_potential_that_would_warm_start_is_refused_at_load(tmp_path, potential, fragment):
    """Found after the initial set was labeled and model 0 trained, before this check."""
    assert_refused(edited_config(tmp_path, set_key("potential", potential)), "key 'potential.warm_start'", fragment, "warm_start: false")
