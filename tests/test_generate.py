"""`pesmith generate`: the LixSi recipe from the bundled crystals, labeled, then trained on."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml

from pesmith import cli, load_calculator
from pesmith.config import read_yaml
from pesmith.data import read_dataset
from pesmith.search.initial_set import GenerateConfig, clusters, generate_structures, slabs, with_vacancies, ClusterSettings, SurfaceSettings
from pesmith.registry import Registry

from conftest import DATA, TINY_DESCRIPTOR, TINY_MODEL, TINY_TRAINING

CRYSTALS = DATA / "lisi_crystals"


@pytest.fixture(autouse=True)
def builtin_registry(monkeypatch):
    monkeypatch.setattr(cli.app, "default_registry", lambda: Registry(entry_points=False))


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
    generated = ase.io.read(tmp_path / "gen" / "lisi_structures.xyz", index=":")
    # (crystal, atoms) of each kind: a crystal and its 2x2x2 supercell within max_atoms (40), each
    # scaled twice (1 rattle each) and with one vacancy per element, then one (100) slab and one cluster
    assert Counter((a.info["generated_from"], len(a)) for a in generated) == {
        ("Li_bcc.xyz", 2): 2, ("Li_bcc.xyz", 1): 1, ("Li_bcc.xyz", 16): 2, ("Li_bcc.xyz", 15): 1,  # cell, supercell
        ("Li_bcc.xyz", 4): 1, ("Li_bcc.xyz", 10): 1,  # slab, cluster
        ("Si_diamond.xyz", 8): 2, ("Si_diamond.xyz", 7): 1,  # the 64-atom supercell is over max_atoms
        ("Si_diamond.xyz", 16): 1, ("Si_diamond.xyz", 3): 1,  # slab, cluster
        ("Li13Si4.xyz", 34): 2, ("Li13Si4.xyz", 33): 2,  # a Li and a Si vacancy
        ("Li13Si4.xyz", 14): 1,  # the cluster (the slab is over max_atoms)
    }
    dataset = read_dataset(database)
    assert dataset.species == ("Li", "Si") and len(dataset) == len(generated) == 18  # every structure labeled
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
    report = json.loads((tmp_path / "model" / "lisi_report.json").read_text())
    assert report["split"]["n_train"] + report["split"]["n_validation"] == 18
    # the saved model gives, on every training structure, the energies its report's error was measured on
    calculator = load_calculator(str(tmp_path / "model" / "lisi.pt"))
    errors = []
    for index in report["split"]["train_indices"]:
        atoms = dataset.structures[index].copy()
        atoms.calc = calculator
        errors.append((atoms.get_potential_energy() - dataset.energies[index]) / len(atoms))
    rmse = 1000 * float(np.sqrt(np.mean(np.square(errors))))
    assert rmse == pytest.approx(report["metrics"]["train"]["energy_rmse_meV_per_atom"], rel=1e-6)


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


# --- amorphous cells, melt-quenched with the reference ------------------------------------------

AMORPHOUS = {
    "compositions": [3.75, 1.0, 0.0],
    "atoms": 20,
    "melt_quench": {"melt_ps": 0.04, "quench_ps": 0.06, "timestep_fs": 2.0, "interval": 10},
    "snapshots": 2,
    "relax": {"fmax": 0.3, "steps": 20},
}


def amorphous_recipe(tmp_path: Path, **overrides) -> Path:
    """Only Li and Si crystals (no supercells, slabs or clusters) plus amorphous cells."""
    settings = {
        "crystals": [str(CRYSTALS / "Li_bcc.xyz"), str(CRYSTALS / "Si_diamond.xyz"), str(CRYSTALS / "Li15Si4.xyz")],
        "supercells": [],
        "vacancies": 0,
        "surfaces": None,
        "clusters": None,
        "amorphous": AMORPHOUS,
        **overrides,
    }
    return small_recipe(tmp_path, **settings)


def test_generate_with_amorphous_cells_labels_them(tmp_path, capsys):
    config = amorphous_recipe(tmp_path)
    code = cli.main(["generate", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    generated = ase.io.read(tmp_path / "gen" / "lisi_structures.xyz", index=":")
    amorphous = [a for a in generated if a.info["generated_from"].startswith("amorphous")]
    # 3 compositions x (2 snapshots + 1 relaxed frame)
    assert Counter(a.info["generated_from"] for a in amorphous) == {
        "amorphous Li15Si4": 3, "amorphous Li10Si10": 3, "amorphous Si20": 3
    }
    assert sum("relax_converged" in a.info for a in amorphous) == 3
    li15si4 = [a for a in amorphous if a.get_chemical_formula(mode="metal") == "Li15Si4"]
    # volume interpolated from the crystals: Li15Si4 is itself one of them (15.52 Å^3/atom)
    assert li15si4[0].get_volume() / 19 == pytest.approx(ase.io.read(CRYSTALS / "Li15Si4.xyz").get_volume() / 76)
    dataset = read_dataset(tmp_path / "gen" / "lisi.db")
    assert len(dataset) == len(generated)  # every frame labeled (none failed)
    assert f"{len(generated)} labeled, 0 failed" in out


def test_amorphous_frames_do_not_depend_on_the_number_of_workers(tmp_path):
    from pesmith.parallel import parallel_map
    from pesmith.search.initial_set import amorphous_structures, load_generate_config

    registry = Registry(entry_points=False)
    frames = {}
    for workers in (1, 2):
        folder = tmp_path / str(workers)
        folder.mkdir()
        config = load_generate_config(amorphous_recipe(folder, workers=workers), registry)
        frames[workers] = amorphous_structures(config, registry, parallel_map, "test")
    assert len(frames[1]) == len(frames[2]) == 9
    assert all((a.positions == b.positions).all() for a, b in zip(frames[1], frames[2]))


@pytest.mark.parametrize(
    ("amorphous", "message"),
    [
        ({**AMORPHOUS, "compositions": [3.75, -1.0]}, "key 'amorphous.compositions.1'"),
        ({**AMORPHOUS, "compositions": []}, "key 'amorphous.compositions'"),
        ({**AMORPHOUS, "snapshots": 50}, "snapshots (50) is more than the 5 frames"),
        ({**AMORPHOUS, "melt_quench": {"melt_K": 300, "final_K": 1000}}, "final_K (1000.0) must not exceed melt_K"),
        ({**AMORPHOUS, "atom": 20}, "unknown key 'amorphous.atom'"),
        ({**AMORPHOUS, "atoms": 60}, "amorphous.atoms (60) is above max_atoms (40)"),
        ({**AMORPHOUS, "min_distance": 2.9, "volume_per_atom": 12.0}, "amorphous, x = 3.75: random_cell"),
    ],
)
def test_bad_amorphous_section(tmp_path, capsys, amorphous, message):
    code = cli.main(["generate", str(amorphous_recipe(tmp_path, amorphous=amorphous))])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "gen").exists()


def test_amorphous_needs_a_calculator_reference(tmp_path, plugin_module):
    from pesmith.errors import ConfigError
    from pesmith.search.initial_set import load_generate_config

    name = plugin_module(
        "table_reference",
        "from pesmith import hookimpl\n"
        "from pesmith.reference import Reference\n"
        "class TableReference(Reference):\n"
        "    '''Labels from a table (no ASE calculator).'''\n"
        "    def label(self, atoms):\n"
        "        raise NotImplementedError\n"
        "    def relax(self, atoms, fmax=0.05, steps=200, cell=False):\n"
        "        raise NotImplementedError\n"
        "@hookimpl\n"
        "def pesmith_register_references(register):\n"
        "    register('table', TableReference)\n",
    )
    registry = Registry(entry_points=False, modules=[name])
    path = amorphous_recipe(tmp_path, reference={"kind": "table"})
    with pytest.raises(ConfigError, match="reference kind 'table' .TableReference. has no make_calculator"):
        load_generate_config(path, registry)
    assert load_generate_config(amorphous_recipe(tmp_path, reference={"kind": "table"}, amorphous=None), registry)


def test_a_failed_generate_leaves_no_structures_file(tmp_path):
    """Through the console script: a reference that fails setup (morse width > cutoff) writes nothing."""
    import subprocess
    import sys

    config = amorphous_recipe(tmp_path, reference={"kind": "morse", "cutoff": 4.0, "width": 5.0})
    pesmith = Path(sys.executable).with_name("pesmith")
    result = subprocess.run([str(pesmith), "generate", str(config)], capture_output=True, text=True,
                            env={**__import__("os").environ, "PESMITH_DISABLE_ENTRY_POINTS": "1"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "width must be in (0, cutoff=4.0]" in result.stderr
    assert not (tmp_path / "gen").exists()


def test_a_failed_labeling_puts_the_previous_structures_file_back(tmp_path, capsys):
    """A second generate into the database of another reference fails after writing its structures:
    the first run's structures file comes back unchanged, and nothing else is left."""
    config = small_recipe(tmp_path, surfaces=None, clusters=None)
    assert cli.main(["generate", str(config)]) == 0
    structures = tmp_path / "gen" / "lisi_structures.xyz"
    before, files = structures.read_bytes(), sorted(p.name for p in (tmp_path / "gen").iterdir())
    other = small_recipe(tmp_path, surfaces=None, clusters=None, seed=1, reference={"kind": "morse", "cutoff": 5.0})
    capsys.readouterr()
    code = cli.main(["generate", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and "holds labels from another reference" in err
    assert structures.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == files  # no backup or temporary file left
