"""The shipped configs validate and build their descriptor and model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pesmith.workflows import build_potential
from pesmith.config import load_train_config, read_yaml
from pesmith.data import read_dataset

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
CONFIGS = [p for p in ALL_CONFIGS if "descriptor" in read_yaml(p) or "terms" in read_yaml(p)]  # training configs
GENERATE_CONFIGS = [p for p in ALL_CONFIGS if "crystals" in read_yaml(p)]


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"si_nn_acsf.yaml", "li_nn_acsf.yaml", "lisi_nn_chebyshev.yaml", "si_nn_soap.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_builds(path, registry):
    config = load_train_config(path, registry)
    assert all(path.is_file() for path in config.data.train_files)
    species = read_dataset(config.data.train).species
    potential = build_potential(config, species, registry)
    assert all(term.descriptor.n_features == len(term.descriptor.describe()) for term in potential.terms)


def test_lisi_chebyshev_config_is_the_lixsi_network_setup(registry):
    """Order 11 RDF/ADF with w_Li = -1, w_Si = +1 (48 features), 2 x 15 tanh, 90/10 split, Li + Si data."""
    config = load_train_config(CONFIGS[0].with_name("lisi_nn_chebyshev.yaml"), registry)
    assert [p.name for p in config.data.train_files] == ["Li_train.xyz", "Si_train.xyz"]
    assert config.data.validation_fraction == 0.1
    potential = build_potential(config, ("Li", "Si"), registry)
    descriptor = potential.descriptor
    assert (descriptor.radial_order, descriptor.angular_order) == (11, 11)
    assert descriptor.weights == {"Li": -1.0, "Si": 1.0} and descriptor.n_features == 48
    assert potential.model.hidden == (15, 15) and potential.model.activation == "tanh"


@pytest.mark.parametrize("path", GENERATE_CONFIGS, ids=lambda p: p.name)
def test_generate_config_validates_and_builds_structures(path, registry):
    from pesmith.search.initial_set import generate_structures, load_generate_config

    config = load_generate_config(path, registry)
    structures = generate_structures(config)
    assert structures and all(len(a) <= config.max_atoms for a in structures)


SEARCH_CONFIGS = [p for p in ALL_CONFIGS if "ga" in read_yaml(p) or "path" in read_yaml(p)]


@pytest.mark.parametrize("path", SEARCH_CONFIGS, ids=lambda p: p.name)
def test_search_config_validates(path, registry):
    from pesmith.search.config import load_search_config

    config = load_search_config(path, registry)
    # what the validator does not check: a fresh clone runs the config and the run adds nothing to git
    named = [*config.initial.labeled, *config.hull.crystals, *config.holdout, *config.holdout_truth]
    named += [config.start.file] if config.start.file is not None else []
    assert [str(p) for p in named if not p.resolve().is_relative_to(ROOT)] == []
    assert config.output.resolve().is_relative_to(ROOT / "results")  # git-ignored
    # and the descriptors and models of the potential section (one term or several) construct for Li and Si
    potential = build_potential(config.potential, ("Li", "Si"), registry)
    assert potential.species == ("Li", "Si") and len(potential.terms) == len(config.potential.term_sections)
    assert all(term.descriptor.n_features == len(term.descriptor.describe()) for term in potential.terms)


def test_study_config_is_the_full_size_search(registry):
    """Population 32, mutation 0.1, at least 30 reference relaxations per step, cell relaxations."""
    from pesmith.search.config import load_search_config

    config = load_search_config(ALL_CONFIGS[0].with_name("lisi_delithiation.yaml"), registry)
    assert (config.ga.population, config.ga.mutation_rate) == (32, 0.1)
    assert config.confirm.candidates >= 30 and config.confirm.relax == "cell"
    assert config.path[0] == 3.75 and config.path[-1] == 0.0
