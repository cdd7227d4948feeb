"""`pesmith generate`: the LixSi recipe from the bundled crystals, labeled, then trained on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import ase.io
import pytest
import yaml

from pesmith import cli
from pesmith.config import read_yaml
from pesmith.data import read_dataset
from pesmith.search.initial_set import GenerateConfig, clusters, generate_structures, slabs, with_vacancies, ClusterSettings, SurfaceSettings
from pesmith.registry import Registry

from conftest import DATA, TINY_DESCRIPTOR, TINY_MODEL, TINY_TRAINING

CRYSTALS = DATA / "lisi_crystals"


@pytest.fixture(autouse=True)
def builtin_registry(monkeypatch):
    monkeypatch.setattr(cli, "default_registry", lambda: Registry(entry_points=False))


def small_recipe(tmp_path: Path, **overrides) -> Path:
    config = {
        "crystals": [str(CRYSTALS / "Li_bcc.xyz"), str(CRYSTALS / "Si_diamond.xyz"), str(CRYSTALS / "Li13Si4.xyz")],
        "output": "gen/lisi.db",
        "reference": {"kind": "morse"},
        "max_atoms": 40,
        "supercells": [[2, 2, 2]],
        "scale": {"min": 0.95, "max": 1.05, "n": 2},
        "rattle": {"stdev": 0.05, "n": 1},
        "vacancies": 1,
        "surfaces": {"miller": [[1, 0, 0]], "layers": 2, "vacuum": 5.0},
        "clusters": {"n": 1, "radius": 3.5, "vacuum": 4.0},
        "progress": False,
        **overrides,
    }
    path = tmp_path / "generate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_recipe_is_reproducible_and_has_every_kind_of_structure(tmp_path):
    config = GenerateConfig.model_validate(read_yaml(small_recipe(tmp_path)))
    first, second = generate_structures(config), generate_structures(config)
    assert len(first) == len(second) and all((a.positions == b.positions).all() for a, b in zip(first, second))
    per_crystal = Counter(a.info["generated_from"] for a in first)
    # Li2: itself + 2x2x2 (16 atoms), each 2 scales x 1 rattle + Li vacancy -> 6, + 1 slab + 1 cluster
    assert per_crystal["Li_bcc.xyz"] == 8
    assert per_crystal["Li13Si4.xyz"] > 0 and all(len(a) <= 40 for a in first)
    assert all(a.pbc.all() and a.cell.rank == 3 for a in first)
    sizes = {len(a) for a in first if a.info["generated_from"] == "Si_diamond.xyz"}
    assert {8, 7, 64, 63} <= sizes or {8, 7} <= sizes  # crystal, vacancy (64-atom supercell is over max_atoms)


def test_vacancies_slabs_and_clusters(tmp_path):
    import numpy as np

    li13si4 = ase.io.read(CRYSTALS / "Li13Si4.xyz")
    removed = with_vacancies(li13si4, 2, 0.0, np.random.default_rng(0))
    assert sorted(a.get_chemical_formula() for a in removed) == ["Li25Si8", "Li25Si8", "Li26Si7", "Li26Si7"]
    slab = slabs(ase.io.read(CRYSTALS / "Si_diamond.xyz"), SurfaceSettings(miller=[(1, 1, 1)], layers=2, vacuum=5.0))[0]
    assert slab.pbc.all() and slab.cell.lengths()[2] > 10.0
    cluster = clusters(ase.io.read(CRYSTALS / "Li_bcc.xyz"), ClusterSettings(n=1, radius=4.0, vacuum=5.0), np.random.default_rng(1))[0]
    assert 9 <= len(cluster) <= 40 and cluster.cell.lengths()[0] == pytest.approx(18.0)


def test_generated_data_trains_an_nn_model_without_edits(tmp_path, capsys):
    config = small_recipe(tmp_path)
    code = cli.main(["generate", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    database = tmp_path / "gen" / "lisi.db"
    dataset = read_dataset(database)
    assert dataset.species == ("Li", "Si") and len(dataset) >= 15
    assert (tmp_path / "gen" / "lisi_structures.xyz").is_file()
    train = tmp_path / "train.yaml"
    train.write_text(
        yaml.safe_dump(
            {
                "data": {"train": str(database), "validation_fraction": 0.2, "seed": 0},
                "descriptor": dict(TINY_DESCRIPTOR),
                "model": dict(TINY_MODEL),
                "training": dict(TINY_TRAINING),
                "output": "model/lisi.pt",
            }
        )
    )
    code = cli.main(["train", str(train)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "model" / "lisi.pt").is_file()


@pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")  # 1000 K with a 2-epoch model
def test_md_snapshots_from_an_existing_model(tmp_path, tiny_si_model):
    config = GenerateConfig.model_validate(
        read_yaml(
            small_recipe(
                tmp_path,
                crystals=[str(CRYSTALS / "Si_diamond.xyz")],
                supercells=[],
                surfaces=None,
                clusters=None,
                vacancies=0,
                md={"model": str(tiny_si_model), "temperature_K": 1000.0, "steps": 20, "interval": 10},
            )
        )
    )
    structures = generate_structures(config)
    assert len(structures) == 2 + 2  # 2 scaled-and-rattled cells + 2 MD snapshots
    assert all(len(a) == 8 for a in structures)


def test_bad_generate_config(tmp_path, capsys):
    config = small_recipe(tmp_path, crystals=[str(tmp_path / "missing.cif")])
    code = cli.main(["generate", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "crystal file" in err and "missing.cif" in err
    config = small_recipe(tmp_path, scale={"min": 1.1, "max": 0.9})
    code = cli.main(["generate", str(config)])
    assert code == 2 and "scale.min (1.1) is larger than scale.max (0.9)" in capsys.readouterr().err
