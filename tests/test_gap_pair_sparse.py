"""gap_fit's 2-body GAP: pair distances as sparse points (training.sparse_method uniform) for
distance_2b with the linear kernel, written as gap_fit's sparse file (write_sparse_values)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list

from pesmith.errors import ConfigError, DataError
from pesmith.plugins.models.sparsify import select_uniform
from pesmith.potential import ENERGY, Potential

from test_gap import morse_cells

THETA, CUTOFF, WIDTH = 0.6, 4.5, 0.8  # Å


def pair_gap(registry, species=("Si",), delta=2.0, pairs=None) -> Potential:
    descriptor = registry.get("descriptor", "distance_2b")(
        species=list(species), cutoff=CUTOFF, theta=THETA, cutoff_transition_width=WIDTH, r_min=1.0, pairs=pairs,
        grid_spacing=THETA / 3,
    )
    model = registry.get("model", "gap")(species=descriptor.species, n_features=descriptor.n_features, kernel="linear", delta=delta)
    return Potential(descriptor, model)


def fit(registry, data, species=("Si",), delta=2.0, pairs=None, **settings) -> Potential:
    potential = pair_gap(registry, species, delta, pairs)
    options = {"n_sparse": 15, "sparse_method": "uniform", "sigma_energy": 0.005, "sigma_force": 0.05, "progress": False,
               "core_repulsion": False, "jitter": 1e-10}
    potential.fit(data, None, potential.model.settings_schema(**(options | settings)))
    return potential


@pytest.fixture(scope="module")
def si():
    return morse_cells(8, seed=21, silicon_only=True)


def test_uniform_takes_the_first_value_of_every_bin_in_order():
    values = np.array([0.1, 0.0, 0.52, 0.48, 1.0, 0.9, 0.05])  # bins of 3 points: 0, 0.5, 1
    assert select_uniform(values, 3, np.random.default_rng(0)).tolist() == [0, 2, 4]


def test_uniform_fills_empty_bins_with_distinct_values_from_occupied_ones():
    values = np.array([0.0, 0.01, 0.02, 0.03, 1.0])  # 4 bins, two of them empty
    for seed in range(5):
        chosen = select_uniform(values, 4, np.random.default_rng(seed))
        assert len(set(chosen.tolist())) == 4 and np.all(np.diff(chosen) > 0)
        assert {0, 4} <= set(chosen.tolist())
    assert select_uniform(values, 5, np.random.default_rng(1)).tolist() == [0, 1, 2, 3, 4]


def test_the_fitted_2b_energy_is_gap_fits_sum_over_ordered_pairs(registry, si, tmp_path):
    """E - e0 = sum_{i != j} fc(r_ij) sum_m alpha_m delta_g^2 fc(r_m) exp(-(r_ij - r_m)^2 / 2 theta^2),
    delta_g = delta / 2, with the sparse distances r_m as written to the gap_fit sparse file."""
    path = tmp_path / "sparse_2b.txt"
    potential = fit(registry, si, write_sparse_values=str(path))
    model, descriptor = potential.model, potential.descriptor
    numbers = np.loadtxt(path).reshape(-1, 2)
    weights, r_m = torch.as_tensor(numbers[:, 0]), torch.as_tensor(numbers[:, 1])
    assert len(r_m) == 15 == model.n_sparse and np.all(np.diff(numbers[:, 1]) != 0)
    torch.testing.assert_close(weights, descriptor.cutoff_function(r_m), rtol=0, atol=1e-15)

    def kernel(a, b):  # gap_fit's covariance of two pair energies, eV^2
        delta_g = model.delta / 2
        fa, fb = descriptor.cutoff_function(a), descriptor.cutoff_function(b)
        return delta_g**2 * fa[:, None] * fb[None, :] * torch.exp(-((a[:, None] - b[None, :]) ** 2) / (2 * THETA**2))

    kmm = model._kernel(model.sparse_points, model.sparse_species, model.sparse_points, model.sparse_species)
    torch.testing.assert_close(kmm, kernel(r_m, r_m), rtol=0, atol=1e-8 * (model.delta / 2) ** 2)
    for atoms in morse_cells(3, seed=22, silicon_only=True).structures:
        distances = torch.as_tensor(neighbor_list("d", atoms, CUTOFF))  # every ordered pair
        expected = float(kernel(distances, r_m).sum(0) @ model.alpha) + len(atoms) * potential.reference["Si"]
        predicted = float(potential.predict([atoms])[ENERGY][0])
        assert abs(predicted - expected) < 1e-8 * len(atoms)


def test_gap_fit_on_our_pair_sparse_points_predicts_what_we_predict(registry, si, tmp_path):
    """The whole chain against QUIP: gap_fit's distance_2b (delta half ours) on the sparse
    distances we wrote, read with its sparse_method=file."""
    import ase.io

    from pesmith.calculator import PesmithCalculator

    quip_potential = pytest.importorskip("quippy.potential", reason='quippy-ase: pip install "pesmith[dev]"')
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).with_name("gap_fit"))
    if not Path(gap_fit).is_file():
        pytest.skip("gap_fit (quippy-ase) not found")
    ase.io.write(tmp_path / "train.xyz", si.labeled_structures(keep_info=False), format="extxyz")
    delta, jitter = 2.0, 1e-8  # gap_fit's sparse_jitter is absolute (eV^2), ours times delta^2
    ours = fit(registry, si, delta=delta, jitter=jitter / delta**2, write_sparse_values=str(tmp_path / "sparse_2b.txt"))
    term = (
        f"distance_2b Z1=14 Z2=14 cutoff={CUTOFF} cutoff_transition_width={WIDTH} covariance_type=ard_se"
        f" theta_uniform={THETA} delta={delta / 2} sparse_method=file sparse_file={tmp_path / 'sparse_2b.txt'} add_species=F"
    )
    command = [gap_fit, "atoms_filename=train.xyz", f"gap={{{term}}}", "default_sigma={0.005 0.05 0.0 0.0}",
               f"sparse_jitter={jitter}", f"e0={{Si:{ours.reference['Si']!r}}}", "energy_parameter_name=energy",
               "force_parameter_name=forces", "gp_file=gap.xml"]
    process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout[-2000:]
    theirs = quip_potential.Potential(param_filename=str(tmp_path / "gap.xml"))
    for atoms in morse_cells(3, seed=23, silicon_only=True).structures:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = PesmithCalculator(ours), theirs
        assert abs(a.get_potential_energy() - b.get_potential_energy()) / len(atoms) < 1e-6  # eV/atom
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-6)  # eV/Å
        assert np.abs(b.get_forces()).max() > 0.1


def test_restricted_pairs_get_points_only_for_their_element_pairs(registry, tmp_path):
    lisi = morse_cells(6, seed=24)
    potential = fit(registry, lisi, ("Li", "Si"), pairs=[["Li", "Si"]], n_sparse=6,
                    write_sparse_values=str(tmp_path / "sparse_{element}.txt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse_LiSi.txt", "sparse_SiLi.txt"]
    assert potential.model.n_sparse == 12 and potential.model.sparse_species.tolist() == [0] * 6 + [1] * 6


def test_bad_pair_sparse_settings_are_one_line_errors(registry, si, tmp_path):
    lisi = morse_cells(3, seed=25)
    with pytest.raises(ConfigError, match="needs model.kernel linear"):
        descriptor = registry.get("descriptor", "distance_2b")(species=["Si"], cutoff=CUTOFF)
        model = registry.get("model", "gap")(species=["Si"], n_features=descriptor.n_features, kernel="squared_exponential")
        Potential(descriptor, model).fit(si, None, model.settings_schema(sparse_method="uniform", n_sparse=5, progress=False))
    with pytest.raises(ConfigError, match="write_sparse_values writes pair distances"):
        fit(registry, si, sparse_method="cur", write_sparse_values=str(tmp_path / "x.txt"))
    with pytest.raises(ConfigError, match="write_sparse_index needs environments.*write_sparse_values"):
        fit(registry, si, write_sparse_index=str(tmp_path / "x.idx"))
    with pytest.raises(ConfigError, match=r"must contain \{element\}"):
        fit(registry, lisi, ("Li", "Si"), n_sparse=3, write_sparse_values=str(tmp_path / "x.txt"))
    with pytest.raises(DataError, match=r"n_sparse 100000 exceeds the \d+ Si-Si pairs") as error:
        fit(registry, si, n_sparse=100_000)
    assert "\n" not in str(error.value)
