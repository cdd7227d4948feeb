"""Command line on bad input: exit code 2 and one clear line on stderr; nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pesmith import cli
from pesmith.errors import ConfigError
from pesmith.model_file import FORMAT_VERSION
from pesmith.registry import Registry

PESMITH = Path(sys.executable).with_name("pesmith")  # the console script of this environment


@pytest.fixture(autouse=True)
def builtin_registry(monkeypatch):
    """The CLI's registry, without whatever outside plugins the environment has installed."""
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *parts: str) -> str:
    """Exit code 2 and exactly one stderr line ``error: ...`` containing every ``part``."""
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("error: ")
    for part in parts:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- configuration ----------------------------------------------------------------------------


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run(capsys, "train", tmp_path / "nope.yaml")
    assert_user_error(code, err, f"config file {tmp_path / 'nope.yaml'} not found")


def test_malformed_yaml_gives_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  train: a.xyz\ndescriptor: {kind: acsf, cutoff: 4.0\nmodel: {kind: nn}\noutput: m.pt\n")
    code, _, err = run(capsys, "train", path)
    assert_user_error(code, err, str(path), "invalid YAML at line 4")


def test_yaml_that_is_not_a_mapping(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text("- data\n- model\n")
    code, _, err = run(capsys, "train", path)
    assert_user_error(code, err, str(path), "expected a mapping of sections", "got list")


@pytest.mark.parametrize(
    "section,kind,available",
    [("descriptor", "soapz", "available: acsf"), ("model", "gapz", "available: committee, gap, linear, nn")],
)
def test_unknown_plugin_kind_lists_available(write_config, capsys, section, kind, available):
    config = write_config(**{section: {"kind": kind}})
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, f"unknown {section} kind '{kind}'", available)


def test_unknown_top_level_key(write_config, capsys):
    config = write_config(optimiser={"kind": "adam"})
    code, _, err = run(capsys, "train", config)
    assert_user_error(
        code, err, str(config), "unknown key 'optimiser'", "valid keys: data, descriptor, model, training, output"
    )


def test_unknown_key_inside_descriptor_lists_valid_ones(write_config, capsys):
    config = write_config(descriptor={"kind": "acsf", "cutoff": 4.0, "n_radials": 3})
    code, _, err = run(capsys, "train", config)
    line = assert_user_error(code, err, str(config), "unknown key 'descriptor.n_radials'", "descriptor kind 'acsf'")
    valid = line.split("valid keys: ", 1)[1].split(", ")
    assert {"kind", "species", "cutoff", "n_radial", "n_angular", "g2_params"} <= set(valid)


def test_unknown_key_inside_model_lists_valid_ones(write_config, capsys):
    config = write_config(model={"kind": "nn", "layers": [4]})
    code, _, err = run(capsys, "train", config)
    line = assert_user_error(code, err, "unknown key 'model.layers'", "model kind 'nn'")
    assert {"hidden", "activation"} <= set(line.split("valid keys: ", 1)[1].split(", "))
    assert "n_features" not in line  # filled in by pesmith, not a user key


@pytest.mark.parametrize(
    "section,key,valid",
    [("training", "epoch", "epochs"), ("data", "validation", "validation_fraction")],
)
def test_unknown_key_inside_builtin_section(write_config, small_si_xyz, capsys, section, key, valid):
    sections = {"training": {"epochs": 2, key: 1}} if section == "training" else {"data": {"train": str(small_si_xyz), key: 0.1}}
    config = write_config(**sections)
    code, _, err = run(capsys, "train", config)
    line = assert_user_error(code, err, f"unknown key '{section}.{key}'", f"valid keys in {section}:")
    assert valid in line.split(f"valid keys in {section}: ", 1)[1].split(", ")


def test_missing_required_key(tmp_path, small_si_xyz, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": str(small_si_xyz)}, "descriptor": {"kind": "acsf"},
                                    "model": {"kind": "nn"}}))
    code, _, err = run(capsys, "train", path)
    assert_user_error(code, err, "missing required key 'output'")


def test_wrong_value_type(write_config, capsys):
    config = write_config(training={"epochs": "ten"})
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, "key 'training.epochs'", "'ten'")


def test_invalid_plugin_value(write_config, capsys):
    config = write_config(descriptor={"kind": "acsf", "cutoff": -1.0})
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, "descriptor.cutoff must be a positive number")


# --- data -------------------------------------------------------------------------------------


def nan_data(folder: Path, small_si_xyz: Path, what: str = "energy") -> Path:
    import ase.io

    structures = ase.io.read(small_si_xyz, index=":")
    if what == "energy":
        structures[2].calc.results["energy"] = float("nan")
    else:
        structures[2].calc.results["forces"][0, 1] = float("nan")
    path = folder / f"nan_{what}.xyz"
    ase.io.write(path, structures, format="extxyz")
    return path


@pytest.mark.parametrize("what,message", [("energy", "energy is nan"), ("forces", "forces contain NaN")])
def test_nan_label_in_data(tmp_path, write_config, small_si_xyz, capsys, what, message):
    data = nan_data(tmp_path, small_si_xyz, what)
    config = write_config(data_path=data)
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, f"{data}, structure 2", message)


def test_labels_of_two_references_are_one_line_unless_allowed(tmp_path, write_config, morse_label_db, capsys):
    first = morse_label_db(tmp_path / "cutoff6.db", 3)
    second = morse_label_db(tmp_path / "cutoff5.db", 3, seed=3, cutoff=5.0)
    data = {"train": [str(first), str(second)], "validation_fraction": 0.25, "seed": 0}
    code, _, err = run(capsys, "train", write_config(data=data))
    assert_user_error(code, err, f"method 'morse' (reference_hash", f"in {first}", f"in {second}", "data.allow_mixed_references: true")
    assert files_in(tmp_path / "out") == []
    code, _, err = run(capsys, "train", write_config(data={**data, "allow_mixed_references": True}))
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "model_report.json").read_text())
    assert report["split"]["n_train"] + report["split"]["n_validation"] == 6
    assert report["config"]["data"]["allow_mixed_references"] is True


def test_missing_data_file(write_config, tmp_path, capsys):
    config = write_config(data_path=tmp_path / "gone.xyz")
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, f"data file {tmp_path / 'gone.xyz'} not found")


def test_failed_train_leaves_no_model_and_no_temp_file(tmp_path, write_config, small_si_xyz, capsys):
    out = tmp_path / "out"
    config = write_config(data_path=nan_data(tmp_path, small_si_xyz))
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, "energy is nan")
    assert files_in(out) == []


def test_failed_train_keeps_the_previous_model(tmp_path, write_config, small_si_xyz, tiny_si_model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    previous = tiny_si_model.read_bytes()
    (out / "model.pt").write_bytes(previous)
    config = write_config(data_path=nan_data(tmp_path, small_si_xyz))
    code, _, err = run(capsys, "train", "--overwrite", config)
    assert_user_error(code, err, "energy is nan")
    assert files_in(out) == ["model.pt"] and (out / "model.pt").read_bytes() == previous


def test_crash_while_saving_leaves_no_temp_file(tmp_path, write_config, tiny_si_model, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    previous = tiny_si_model.read_bytes()
    (out / "model.pt").write_bytes(previous)

    def half_written(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a model")
        raise OSError("No space left on device")

    monkeypatch.setattr("pesmith.model_file.torch.save", half_written)
    with pytest.raises(OSError, match="No space left"):
        cli.main(["train", "--overwrite", str(write_config())])
    assert files_in(out) == ["model.pt"] and (out / "model.pt").read_bytes() == previous


@pytest.mark.parametrize("fraction", [0.1, 0.6])
def test_single_structure_trains_with_a_warning_about_validation(tmp_path, write_config, small_si_xyz, capsys, fraction):
    """One structure: no validation set can be held out; training goes on, and says what that means."""
    import ase.io

    one = tmp_path / "one.xyz"
    ase.io.write(one, ase.io.read(small_si_xyz, index=0), format="extxyz")
    config = write_config(data_path=one, data={"train": str(one), "validation_fraction": fraction, "seed": 0})
    code, _, err = run(capsys, "train", config)
    assert code == 0 and (tmp_path / "out" / "model.pt").is_file()
    assert err.splitlines() == [err.strip()] and err.startswith("warning: no validation set (1 structure(s) leave none")
    assert "lowest loss on the training set itself" in err
    report = json.loads((tmp_path / "out" / "model_report.json").read_text())
    assert report["split"] == {"n_train": 1, "n_validation": 0, "train_indices": [0], "validation_indices": []}


def test_closed_form_fit_without_validation_warns_about_training_errors(tmp_path, write_config, small_si_xyz, capsys):
    """A GAP has no epochs: the warning says its report holds training errors only."""
    gap = {"model": {"kind": "gap", "kernel": "dot_product", "zeta": 2, "delta": 1.0}, "training": {"n_sparse": 8, "sigma_force": 0.1}}
    config = write_config(data={"train": str(small_si_xyz), "validation_fraction": 0.0, "seed": 0}, **gap)
    code, _, err = run(capsys, "train", config)
    assert code == 0 and err.startswith("warning: no validation set (data.validation_fraction is 0)")
    assert "errors on the training set only" in err and "epoch" not in err


# --- model files ------------------------------------------------------------------------------


def test_evaluate_trained_model_writes_json(tiny_si_model, small_si_xyz, tmp_path, capsys):
    target = tmp_path / "metrics" / "si.json"
    code, out, _ = run(capsys, "evaluate", tiny_si_model, small_si_xyz, "--json", target)
    assert code == 0
    assert "energy_rmse_meV_per_atom" in out and "meV/atom" in out
    metrics = json.loads(target.read_text())
    assert metrics["n_structures"] == 4 and np.isfinite(metrics["force_rmse_eV_per_A"])


def test_element_not_in_the_model(tiny_si_model, small_li_xyz, capsys):
    code, _, err = run(capsys, "evaluate", tiny_si_model, small_li_xyz)
    assert_user_error(code, err, "element(s) Li not in this descriptor/model (species: Si)")


def test_missing_model_file(tmp_path, small_si_xyz, capsys):
    code, _, err = run(capsys, "evaluate", tmp_path / "none.pt", small_si_xyz)
    assert_user_error(code, err, f"model file {tmp_path / 'none.pt'} not found")


def test_corrupt_model_file(tmp_path, small_si_xyz, capsys):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = run(capsys, "evaluate", path, small_si_xyz)
    assert_user_error(code, err, str(path), "is not a pesmith model file", "never loads", "`pesmith train`")


def test_foreign_pt_file(tmp_path, small_si_xyz, capsys):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, path)
    code, _, err = run(capsys, "evaluate", path, small_si_xyz)
    assert_user_error(code, err, str(path), "is not a pesmith model file")


def test_truncated_model_file_is_one_whole_sentence(tiny_si_model, tmp_path, small_si_xyz):
    data = tiny_si_model.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    result = console("evaluate", path, small_si_xyz, cwd=tmp_path)
    line = assert_user_error(
        result.returncode, result.stderr, f"{path} is not a readable pesmith model file", "cut short or damaged",
        "written whole by `pesmith train`", "copy it again",
    )
    assert line.endswith("retrain with `pesmith train`")


class Arbitrary:
    """Any Python object: torch.save pickles it, and loading it could run code."""


def test_arbitrary_pickle_is_refused_with_our_own_sentence(tmp_path, small_si_xyz):
    path = tmp_path / "pickle.pt"
    torch.save({"format": "pesmith-model", "object": Arbitrary()}, path)
    result = console("evaluate", path, small_si_xyz, cwd=tmp_path)
    line = assert_user_error(result.returncode, result.stderr, f"{path} is not a pesmith model file", "never loads")
    assert "\x1b" not in line and "can still be loaded" not in line and "weights_only" not in line


def test_model_argument_that_is_a_folder(tmp_path, small_si_xyz, capsys):
    code, _, err = run(capsys, "evaluate", tmp_path, small_si_xyz)
    assert_user_error(code, err, f"model file {tmp_path} is a directory")


def rewritten(model: Path, target: Path, change) -> Path:
    payload = torch.load(model, weights_only=True)
    change(payload)
    torch.save(payload, target)
    return target


def test_newer_format_version(tiny_si_model, tmp_path, small_si_xyz, capsys):
    path = rewritten(tiny_si_model, tmp_path / "future.pt", lambda p: p.update(format_version=FORMAT_VERSION + 1))
    code, _, err = run(capsys, "evaluate", path, small_si_xyz)
    assert_user_error(code, err, f"model format version {FORMAT_VERSION + 1}", "upgrade pesmith")


def test_corrupt_header(tiny_si_model, tmp_path, small_si_xyz, capsys):
    path = rewritten(tiny_si_model, tmp_path / "header.pt", lambda p: p.update(header_json="{not json"))
    code, _, err = run(capsys, "evaluate", path, small_si_xyz)
    assert_user_error(code, err, "corrupt header")


def test_model_file_with_missing_weights_is_one_line(tiny_si_model, tmp_path, small_si_xyz, capsys):
    """BUG: load_state_dict's multi-line RuntimeError is pasted into the ModelFileError
    (core/model_file.py, ``cannot rebuild the model``), so stderr gets three lines."""
    path = rewritten(tiny_si_model, tmp_path / "weights.pt", lambda p: p["model_state"].pop("feature_mean"))
    code, _, err = run(capsys, "evaluate", path, small_si_xyz)
    assert_user_error(code, err, "cannot rebuild the model", "feature_mean")


# --- plugins, debug, console script -----------------------------------------------------------


def test_plugins_lists_kind_name_package_description(capsys):
    code, out, err = run(capsys, "plugins")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "name", "package", "description"]
    rows = {tuple(line.split(None, 3)[:3]): line.split(None, 3)[3] for line in lines[1:]}
    assert rows[("descriptor", "acsf", "pesmith")].startswith("Behler's atom-centered symmetry functions")
    assert ("model", "nn", "pesmith") in rows


def test_plugins_reports_a_broken_plugin_on_stderr(plugin_module, monkeypatch, capsys):
    broken = plugin_module("broken_cli_plugin", "raise ImportError('libxc not found')\n")
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False, modules=[broken]))
    code, out, err = run(capsys, "plugins")
    assert code == 0 and "acsf" in out
    assert err == "failed to load plugin broken_cli_plugin: ImportError: libxc not found\n"


def test_debug_reraises_with_traceback(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        cli.main(["--debug", "train", str(tmp_path / "nope.yaml")])


def console(*argv, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PESMITH_DISABLE_ENTRY_POINTS="1")
    return subprocess.run([str(PESMITH), *map(str, argv)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_console_script_bad_input_exits_2_with_one_line(tmp_path):
    result = console("train", "missing.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: config file missing.yaml not found\n"
    assert result.stdout == ""


def test_console_script_debug_shows_traceback(tmp_path):
    result = console("--debug", "train", "missing.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "pesmith.errors.ConfigError: config file missing.yaml not found" in result.stderr


def test_model_file_permissions_follow_the_umask(tiny_si_model):
    """BUG: save_potential writes through tempfile.mkstemp, whose file is always mode 0600, and
    os.replace keeps that mode: the model is unreadable to the group (shared project folders)."""
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(tiny_si_model.stat().st_mode) == 0o666 & ~umask


# --- start-up ---------------------------------------------------------------------------------

HEAVY_MODULES = ("torch", "matplotlib", "pesmith.training", "pesmith.features")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"]])
def test_help_imports_no_torch(argv):
    """`pesmith --help` and a verb's help must not import torch (seconds before anything prints)."""
    code = (
        "import sys\nfrom pesmith import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert "usage: pesmith" in result.stdout
    assert result.stderr.strip() == "[]"


def test_search_status_reads_the_checkpoint_without_torch(tmp_path):
    """`pesmith search CONFIG --status` reads only the config's output and the checkpoint."""
    config = tmp_path / "search.yaml"
    config.write_text("output: run\nreference: {kind: no-such-plugin}\n")  # nothing else is read
    code = (
        "import sys\nfrom pesmith import cli\ncode = cli.main(sys.argv[1:])\n"
        f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code, "search", str(config), "--status"], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == f"no search has started in {tmp_path / 'run'} (no checkpoint.json)"
    assert result.stderr.strip() == "[]"


def test_plugins_lists_every_plugin_without_importing_one(example_plugin):
    """`pesmith plugins` lists the built-ins and an outside plugin from their registrations alone:
    no plugin class's module is imported, and no torch."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(example_plugin), str(Path(__file__).resolve().parent / "plugin_example")]))
    code = (
        "import sys\nfrom pesmith import cli\ncode = cli.main(['plugins'])\n"
        "classes = ('pesmith.plugins.descriptors.', 'pesmith.plugins.models.', 'pesmith.plugins.references.', 'pesmith_example.plugin')\n"
        f"print([m for m in sys.modules if m in {HEAVY_MODULES!r} or m.startswith(classes)], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    names = [line.split()[1] for line in result.stdout.splitlines()[1:]]
    assert "acsf" in names and "xtb" in names and "example-radial" in names
    assert result.stderr.strip() == "[]"


def test_search_status_without_an_output_key_is_one_line(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text("seed: 0\n")
    assert cli.main(["search", str(config), "--status"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {config}: key 'output' (the run's folder) is missing or not a path"]


# --- structures the models cannot describe ------------------------------------------------------


def changed_data(folder: Path, small_si_xyz: Path, name: str, change) -> Path:
    """``small_si_xyz`` with ``change(atoms)`` applied to structure 2, written to ``folder/name``."""
    import ase.io

    structures = ase.io.read(small_si_xyz, index=":")
    change(structures[2])
    path = folder / name
    ase.io.write(path, structures, format="extxyz")
    return path


def test_evaluate_nan_position_names_file_structure_and_atom(tiny_si_model, small_si_xyz, tmp_path):
    def nan_position(atoms):
        atoms.positions[3, 0] = np.nan

    data = changed_data(tmp_path, small_si_xyz, "nan_position.xyz", nan_position)
    result = console("evaluate", tiny_si_model, data, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert_user_error(result.returncode, result.stderr, f"{data}, structure 2", "atom 3 (Si)", "not finite")


def test_evaluate_two_atoms_on_one_site(tiny_si_model, small_si_xyz, tmp_path, capsys):
    def overlap(atoms):
        atoms.positions[5] = atoms.positions[1]

    data = changed_data(tmp_path, small_si_xyz, "overlap.xyz", overlap)
    target = tmp_path / "metrics.json"
    code, out, err = run(capsys, "evaluate", tiny_si_model, data, "--json", target)
    assert_user_error(
        code, err, f"{data}, structure 2", "atom 1 (Si) and atom 5 (Si) are 0 Å apart", "minimum distance 0.5 Å"
    )
    assert out == "" and not target.exists()


@pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")
def test_calculator_raises_on_overlapping_atoms_instead_of_nan(tiny_si_model):
    import pesmith
    from ase.build import bulk

    from pesmith.errors import DataError

    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.calc = pesmith.load_calculator(str(tiny_si_model))
    assert np.isfinite(atoms.get_potential_energy())
    atoms.positions[7] = atoms.positions[2] + [0.1, 0.0, 0.0]
    with pytest.raises(DataError, match=r"structure Si8: atom 2 \(Si\) and atom 7 \(Si\) are 0.1 Å apart"):
        atoms.get_potential_energy()
    atoms.positions[7, 1] = np.inf
    with pytest.raises(DataError, match=r"structure Si8: atom 7 \(Si\) has position .* not finite"):
        atoms.get_forces()


def test_data_file_that_is_a_directory(write_config, tmp_path, capsys):
    folder = tmp_path / "structures"
    folder.mkdir()
    code, _, err = run(capsys, "train", write_config(data_path=folder))
    assert_user_error(code, err, f"data file {folder} is a directory", "extxyz or ase.db")


def test_yaml_key_written_twice_names_key_and_both_lines(tmp_path, small_si_xyz, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text(
        f"data: {{train: {small_si_xyz}}}\n"
        "training: {epochs: 2, progress: false}\n"
        "descriptor: {kind: acsf, cutoff: 4.0}\n"
        "model: {kind: nn}\n"
        "training: {epochs: 5}\n"
        "output: out/model.pt\n"
    )
    code, _, err = run(capsys, "train", path)
    assert_user_error(code, err, str(path), "key 'training' is written twice, at lines 2 and 5")
    assert not (tmp_path / "out").exists()


def test_yaml_nested_key_written_twice(tmp_path, small_si_xyz, capsys):
    path = tmp_path / "nested.yaml"
    path.write_text(f"data:\n  train: {small_si_xyz}\n  seed: 1\n  seed: 2\n")
    code, _, err = run(capsys, "train", path)
    assert_user_error(code, err, "key 'seed' is written twice, at lines 3 and 4")


def test_yaml_merge_key_may_be_overridden(tmp_path):
    from pesmith.config import read_yaml

    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {epochs: 2, seed: 0}\ntraining:\n  <<: *base\n  epochs: 5\n")
    assert read_yaml(path)["training"] == {"epochs": 5, "seed": 0}


# --- outputs: checked before the work starts ----------------------------------------------------

READ_ONLY = Path("/sys")  # a read-only file system on Linux, also for root (chmod does not stop root)


def read_only_folder() -> Path:
    try:
        with tempfile.TemporaryFile(dir=READ_ONLY):
            pass
    except OSError:
        return READ_ONLY / "pesmith_out"
    pytest.skip(f"{READ_ONLY} is writable here")


def test_train_to_a_read_only_folder_fails_before_training(write_config, tmp_path, capsys, monkeypatch):
    output = read_only_folder() / "model.pt"
    config = write_config(output=str(output))
    monkeypatch.setattr("pesmith.data.read_dataset", lambda *a, **k: pytest.fail("read data before checking output"))
    code, out, err = run(capsys, "train", config)
    assert_user_error(code, err, f"{config}: output {output} cannot be written", str(READ_ONLY), "writable folder")
    assert out == ""


def test_evaluate_json_to_a_read_only_folder_fails_before_evaluating(tiny_si_model, small_si_xyz, capsys):
    target = read_only_folder() / "metrics.json"
    code, out, err = run(capsys, "evaluate", tiny_si_model, small_si_xyz, "--json", target)
    assert_user_error(code, err, f"--json {target} cannot be written", "writable folder")
    assert out == ""


def test_evaluate_json_path_that_is_a_folder(tiny_si_model, small_si_xyz, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate", tiny_si_model, small_si_xyz, "--json", tmp_path)
    assert_user_error(code, err, f"--json {tmp_path} is a directory")
    assert out == ""


def test_second_train_refuses_to_replace_the_first(write_config, tmp_path, capsys):
    config = write_config()
    assert run(capsys, "train", config)[0] == 0
    out = tmp_path / "out"
    written = {name: (out / name).read_bytes() for name in files_in(out)}
    assert set(written) == {"model.pt", "model_report.json", "model_report.md", "model_parity.png", "model_config.yaml"}
    code, _, err = run(capsys, "train", config)
    assert_user_error(code, err, f"{out / 'model.pt'} already exists (and 4 more output(s)", "--overwrite", str(config))
    assert {name: (out / name).read_bytes() for name in files_in(out)} == written
    code, _, err = run(capsys, "train", "--overwrite", config)
    assert code == 0 and err == ""


def test_missing_data_argument_of_evaluate_names_the_argument(tiny_si_model, tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", tiny_si_model, tmp_path / "gone.xyz")
    line = assert_user_error(code, err, f"DATA argument {tmp_path / 'gone.xyz'} not found", "current folder")
    assert "config" not in line


# --- progress on long phases ------------------------------------------------------------------


def test_evaluate_shows_a_progress_bar_on_stderr(tiny_si_model, small_si_xyz, capsys):
    code, out, err = run(capsys, "evaluate", tiny_si_model, small_si_xyz)
    assert code == 0 and "energy_rmse_meV_per_atom" in out
    assert "evaluating si_small.xyz:" in err and "/4 [" in err and "structure/s" in err
    code, quiet, err = run(capsys, "evaluate", tiny_si_model, small_si_xyz, "--no-progress")
    assert code == 0 and err == "" and quiet == out


def test_final_evaluation_after_training_shows_its_progress(write_config, tmp_path, capsys):
    config = write_config(training={"epochs": 2, "batch_size": 4, "seed": 0, "progress": True})
    code, _, err = run(capsys, "train", config)
    assert code == 0
    assert "training:" in err and "evaluating train set:" in err and "/3 [" in err
    assert "evaluating validation set:" in err and "/1 [" in err
    code, _, err = run(capsys, "train", write_config("quiet.yaml", training={"epochs": 2, "progress": False}, output="quiet.pt"))
    assert code == 0 and err == ""


# --- the Robust table's CLI rows once more, through the console script in a subprocess ----------


def _overlap(atoms):
    atoms.positions[5] = atoms.positions[1]


def _robust_case(name: str, tmp_path: Path, small_si_xyz: Path, tiny_si_model: Path) -> tuple[list, list[str]]:
    """argv and the parts the one stderr line must hold, for one row of the Robust table."""
    if name == "two atoms on one site":
        data = changed_data(tmp_path, small_si_xyz, "overlap.xyz", _overlap)
        return ["evaluate", tiny_si_model, data, "--json", tmp_path / "m.json"], ["structure 2", "atom 1 (Si) and atom 5 (Si)"]
    if name == "key written twice":
        path = tmp_path / "twice.yaml"
        path.write_text(f"data: {{train: {small_si_xyz}}}\ntraining: {{epochs: 2}}\ndescriptor: {{kind: acsf}}\nmodel: {{kind: nn}}\ntraining: {{epochs: 5}}\noutput: out/m.pt\n")
        return ["train", path], ["key 'training' is written twice, at lines 2 and 5"]
    if name == "data file is a directory":
        (tmp_path / "folder").mkdir()
        path = tmp_path / "c.yaml"
        from conftest import tiny_config

        path.write_text(yaml.safe_dump(tiny_config(tmp_path / "folder")))
        return ["train", path], ["is a directory"]
    if name == "evaluate without its data file":
        return ["evaluate", tiny_si_model, tmp_path / "gone.xyz"], ["DATA argument", "not found"]
    if name == "evaluate --json under a file":
        (tmp_path / "plain").write_text("")
        return ["evaluate", tiny_si_model, small_si_xyz, "--json", tmp_path / "plain" / "m.json"], ["cannot be written", "is a file, not a folder"]
    if name == "hull without pure Si":
        from test_hull import write_labeled

        write_labeled(tmp_path / "no_si.xyz", [("Li2", -4.0), ("LiSi", -7.6)])
        return ["hull", tmp_path / "no_si.xyz"], ["no pure Si structure", "--references Si="]
    raise KeyError(name)


@pytest.mark.parametrize(
    "name",
    ["two atoms on one site", "key written twice", "data file is a directory", "evaluate without its data file", "evaluate --json under a file", "hull without pure Si"],
)
def test_robust_rows_through_the_console_script(name, tmp_path, small_si_xyz, tiny_si_model):
    argv, parts = _robust_case(name, tmp_path, small_si_xyz, tiny_si_model)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = console(*argv, cwd=tmp_path)
    assert_user_error(result.returncode, result.stderr, *parts)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
