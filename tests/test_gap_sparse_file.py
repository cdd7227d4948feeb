"""GAP sparse points from and to gap_fit index files (training.sparse_method file, sparse_file,
write_sparse_index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pesmith.errors import ConfigError
from pesmith.potential import ENERGY, Potential
from pesmith.structures import build_batch

from test_gap import morse_cells


def soap_gap(registry, species=("Li", "Si")) -> Potential:
    descriptor = registry.get("descriptor", "soap_quip")(species=list(species), cutoff=4.5, n_max=3, l_max=2)
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="dot_product")
    return Potential(descriptor, model)


def fit(registry, data, species=("Li", "Si"), **settings) -> Potential:
    potential = soap_gap(registry, species)
    options = {"n_sparse": 12, "sigma_energy": 0.01, "sigma_force": 0.1, "progress": False, "core_repulsion": False}
    potential.fit(data, None, potential.model.settings_schema(**(options | settings)))
    return potential


@pytest.fixture(scope="module")
def lisi():
    return morse_cells(6, seed=5)


def environments(potential: Potential, data, symbol: str) -> np.ndarray:
    """The element's unit-normalised training features, structure by structure, atoms in order."""
    features = torch.cat([potential.descriptor.featurize(build_batch([a], potential.descriptor.cutoff)) for a in data.structures])
    numbers = np.concatenate([a.numbers for a in data.structures])
    x = features[torch.as_tensor(numbers == {"Li": 3, "Si": 14}[symbol])]
    return (x / x.norm(dim=1, keepdim=True)).numpy()


def test_written_indices_are_one_based_per_element_in_training_order_and_read_back_to_the_same_gap(registry, lisi, tmp_path):
    written = fit(registry, lisi, write_sparse_index=str(tmp_path / "sparse_{element}.idx"), sparse_method="cur")
    model = written.model
    for k, symbol in enumerate(model.species):
        lines = (tmp_path / f"sparse_{symbol}.idx").read_text().split()
        indices = np.array([int(v) for v in lines])
        assert len(indices) == 12 and indices.min() >= 1 and np.all(np.diff(indices) > 0)
        # the listed environments are the element's sparse points
        ours = model.sparse_points[model.sparse_species == k].numpy()
        np.testing.assert_allclose(ours, environments(written, lisi, symbol)[indices - 1], rtol=0, atol=1e-14)
    read = fit(registry, lisi, sparse_method="file", sparse_file=str(tmp_path / "sparse_{element}.idx"), n_sparse=1)
    assert torch.equal(read.model.sparse_points, model.sparse_points)
    structures = morse_cells(2, seed=6).structures
    np.testing.assert_allclose(read.predict(structures)[ENERGY].numpy(), written.predict(structures)[ENERGY].numpy(), rtol=0, atol=1e-9)


def test_a_single_element_file_needs_no_template(registry, tmp_path):
    data = morse_cells(4, seed=7, silicon_only=True)
    (tmp_path / "si.idx").write_text("3\n1\n7\n")
    potential = fit(registry, data, ("Si",), sparse_method="file", sparse_file=str(tmp_path / "si.idx"))
    assert potential.model.n_sparse == 3
    np.testing.assert_allclose(potential.model.sparse_points.numpy(), environments(potential, data, "Si")[[0, 2, 6]], atol=1e-14)


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "cannot be read"),
        ("1\n2\nfive\n", "'five' is not an integer"),
        ("0\n1\n", "index 0 is outside 1.."),
        ("1\n100000\n", "index 100000 is outside 1.."),
        ("2\n2\n", "index 2 appears more than once"),
        ("\n", "holds no indices"),
    ],
)
def test_a_bad_index_file_is_a_one_line_config_error_naming_the_key_and_file(registry, tmp_path, content, message):
    data = morse_cells(3, seed=8, silicon_only=True)
    path = tmp_path / "bad.idx"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as error:
        fit(registry, data, ("Si",), sparse_method="file", sparse_file=str(path))
    text = str(error.value)
    assert "training.sparse_file" in text and str(path) in text and message in text and "\n" not in text


def test_several_elements_need_the_element_template_and_method_and_file_go_together(registry, lisi, tmp_path):
    (tmp_path / "one.idx").write_text("1\n")
    with pytest.raises(ConfigError, match=r"training.sparse_file .* must contain \{element\}"):
        fit(registry, lisi, sparse_method="file", sparse_file=str(tmp_path / "one.idx"))
    with pytest.raises(ConfigError, match="training.sparse_file and training.sparse_method file go together"):
        fit(registry, lisi, sparse_method="cur", sparse_file=str(tmp_path / "one.idx"))
    with pytest.raises(ConfigError, match="training.sparse_file and training.sparse_method file go together"):
        fit(registry, lisi, sparse_method="file")
    with pytest.raises(ConfigError, match=r"training.write_sparse_index .* must contain \{element\}"):
        fit(registry, lisi, write_sparse_index=str(tmp_path / "out.idx"))


def test_gap_fit_with_our_lithium_silicon_sparse_points_predicts_what_we_predict(registry, tmp_path):
    """The whole chain against QUIP: soap_quip + dot-product GAP, our CUR points written per element
    and read by gap_fit (sparse_method=index_file, one descriptor per central element)."""
    import shutil
    import subprocess
    import sys

    import ase.io

    from pesmith.calculator import PesmithCalculator
    from pesmith.data import reference_energies

    quip_potential = pytest.importorskip("quippy.potential", reason='quippy-ase: pip install "pesmith[dev]"')
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).with_name("gap_fit"))
    if not Path(gap_fit).is_file():
        pytest.skip("gap_fit (quippy-ase) not found")
    train, test = morse_cells(12, seed=11), morse_cells(3, seed=12)
    ase.io.write(tmp_path / "train.xyz", train.labeled_structures(keep_info=False), format="extxyz")
    descriptor = registry.get("descriptor", "soap_quip")(species=["Li", "Si"], cutoff=4.5, cutoff_transition_width=0.7,
                                                         n_max=4, l_max=3)
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features,
                                         kernel="dot_product", zeta=2, delta=0.5)
    ours = Potential(descriptor, model)
    ours.fit(train, None, model.settings_schema(
        n_sparse=20, sigma_energy=0.005, sigma_force=0.05, jitter=1e-8, progress=False, core_repulsion=False,
        force_weight=0.0, write_sparse_index=str(tmp_path / "sparse_{element}.idx")))
    e0 = reference_energies(train, descriptor.species)
    terms = ":".join(
        f"{descriptor.quip_string(s, in_gap_fit=True)} zeta=2 delta=0.5 covariance_type=dot_product"
        f" sparse_method=index_file sparse_file={tmp_path / f'sparse_{s}.idx'} add_species=F"
        for s in descriptor.species
    )
    command = [gap_fit, "atoms_filename=train.xyz", f"gap={{{terms}}}", "default_sigma={0.005 0.05 0.0 0.0}",
               "sparse_jitter=1e-8", f"e0={{Li:{e0['Li']!r}:Si:{e0['Si']!r}}}", "energy_parameter_name=energy",
               "force_parameter_name=forces", "gp_file=gap.xml"]
    process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout[-2000:]
    theirs = quip_potential.Potential(param_filename=str(tmp_path / "gap.xml"))
    for atoms in test.structures:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = PesmithCalculator(ours), theirs
        assert abs(a.get_potential_energy() - b.get_potential_energy()) / len(atoms) < 1e-6  # eV/atom
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-6)  # eV/Å
        assert np.abs(b.get_forces()).max() > 0.1


def test_relative_index_paths_in_a_config_are_taken_from_the_config_folder(registry, tmp_path, monkeypatch):
    import yaml

    from pesmith.config import load_train_config

    folder = tmp_path / "configs"
    folder.mkdir()
    (tmp_path / "data.xyz").write_text("")
    soap = {"kind": "soap_quip", "cutoff": 4.5, "n_max": 3, "l_max": 2}
    gap = {"kind": "gap", "kernel": "dot_product"}
    config = {
        "data": {"train": "../data.xyz"},
        "terms": [
            {"descriptor": soap, "model": gap, "training": {"sparse_method": "file", "sparse_file": "sparse/{element}.idx"}},
            {"descriptor": {"kind": "distance_2b", "cutoff": 4.5}, "model": gap | {"kernel": "linear"}, "training": {"sparse_method": "basis"}},
        ],
        "training": {"write_sparse_index": "/abs/chosen_{element}.idx"},
        "output": "model.pt",
    }
    (folder / "gap.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # the working directory is not the config's folder
    loaded = load_train_config(folder / "gap.yaml", registry)
    assert loaded.terms[0].training["sparse_file"] == str(folder.resolve() / "sparse" / "{element}.idx")
    assert loaded.training.write_sparse_index == "/abs/chosen_{element}.idx"
    assert "sparse_file" not in loaded.terms[1].training
