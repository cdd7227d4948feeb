"""The pure parts of ``scripts/mlearn_test_accuracy.py``: it converts mlearn JSON with the bundled
training files' converter, caches the result, and tabulates metrics (the fit is pesmith train's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from ase.units import GPa

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_script("mlearn_test_accuracy")


def mlearn_entry(group: str, energy: float) -> dict:
    """One mlearn JSON document: two Li atoms in a 3.5 Å cubic cell."""
    cell = np.eye(3) * 3.5
    abc = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]
    return {
        "structure": {
            "lattice": {"matrix": cell.tolist()},
            "sites": [{"species": [{"element": "Li", "occu": 1}], "abc": f, "xyz": (np.array(f) @ cell).tolist()} for f in abc],
        },
        "num_atoms": 2,
        "outputs": {"energy": energy, "forces": [[0.1, 0.0, -0.2], [-0.1, 0.0, 0.2]], "virial_stress": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]},
        "group": group,
        "description": f"{group} test",
    }


def test_converter_is_the_bundled_one(script):
    converter = script.mlearn_converter()
    assert Path(converter.__code__.co_filename).resolve() == (ROOT / "data" / "mlearn" / "convert_mlearn.py").resolve()


def test_test_set_converted_and_cached(script, tmp_path):
    checkout = tmp_path / "mlearn"
    (checkout / "data" / "Li").mkdir(parents=True)
    docs = [mlearn_entry("Elastic", -3.6), mlearn_entry("Surface", -3.5)]
    (checkout / "data" / "Li" / "test.json").write_text(json.dumps(docs))
    cache = tmp_path / "cache"

    xyz, source = script.cached_test_set(checkout, "Li", cache)
    frames = read(xyz, index=":")
    assert [a.info["config_type"] for a in frames] == ["Elastic", "Surface"]
    assert frames[0].get_potential_energy() == pytest.approx(-3.6)
    np.testing.assert_allclose(frames[0].get_forces(), docs[0]["outputs"]["forces"])
    # kbar, VASP order and sign -> eV/Å^3, ASE Voigt order and sign (data/mlearn/README.md)
    np.testing.assert_allclose(frames[0].get_stress(), -np.array([1.0, 2.0, 3.0, 5.0, 6.0, 4.0]) * 0.1 * GPa)
    assert source["member"] == "data/Li/test.json" and len(source["sha256"]) == 64

    stamp = xyz.stat().st_mtime_ns
    assert script.cached_test_set(checkout, "Li", cache)[0].stat().st_mtime_ns == stamp  # reused
    (checkout / "data" / "Li" / "test.json").write_text(json.dumps(docs[:1]))
    assert len(read(script.cached_test_set(checkout, "Li", cache)[0], index=":")) == 1  # the JSON changed


def test_missing_test_set_says_where_to_get_it(script, tmp_path):
    with pytest.raises(FileNotFoundError, match="git clone https://github.com/materialsvirtuallab/mlearn"):
        script.read_mlearn_file(tmp_path, "data/Si/test.json")


def test_rows_by_config_type_and_table(script):
    assert script.rows_by_config_type(["b", None, "a", "b"]) == {"a": [2], "b": [0, 3], "unknown": [1]}
    metrics = {"n_structures": 3, "energy_rmse_meV_per_atom": 0.6543, "energy_mae_meV_per_atom": 0.5,
               "force_rmse_eV_per_A": 0.01449, "force_mae_eV_per_A": 0.01}
    header, line = script.metrics_table([("test", metrics)])
    assert header.split()[:3] == ["set", "n", "E"]
    assert line.split() == ["test", "3", "0.654", "0.500", "0.0145", "0.0100", "nan"]
