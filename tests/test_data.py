"""Datasets: extxyz / ase.db round trips, label checks naming file and structure, splits,
least-squares reference energies."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from pesmith.data import Dataset, concatenate_datasets, read_dataset, reference_energies
from pesmith.errors import DataError


def labeled(atoms: Atoms, seed: int, energy: float | None = None, with_stress: bool = True, **results) -> Atoms:
    """``atoms`` with random energy (eV), forces (eV/Å) and stress (eV/Å^3, Voigt)."""
    rng = np.random.default_rng(seed)
    values = {"energy": float(rng.normal(-5 * len(atoms), 1)) if energy is None else energy,
              "forces": rng.normal(0, 0.5, (len(atoms), 3))}
    if with_stress:
        values["stress"] = rng.normal(0, 0.01, 6)
    values.update(results)
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, **values)
    return atoms


def lisi_structures() -> list[Atoms]:
    si = bulk("Si", "diamond", 5.43)
    lisi = bulk("Si", "diamond", 5.43, cubic=True)
    lisi.symbols[[0, 3, 5]] = "Li"
    lisi.rattle(0.05, seed=1)
    return [labeled(si, 0), labeled(lisi, 1), labeled(si * (2, 1, 1), 2, with_stress=False)]


def write(path, structures) -> None:
    if path.suffix == ".db":
        import ase.db

        with ase.db.connect(str(path)) as db:
            for atoms in structures:
                db.write(atoms)
    else:
        import ase.io

        ase.io.write(path, structures, format="extxyz")


@pytest.mark.parametrize("name", ["data.xyz", "data.extxyz", "data.db"])
def test_round_trip_keeps_energies_forces_stress(tmp_path, name):
    structures = lisi_structures()
    path = tmp_path / name
    write(path, structures)
    dataset = read_dataset(path)
    assert len(dataset) == 3 and dataset.source == str(path)
    assert dataset.species == ("Li", "Si")
    assert dataset.n_atoms == sum(len(a) for a in structures)
    assert dataset.indices.tolist() == [0, 1, 2]
    for atoms, loaded, energy, forces, stress in zip(
        structures, dataset.structures, dataset.energies, dataset.forces, dataset.stresses
    ):
        assert loaded.get_chemical_symbols() == atoms.get_chemical_symbols()
        np.testing.assert_allclose(loaded.positions, atoms.positions, atol=1e-8)
        np.testing.assert_allclose(loaded.cell.array, atoms.cell.array, atol=1e-8)
        assert energy == pytest.approx(atoms.calc.results["energy"], abs=1e-8)
        assert forces.dtype == np.float64 and forces.shape == (len(atoms), 3)
        np.testing.assert_allclose(forces, atoms.calc.results["forces"], atol=1e-8)
        if "stress" in atoms.calc.results:
            assert stress.shape == (6,)
            np.testing.assert_allclose(stress, atoms.calc.results["stress"], atol=1e-10)
        else:
            assert stress is None


def test_bundled_si_slice_reads_with_stress(small_si_xyz):
    dataset = read_dataset(small_si_xyz)
    assert len(dataset) == 4 and dataset.species == ("Si",)
    assert all(s is not None and s.shape == (6,) for s in dataset.stresses)
    assert np.isfinite(dataset.energies).all()


FULL_STRESS = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]]) * 1e-3  # eV/Å^3
VOIGT = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3]  # xx, yy, zz, yz, xz, xy


def test_stress_given_as_3x3_in_extxyz_is_read_as_voigt(tmp_path):
    atoms = labeled(bulk("Si", "diamond", 5.43), 0, stress=FULL_STRESS)
    write(tmp_path / "full.xyz", [atoms])
    np.testing.assert_allclose(read_dataset(tmp_path / "full.xyz").stresses[0], VOIGT)


def test_stress_given_as_3x3_in_ase_db_is_read_as_voigt(tmp_path):
    """BUG: ase.db gives a 3x3 stress back flattened, shape (9,); data.py converts only (3, 3),
    so a valid database written by ASE is rejected ("stress must be 6 finite numbers")."""
    atoms = labeled(bulk("Si", "diamond", 5.43), 0, stress=FULL_STRESS)
    write(tmp_path / "full.db", [atoms])
    np.testing.assert_allclose(read_dataset(tmp_path / "full.db").stresses[0], VOIGT)


def bad_structure(kind: str) -> Atoms:
    si = bulk("Si", "diamond", 5.43)
    if kind == "missing energy":
        atoms = si.copy()
        atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((2, 3)))
        return atoms
    if kind == "NaN energy":
        return labeled(si, 3, energy=float("nan"))
    if kind == "inf energy":
        return labeled(si, 3, energy=float("inf"))
    if kind == "NaN force":
        forces = np.zeros((2, 3))
        forces[1, 2] = np.nan
        return labeled(si, 3, forces=forces)
    if kind == "missing forces":
        atoms = si.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0)
        return atoms
    if kind == "NaN stress":
        return labeled(si, 3, stress=np.array([0, 0, np.nan, 0, 0, 0.0]))
    if kind == "wrong force shape":
        return labeled(si, 3, forces=np.zeros((3, 3)))
    raise ValueError(kind)


EXPECTED = {
    "missing energy": "no energy label",
    "NaN energy": "energy is nan",
    "inf energy": "energy is inf",
    "NaN force": "forces contain NaN",
    "missing forces": "no forces label",
    "NaN stress": "stress must be 6 finite numbers",
    "wrong force shape": "forces have shape (3, 3), expected (2, 3)",
}


# ase cannot write an extxyz file with mis-shaped forces; a handwritten file covers that case.
BAD_LABEL_CASES = [(k, s) for k in EXPECTED for s in (".xyz", ".db") if (k, s) != ("wrong force shape", ".xyz")]


@pytest.mark.parametrize("kind,suffix", BAD_LABEL_CASES)
def test_bad_label_names_file_and_structure_index(tmp_path, kind, suffix):
    good = labeled(bulk("Si", "diamond", 5.43), 0)
    path = tmp_path / f"bad{suffix}"
    write(path, [good, good, bad_structure(kind)])
    with pytest.raises(DataError) as error:
        read_dataset(path)
    message = str(error.value)
    assert f"{path}, structure 2" in message
    if kind == "NaN energy" and suffix == ".db":  # ase.db stores a NaN energy as "no energy"
        assert "no energy label" in message
    else:
        assert EXPECTED[kind] in message


def test_wrong_force_shape_in_handwritten_extxyz(tmp_path):
    path = tmp_path / "two_columns.xyz"
    path.write_text(
        '2\nLattice="0 2.715 2.715 2.715 0 2.715 2.715 2.715 0" Properties=species:S:1:pos:R:3:forces:R:2'
        ' energy=-10.0 pbc="T T T"\nSi 0 0 0 1 1\nSi 1.3575 1.3575 1.3575 1 1\n'
    )
    with pytest.raises(DataError, match=r"two_columns.xyz, structure 0: forces have shape \(2, 2\), expected \(2, 3\)"):
        read_dataset(path)


def test_missing_file_and_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="data file .*nope.xyz not found"):
        read_dataset(tmp_path / "nope.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is not\nan xyz file\n")
    with pytest.raises(DataError, match="garbage.xyz"):
        read_dataset(garbage)


def synthetic(n: int, seed: int = 0) -> Dataset:
    """``n`` tiny structures, energies = index (to identify them), zero forces."""
    structures = [Atoms("Si", cell=[3, 3, 3], pbc=True) for _ in range(n)]
    return Dataset(structures, np.arange(n, dtype=float), [np.zeros((1, 3))] * n, [None] * n)


def test_split_is_reproducible_disjoint_and_complete():
    dataset = synthetic(40)
    train, validation = dataset.split(0.25, seed=7)
    again_train, again_validation = dataset.split(0.25, seed=7)
    assert train.indices.tolist() == again_train.indices.tolist()
    assert validation.indices.tolist() == again_validation.indices.tolist()
    assert len(validation) == 10 and len(train) == 30
    assert set(train.indices).isdisjoint(validation.indices)
    assert sorted([*train.indices, *validation.indices]) == list(range(40))
    np.testing.assert_array_equal(train.energies, train.indices)  # labels follow their structures
    other_train, _ = dataset.split(0.25, seed=8)
    assert other_train.indices.tolist() != train.indices.tolist()


def test_split_of_a_subset_keeps_source_indices():
    train, _ = synthetic(20).split(0.5, seed=0)
    inner_train, inner_validation = train.split(0.2, seed=1)
    assert set(inner_train.indices) | set(inner_validation.indices) == set(train.indices)


def test_split_edge_cases():
    train, validation = synthetic(5).split(0.0, seed=0)
    assert len(train) == 5 and len(validation) == 0
    train, validation = synthetic(2).split(0.01, seed=0)  # rounds to 0, but asked for some: one
    assert len(train) == 1 and len(validation) == 1
    train, validation = synthetic(3).split(0.99, seed=0)  # keeps at least one to train on
    assert len(train) == 1 and len(validation) == 2
    for bad in (-0.1, 1.0):
        with pytest.raises(DataError, match="validation_fraction"):
            synthetic(3).split(bad, seed=0)


def test_split_of_a_single_structure_keeps_it_for_training():
    """BUG: with one structure and validation_fraction >= 0.5 the training set is empty.

    ``Dataset.split`` clamps only when ``len(self) >= 2``; ``round(0.6 * 1) = 1`` sends the only
    structure to validation and ``pesmith train`` then dies in ``np.linalg.lstsq`` with a traceback.
    Either keep it for training or raise a DataError.
    """
    try:
        train, validation = synthetic(1).split(0.6, seed=0)
    except DataError:
        return
    assert len(train) == 1, f"empty training set (validation has {len(validation)} structure)"


def test_reference_energies_least_squares_recovers_per_element_energies():
    rng = np.random.default_rng(0)
    true = {"Li": -1.9, "Si": -5.4}
    structures, energies = [], []
    for _ in range(12):
        n_li, n_si = rng.integers(0, 6, 2)
        n_si += 1
        atoms = Atoms(["Li"] * n_li + ["Si"] * n_si, cell=[5, 5, 5], pbc=True)
        structures.append(atoms)
        energies.append(n_li * true["Li"] + n_si * true["Si"])
    dataset = Dataset(structures, np.array(energies), [np.zeros((len(a), 3)) for a in structures],
                      [None] * len(structures))
    fitted = reference_energies(dataset, ("Li", "Si"))
    assert fitted.keys() == true.keys()
    for symbol, energy in true.items():
        assert fitted[symbol] == pytest.approx(energy, abs=1e-10)
    noisy = Dataset(structures, dataset.energies + rng.normal(0, 1e-3, len(structures)), dataset.forces,
                    dataset.stresses)
    for symbol, energy in reference_energies(noisy, ("Li", "Si")).items():
        assert energy == pytest.approx(true[symbol], abs=2e-3)


def test_reference_energies_from_isolated_atoms():
    dataset = synthetic(3)
    assert reference_energies(dataset, ("Si",), {"Si": -0.8, "Li": -0.2}) == {"Si": -0.8}
    with pytest.raises(DataError, match=r"isolated_atom_energies lacks \['Li'\]"):
        reference_energies(dataset, ("Li", "Si"), {"Si": -0.8})


def test_list_of_files_is_concatenated_in_order(tmp_path):
    structures = lisi_structures()
    first, second = tmp_path / "a.xyz", tmp_path / "b.db"
    write(first, structures[:2])
    write(second, structures[2:])
    dataset = read_dataset([first, second])
    assert len(dataset) == 3 and dataset.source == f"{first}, {second}"
    assert dataset.indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(dataset.energies, [a.get_potential_energy() for a in structures])
    assert [len(f) for f in dataset.forces] == [len(a) for a in structures]
    assert dataset.stresses[2] is None and dataset.stresses[0] is not None
    train, validation = dataset.split(0.34, seed=0)
    assert sorted(train.indices.tolist() + validation.indices.tolist()) == [0, 1, 2]


def test_list_of_files_errors_name_the_offending_file(tmp_path):
    good = tmp_path / "good.xyz"
    write(good, lisi_structures()[:1])
    bad = tmp_path / "bad.xyz"
    write(bad, [labeled(bulk("Si", "diamond", 5.43), 0), bad_structure("NaN energy")])
    with pytest.raises(DataError, match=f"{bad}, structure 1"):
        read_dataset([good, bad])
    with pytest.raises(DataError, match="data file .*missing.xyz not found"):
        read_dataset([good, tmp_path / "missing.xyz"])
    with pytest.raises(DataError, match="empty list"):
        read_dataset([])


def test_config_accepts_a_list_of_train_files_relative_to_the_config(tmp_path, registry):
    import yaml

    from pesmith.config import load_train_config
    from pesmith.errors import ConfigError

    (tmp_path / "data").mkdir()
    folder = tmp_path / "configs"
    folder.mkdir()
    config = {"data": {"train": ["../data/li.xyz", str(tmp_path / "si.xyz")]}, "descriptor": {"kind": "acsf"},
              "model": {"kind": "nn"}, "output": "m.pt"}
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_train_config(path, registry)
    assert loaded.data.train == [tmp_path / "data" / "li.xyz", tmp_path / "si.xyz"]
    assert loaded.data.train_files == loaded.data.train
    config["data"]["train"] = "../data/li.xyz"
    path.write_text(yaml.safe_dump(config))
    assert load_train_config(path, registry).data.train_files == [tmp_path / "data" / "li.xyz"]
    config["data"]["train"] = []
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="key 'data.train': .*at least one file"):
        load_train_config(path, registry)


def test_labels_of_two_references_are_refused_unless_allowed(tmp_path, morse_label_db):
    default = morse_label_db(tmp_path / "default.db", 2)
    same = morse_label_db(tmp_path / "same.db", 2, seed=10)
    shorter = morse_label_db(tmp_path / "short.db", 3, cutoff=5.0)
    assert len(read_dataset([default, same])) == 4  # one reference, two files
    with pytest.raises(DataError) as error:
        read_dataset([default, same, shorter])
    message = str(error.value)
    assert "\n" not in message and str(default) in message and str(shorter) in message
    assert message.count("method 'morse'") == 2 and "data.allow_mixed_references: true" in message
    mixed = read_dataset([default, shorter], allow_mixed_references=True)
    assert len(mixed) == 5
    np.testing.assert_allclose(mixed.energies[:2], read_dataset(default).energies)


def test_files_without_provenance_mix_only_with_each_other(tmp_path, morse_label_db):
    first, second = tmp_path / "a.xyz", tmp_path / "b.xyz"
    write(first, lisi_structures()[:2])
    write(second, lisi_structures()[2:])
    assert len(read_dataset([first, second])) == 3  # neither says anything: one group
    labels = morse_label_db(tmp_path / "labels.db", 2)
    with pytest.raises(DataError, match=f"no recorded reference in {first} and method 'morse' .* in {labels}"):
        read_dataset([first, labels])
    assert len(read_dataset([first, labels], allow_mixed_references=True)) == 4


def test_one_database_with_rows_of_two_references_is_refused(tmp_path, morse_label_db):
    import ase.db

    path = morse_label_db(tmp_path / "labels.db", 2)
    with ase.db.connect(str(path)) as db:
        db.write(lisi_structures()[0], status="ok", method="xtb", reference_hash="f" * 64)
    with pytest.raises(DataError, match="method 'morse'.*and method 'xtb'"):
        read_dataset(path)


def test_split_keeps_structures_on_their_side_when_data_is_added_or_reordered():
    first = synthetic(60)
    _, validation = first.split(0.1, seed=3)
    grown = concatenate_datasets([synthetic(30, seed=1), first])  # 30 new rows first: every index moves
    grown.energies[:30] += 100.0  # new structures (energies identify them)
    _, grown_validation = grown.split(0.1, seed=3)
    before, after = set(validation.energies.tolist()), set(grown_validation.energies.tolist())
    assert len(after) == 9 and before <= after  # the old validation set stays (a permutation kept 0-1 of 6)
    reordered = first.subset(np.arange(60)[::-1])
    assert sorted(reordered.split(0.1, seed=3)[1].energies.tolist()) == sorted(before)
