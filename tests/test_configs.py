"""The shipped configs validate and build their descriptor and model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pesmith.cli import build_potential
from pesmith.config import load_train_config
from pesmith.data import read_dataset

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"si_nn_acsf.yaml", "li_nn_acsf.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_builds(path, registry):
    config = load_train_config(path, registry)
    assert config.data.train.is_file()
    species = read_dataset(config.data.train).species
    potential = build_potential(config, species, registry)
    assert potential.descriptor.n_features == len(potential.descriptor.describe())
