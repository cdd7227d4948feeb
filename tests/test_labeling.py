"""`pesmith label`: provenance, resume after SIGKILL, failed rows, time limits, bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk

from pesmith import cli, workflows
from pesmith.data import read_dataset
from pesmith.errors import LabelingFailed
from pesmith.parallel import call_with_time_limit
from pesmith.plugins.references.morse import Morse
from pesmith.reference_db import ReferenceDB, structure_hash
from pesmith.plugins.references.ase_calculator import AseReference
from pesmith.registry import Registry

TESTS = Path(__file__).resolve().parent
PESMITH = Path(sys.executable).with_name("pesmith")


@pytest.fixture(autouse=True)
def builtin_registry(monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))


def li_si_cells(n: int, atoms_per_cell: int = 2) -> list:
    """``n`` rattled zinc-blende LiSi cells; formulas differ by cell repeats so tests can target one."""
    cells = []
    for index in range(n):
        atoms = bulk("LiSi", "zincblende", a=5.9).repeat((1, 1, atoms_per_cell // 2))
        atoms.rattle(0.05, seed=index)
        cells.append(atoms)
    return cells


def write_label_config(folder: Path, structures: list, reference: dict, **options) -> Path:
    ase.io.write(folder / "structures.xyz", structures, format="extxyz")
    config = {"structures": "structures.xyz", "database": "labels/ref.db", "reference": reference, "progress": False, **options}
    path = folder / "label.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows(path: Path) -> list:
    with ase.db.connect(str(path)) as db:
        return list(db.select())


def test_morse_labels_with_provenance_and_resumes(tmp_path, capsys):
    structures = li_si_cells(4)
    config = write_label_config(tmp_path, structures + [structures[0].copy()], {"kind": "morse"})
    code, out, _ = run(capsys, "label", config)
    assert code == 0 and "5 structures: 4 labeled, 0 failed, 1 already in" in out  # the duplicate counts as done
    stored = rows(tmp_path / "labels" / "ref.db")
    assert len(stored) == 4
    for row, atoms in zip(stored, structures):
        assert row.status == "ok" and row.method == "morse" and row.code_version.startswith("pesmith")
        assert row.structure_hash == structure_hash(atoms) and row.wall_time >= 0
        assert row.data["parameters"]["cutoff"] == 6.0
    dataset = read_dataset(tmp_path / "labels" / "ref.db")
    assert len(dataset) == 4 and all(s is not None and s.shape == (6,) for s in dataset.stresses)
    assert (tmp_path / "labels" / "ref_label_config.yaml").is_file()
    code, out, _ = run(capsys, "label", config)
    assert code == 0 and "0 labeled, 0 failed, 5 already in" in out
    assert len(rows(tmp_path / "labels" / "ref.db")) == 4


def test_xtb_labels_small_li_si_cells(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(3), {"kind": "xtb", "electronic_temperature": 1000.0})
    code, out, _ = run(capsys, "label", config)
    assert code == 0, out
    stored = rows(tmp_path / "labels" / "ref.db")
    assert [r.status for r in stored] == ["ok"] * 3 and stored[0].code_version.startswith("tblite")
    assert stored[0].data["parameters"]["method"] == "GFN1-xTB"
    assert len(read_dataset(tmp_path / "labels" / "ref.db")) == 3


def flaky_reference(**parameters) -> dict:
    return {"kind": "ase", "calculator": "flaky_calculators.FlakyMorse", "parameters": parameters, "periodic": True}


def test_exception_and_time_limit_leave_failed_rows_and_training_still_reads(tmp_path, capsys):
    structures = li_si_cells(3) + li_si_cells(1, 4) + li_si_cells(1, 6)  # Li2Si2 and Li3Si3 misbehave
    reference = flaky_reference(fail_formula="Li2Si2", slow_formula="Li3Si3", sleep_s=60.0)
    config = write_label_config(tmp_path, structures, reference, workers=2, time_limit=2.0)
    started = time.perf_counter()
    code, out, _ = run(capsys, "label", config)
    assert code == 0 and "3 labeled, 2 failed" in out  # partial failure: exit 0, one line per reason
    reasons = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(reasons) == 2 and all(line.startswith("  1 failed: ") for line in reasons)
    assert time.perf_counter() - started < 50  # the 60 s sleep was cut off
    by_formula = {row.formula: row for row in rows(tmp_path / "labels" / "ref.db")}
    assert by_formula["Li2Si2"].status == "failed" and "SCF did not converge" in by_formula["Li2Si2"].reason
    assert by_formula["Li3Si3"].status == "failed" and "time limit of 2 s exceeded" in by_formula["Li3Si3"].reason
    assert by_formula["LiSi"].status == "ok" and by_formula["Li2Si2"].get("energy") is None
    dataset = read_dataset(tmp_path / "labels" / "ref.db")
    assert len(dataset) == 3 and dataset.species == ("Li", "Si")
    code, out, _ = run(capsys, "label", config)  # failures are not retried by default
    assert "0 labeled, 0 failed, 5 already in" in out


def test_all_failed_exits_1_with_the_reasons_grouped(tmp_path, capsys):
    structures = li_si_cells(3) + li_si_cells(1, 4)  # three LiSi fail alike, Li2Si2 differently
    config = write_label_config(tmp_path, structures, flaky_reference(fail_formula="LiSi", slow_formula="Li2Si2", sleep_s=60.0), time_limit=3.0)
    code, out, err = run(capsys, "label", config)
    assert code == 1 and "0 labeled, 4 failed" in out
    reasons = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(reasons) == 2
    assert reasons[0].startswith("  3 failed: ") and "SCF did not converge for LiSi" in reasons[0]
    assert reasons[1] == "  1 failed: time limit of 3 s exceeded"
    assert err.startswith("error: all 4 structures failed") and len(err.splitlines()) == 1


def test_retry_failed_relabels_them(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(2), flaky_reference(fail_formula="LiSi"))
    assert run(capsys, "label", config)[0] == 1
    assert [r.status for r in rows(tmp_path / "labels" / "ref.db")] == ["failed", "failed"]
    raw = yaml.safe_load(config.read_text())
    raw["retry_failed"] = True
    raw["reference"]["parameters"] = {"fail_formula": "LiSi"}  # same reference: still fails, rows replaced
    config.write_text(yaml.safe_dump(raw))
    code, out, _ = run(capsys, "label", config)
    assert code == 1 and "0 labeled, 2 failed, 0 already in" in out
    assert len(rows(tmp_path / "labels" / "ref.db")) == 2


LABELED_ROWS = "select count(*) from text_key_values where key = 'status' and value = 'ok'"


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "PESMITH_DISABLE_ENTRY_POINTS": "1"}


def test_two_concurrent_runs_on_one_database_label_each_structure_once(tmp_path):
    structures = li_si_cells(8)
    record = tmp_path / "computed.txt"
    # 0.5 s per structure: one run alone takes >= 4 s, so the second starts while the first computes
    config = write_label_config(tmp_path, structures, flaky_reference(delay_s=0.5, record=str(record)))
    processes = [
        subprocess.Popen([PESMITH, "label", config], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err for _, err in outputs]
    computed = record.read_text().split()
    assert sorted(computed) == sorted(structure_hash(a) for a in structures)  # each computed exactly once
    stored = rows(tmp_path / "labels" / "ref.db")
    assert sorted(r.structure_hash for r in stored) == sorted(computed) and all(r.status == "ok" for r in stored)
    labeled = [int(out.split(" labeled")[0].split()[-1]) for out, _ in outputs]
    assert sum(labeled) == 8, [out for out, _ in outputs]


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path, capsys):
    structures = li_si_cells(3)
    config = write_label_config(tmp_path, structures, {"kind": "morse"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = ReferenceDB(tmp_path / "labels" / "ref.db", "morse", Morse().get_config(), Morse().code_version())
    assert store.claim(structures[0], "x", 0) is not None
    assert store.claim(structures[0], "x", 0) is None  # this process is alive: its claim holds
    with ase.db.connect(str(tmp_path / "labels" / "ref.db")) as db:
        db.update(1, pid=dead.pid)
    code, out, _ = run(capsys, "label", config)
    assert code == 0 and "3 labeled, 0 failed, 0 already in" in out
    assert [r.status for r in rows(tmp_path / "labels" / "ref.db")] == ["ok"] * 3


def test_sigkill_mid_run_then_rerun_labels_each_structure_once(tmp_path):
    structures = li_si_cells(12)
    # Two structures are computed; every later calculation waits for the file `gate`, which the
    # killed run never sees: the kill lands mid-run however busy the machine, with 2 rows stored.
    gate = tmp_path / "gate"
    reference = flaky_reference(record=str(tmp_path / "computed.txt"), hold_after=2, gate=str(gate))
    config = write_label_config(tmp_path, structures, reference, workers=2)
    database = tmp_path / "labels" / "ref.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "PESMITH_DISABLE_ENTRY_POINTS": "1"}
    process = subprocess.Popen([PESMITH, "label", config], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    n_rows = 0
    while n_rows < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
        if database.is_file():
            try:
                with closing(sqlite3.connect(database, timeout=0.1)) as connection:
                    n_rows = connection.execute(LABELED_ROWS).fetchone()[0]
            except sqlite3.OperationalError:  # tables not created yet, or a write in progress
                pass
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert n_rows == 2, f"kill at {n_rows} rows; stderr: {process.stderr.read().decode()}"
    assert process.returncode == -signal.SIGKILL
    killed_rows = sum(r.status == "ok" for r in rows(database))  # readable after the kill
    assert killed_rows == 2 and len(rows(database)) == 12  # the others are stale claims of the dead run
    gate.touch()  # the rerun computes without waiting
    result = subprocess.run([PESMITH, "label", config], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{12 - killed_rows} labeled, 0 failed, {killed_rows} already in" in result.stdout
    stored = rows(database)
    assert sorted(r.structure_hash for r in stored) == sorted(structure_hash(a) for a in structures)
    assert all(r.status == "ok" for r in stored)
    assert len(read_dataset(database)) == 12


def test_time_limit_reports_a_dead_child():
    with pytest.raises(LabelingFailed, match="died"):
        call_with_time_limit(os._exit, 3, 10.0)


def test_time_limit_returns_the_value_and_reraises_errors():
    assert call_with_time_limit(abs, -2, 10.0) == 2
    with pytest.raises(TypeError):
        call_with_time_limit(abs, "x", 10.0)


def test_structure_hash_ignores_noise_below_a_micrometre_fraction():
    atoms = li_si_cells(1)[0]
    same = atoms.copy()
    same.positions += 1e-9
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-3
    assert structure_hash(atoms) == structure_hash(same) != structure_hash(moved)


# --- bad input ---------------------------------------------------------------------------------


def assert_user_error(code: int, err: str, *parts: str) -> None:
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for part in parts:
        assert part in err, f"{part!r} not in {err!r}"


def test_unknown_calculator_import_path(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(1), {"kind": "ase", "calculator": "ase.calculators.vaspp.Vasp"})
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, str(config), "cannot import module 'ase.calculators.vaspp'")


def test_wrong_calculator_keyword(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(1), {"kind": "ase", "calculator": "ase.calculators.emt.EMT", "parameters": {"cutoff": 5}})
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, "EMT has no keyword 'cutoff'", "asap_cutoff")


def test_wrong_reference_keyword(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(1), {"kind": "xtb", "temperature": 1000})
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, "unknown key 'reference.temperature'", "electronic_temperature")


def test_structure_without_cell_for_a_periodic_reference(tmp_path, capsys):
    molecule = li_si_cells(1)[0]
    molecule.cell = None
    molecule.pbc = False
    config = write_label_config(tmp_path, li_si_cells(1) + [molecule], {"kind": "xtb"})
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, "structures.xyz, structure 1 (LiSi): no 3D periodic cell", "xtb reference is periodic")


def test_unknown_label_config_key(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(1), {"kind": "morse"}, worker=2)
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, "unknown key 'worker'", "workers")


def test_database_of_another_reference_is_refused(tmp_path, capsys):
    config = write_label_config(tmp_path, li_si_cells(1), {"kind": "morse"})
    run(capsys, "label", config)
    config = write_label_config(tmp_path, li_si_cells(2), {"kind": "morse", "cutoff": 5.0})
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, "holds labels from another reference", "new database")


def test_a_worker_that_dies_stops_the_run_with_a_clear_error_and_keeps_the_labels(tmp_path, capsys):
    structures = li_si_cells(3) + li_si_cells(1, 4)  # Li2Si2 kills its worker process
    config = write_label_config(tmp_path, structures, {"kind": "ase", "calculator": "flaky_calculators.DyingMorse", "parameters": {"die_formula": "Li2Si2"}}, workers=2)
    code, _, err = run(capsys, "label", config)
    assert_user_error(code, err, "a worker process died", "Set time_limit")
    kept = sum(row.status == "ok" for row in rows(tmp_path / "labels" / "ref.db"))
    raw = yaml.safe_load(config.read_text())
    raw["time_limit"] = 30.0
    config.write_text(yaml.safe_dump(raw))
    code, out, _ = run(capsys, "label", config)
    assert f"{3 - kept} labeled, 1 failed, {kept} already in" in out
    assert code == (cli.EXIT_ALL_FAILED if kept == 3 else 0)  # exit 1 when the rerun had only Li2Si2 left, and it failed
    by_formula = {row.formula: row for row in rows(tmp_path / "labels" / "ref.db")}
    assert by_formula["Li2Si2"].status == "failed" and "died" in by_formula["Li2Si2"].reason
    assert sum(row.status == "ok" for row in by_formula.values()) >= 1 and len(rows(tmp_path / "labels" / "ref.db")) == 4


def test_labels_do_not_depend_on_the_number_of_workers(tmp_path, capsys):
    structures = li_si_cells(6)
    energies = {}
    for workers in (1, 2):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        config = write_label_config(folder, structures, {"kind": "morse"}, workers=workers)
        assert run(capsys, "label", config)[0] == 0
        energies[workers] = {r.structure_hash: (r.energy, r.forces.tolist()) for r in rows(folder / "labels" / "ref.db")}
    assert energies[1] == energies[2]


# --- in memory: pesmith.workflows.label --------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_in_memory_labels_equal_the_reference_in_input_order(workers):
    structures = li_si_cells(3) + li_si_cells(1, 4) + li_si_cells(1, 6)
    reference = Morse(cutoff=5.0)
    labels = workflows.label(structures, reference, workers=workers)
    assert len(labels) == len(structures)
    for atoms, label in zip(structures, labels):
        energy, forces, stress = reference.label(atoms)
        assert label.ok and label.energy == energy
        np.testing.assert_array_equal(label.forces, forces)
        np.testing.assert_array_equal(label.stress, stress)
    assert all(atoms.calc is None for atoms in structures)  # the input is left as it was


def test_in_memory_failures_come_back_as_labels_with_a_reason():
    structures = li_si_cells(2) + li_si_cells(1, 4)  # Li2Si2 fails
    reference = AseReference("flaky_calculators.FlakyMorse", {"fail_formula": "Li2Si2"}, periodic=True)
    labels = workflows.label(structures, reference, workers=2)
    assert [label.ok for label in labels] == [True, True, False]
    assert "SCF did not converge for Li2Si2" in labels[2].reason and labels[2].energy is None


def test_in_memory_labeling_uses_the_given_map_and_time_limit():
    calls = []

    def serial_map(fn, items, workers, progress, description):
        calls.append((workers, progress, description))
        return reversed(list(enumerate(map(fn, items))))  # completion order is not input order

    structures = li_si_cells(2) + li_si_cells(1, 6)
    reference = AseReference("flaky_calculators.FlakyMorse", {"slow_formula": "Li3Si3", "sleep_s": 60.0}, periodic=True)
    labels = workflows.label(structures, reference, map_fn=serial_map, workers=3, time_limit=1.0, progress=True)
    assert calls == [(3, True, "labeling with AseReference")]
    assert labels[0].energy == reference.label(structures[0])[0] and labels[1].ok
    assert not labels[2].ok and "time limit of 1 s exceeded" in labels[2].reason


def test_a_lock_file_left_by_a_killed_writer_does_not_block_the_database(tmp_path):
    """ASE's own lock file, left behind by a process killed during a write, made every later
    connection wait forever; pesmith's connections do not use it."""
    from ase.build import bulk

    from pesmith import ase_files

    import threading

    path = tmp_path / "labels.db"
    (tmp_path / "labels.db.lock").touch()

    def write() -> None:
        with ase_files.connect(path) as db:
            db.write(bulk("Si"), status="ok")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the write waits for the stale lock file"
    assert ase_files.connect(path).count() == 1
