"""A train config of several terms (``terms: [{descriptor, model}, ...]``): it trains through the
CLI into a model file that loads, and bad ``terms`` are one line naming the key (exit 2)."""

from __future__ import annotations

import json

import pytest
import yaml

from pesmith import cli
from pesmith.model_file import load_potential

from conftest import write_xyz
from test_gap import morse_cells

PAIR = {"descriptor": {"kind": "distance_2b", "cutoff": 6.0, "theta": 0.5, "cutoff_transition_width": 1.0},
        "model": {"kind": "gap", "kernel": "linear", "delta": 1.0}, "training": {"sparse_method": "basis"}}
SOAP = {"descriptor": {"kind": "soap", "cutoff": 4.0, "n_max": 3, "l_max": 3}, "model": {"kind": "gap", "zeta": 2, "delta": 0.3}}


@pytest.fixture(scope="module")
def morse_xyz(tmp_path_factory):
    return write_xyz(morse_cells(10, seed=21), tmp_path_factory.mktemp("terms") / "morse.xyz")


def write(tmp_path, data, **sections) -> str:
    config = {"data": {"train": str(data), "validation_fraction": 0.2, "seed": 0}, **sections, "output": "out/model.pt"}
    config.setdefault("training", {"n_sparse": 10, "sigma_energy": 0.002, "sigma_force": 0.05, "progress": False})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_a_config_of_two_gap_terms_trains_and_its_model_loads(tmp_path, morse_xyz, builtin_cli, registry, capsys):
    config = write(tmp_path, morse_xyz, terms=[PAIR, SOAP])
    assert cli.main(["train", config]) == 0
    report = json.loads((tmp_path / "out" / "model_report.json").read_text())
    sparse = report["training"]["terms"]
    options = {k: v for k, v in PAIR["descriptor"].items() if k != "kind"}
    n_pair = registry.get("descriptor", "distance_2b")(species=["Li", "Si"], **options).n_features  # basis: one per feature
    assert sparse[0] == {"n_sparse": {"Li": n_pair, "Si": n_pair}, "sparse_method": "basis"} and sparse[1]["n_sparse"] == {"Li": 10, "Si": 10}
    assert [t["descriptor"]["kind"] for t in report["config"]["terms"]] == ["distance_2b", "soap"]
    assert "descriptor" not in report["config"] and report["metrics"]["validation"]["energy_rmse_meV_per_atom"] < 20
    potential, _ = load_potential(tmp_path / "out" / "model.pt", registry)
    assert len(potential.terms) == 2
    resolved = yaml.safe_load((tmp_path / "out" / "model_config.yaml").read_text())
    assert resolved["terms"][0]["training"] == PAIR["training"]
    assert "features of term 1" in (tmp_path / "out" / "model_report.md").read_text()


@pytest.mark.parametrize(
    "sections,message",
    [
        ({"terms": []}, "key 'terms' is empty"),
        ({"terms": [PAIR], "descriptor": SOAP["descriptor"]}, "key 'terms': give either terms or descriptor + model, not both"),
        ({"terms": [PAIR, {**SOAP, "descriptor": {"kind": "soapz"}}]}, "key 'terms[1].descriptor.kind': unknown descriptor kind 'soapz'"),
        ({"terms": [PAIR, {**SOAP, "model": {"kind": "gapz"}}]}, "key 'terms[1].model.kind': unknown model kind 'gapz'"),
        ({"terms": [PAIR, {**SOAP, "descriptor": {"kind": "soap", "nmax": 3}}]}, "unknown key 'terms[1].descriptor.nmax'"),
        ({"terms": [{**PAIR, "training": {"sigma_energy": 0.1}}, SOAP]}, "unknown key 'terms[0].training.sigma_energy'"),
        ({"terms": [{**PAIR, "training": {"n_sparse": 0}}, SOAP]}, "key 'terms[0].training.n_sparse'"),
        ({"terms": [PAIR, {**SOAP, "model": {"kind": "nn"}}]}, "key 'terms': terms of different model kinds (gap, nn)"),
        ({"terms": [{**SOAP, "model": {"kind": "nn"}}] * 2, "training": {"epochs": 1}}, "model kind 'nn' cannot be one of several terms"),
        ({"terms": [{"descriptor": SOAP["descriptor"]}]}, "missing required key 'terms.0.model'"),
        ({"model": SOAP["model"]}, "missing required key 'descriptor'"),
    ],
)
def test_bad_terms_are_one_line_naming_the_key(tmp_path, morse_xyz, builtin_cli, capsys, sections, message):
    code = cli.main(["train", write(tmp_path, morse_xyz, **sections)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()
