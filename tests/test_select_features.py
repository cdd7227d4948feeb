"""``pesmith select-features``: CUR and greedy column selection, the ``selected`` descriptor it
writes, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from pesmith.cli.app import main
from pesmith.config import load_train_config
from pesmith.errors import ConfigError
from pesmith.feature_selection import select_columns, standardized
from pesmith.structures import build_batch
from pesmith.testing import check_descriptor
from pesmith.workflows import build_potential

from conftest import tiny_config


@pytest.mark.parametrize("method", ["cur", "greedy"])
def test_selection_skips_constant_and_redundant_columns(method):
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(400, 4))
    x = np.column_stack([
        independent[:, 0], np.full(400, 3.0), 2.0 * independent[:, 0],  # a constant and a copy of column 0
        independent[:, 1], independent[:, 2], independent[:, 1] - independent[:, 2], independent[:, 3],
    ])
    chosen = select_columns(standardized(x, np.full(400, 14)), 4, method)
    assert len(set(chosen.tolist())) == 4 and 1 not in chosen
    assert np.linalg.matrix_rank(x[:, chosen]) == 4  # four independent directions, no copy among them
    with pytest.raises(ConfigError, match=r"--keep must be in 1..6"):
        select_columns(standardized(x, np.full(400, 14)), 7, method)


def test_standardization_is_per_element():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [100.0, 7.0], [300.0, 9.0]])
    z = standardized(x, np.array([3, 3, 14, 14]))
    np.testing.assert_allclose(z, [[-1, 0], [1, 0], [-1, -1], [1, 1]])


def test_the_written_config_trains_on_the_kept_columns(registry, tmp_path, small_si_xyz, capsys):
    config = tmp_path / "si.yaml"
    config.write_text(yaml.safe_dump(tiny_config(small_si_xyz, output="out/si.pt")))
    assert main(["select-features", str(config), "--keep", "5", "--method", "greedy"]) == 0
    assert "kept 5 of" in capsys.readouterr().out
    selected = load_train_config(tmp_path / "si_5.yaml", registry)
    assert selected.descriptor.kind == "selected" and selected.output.name == "si_5.pt"
    original = load_train_config(config, registry)
    base = build_potential(original, ["Si"], registry).descriptor
    descriptor = build_potential(selected, ["Si"], registry).descriptor
    kept = selected.descriptor.options["features"]
    assert descriptor.n_features == 5 and descriptor.describe() == [base.describe()[k] for k in kept]
    import ase.io

    batch = build_batch(ase.io.read(small_si_xyz, ":"), base.cutoff)
    torch.testing.assert_close(descriptor.featurize(batch), base.featurize(batch)[:, kept])
    check_descriptor(descriptor, verbose=False)
    assert main(["select-features", str(config), "--keep", "5"]) == 2  # the output exists
    assert "--overwrite" in capsys.readouterr().err


def test_bad_selected_sections_are_config_errors(registry):
    selected = registry.get("descriptor", "selected")
    with pytest.raises(ConfigError, match="descriptor.base must be a descriptor section with a kind"):
        selected(["Si"], base={"cutoff": 5.0}, features=[0])
    with pytest.raises(ConfigError, match=r"descriptor.features must be distinct indices in 0\.\."):
        selected(["Si"], base={"kind": "acsf", "cutoff": 5.0}, features=[0, 0])


def test_a_feature_that_varies_only_by_rounding_noise_is_not_blown_up_to_unit_variance():
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(size=50), 2.0 + 1e-12 * rng.normal(size=50), rng.normal(size=50)])
    z = standardized(x, np.full(50, 14))
    assert np.abs(z[:, 1]).max() < 1e-10 and np.isclose(z[:, 0].std(), 1.0)
    assert 1 not in select_columns(z, 2, "greedy")
