"""ACSF: agreement with DScribe, and the descriptor contract (gradients, invariance, batching)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pesmith.errors import ConfigError
from pesmith.plugins.descriptors import acsf as acsf_module
from pesmith.plugins.descriptors.acsf import ACSF
from pesmith.structures import build_batch
from pesmith.testing import check_descriptor, distorted_lisi, features_gradients_jacobian, sample_structure

dscribe = pytest.importorskip("dscribe.descriptors")


def dscribe_columns(descriptor: ACSF, total: int) -> list[int]:
    """DScribe puts a G1 column before each species' G2 block; drop those."""
    n_g2 = descriptor.g2.shape[0]
    columns = []
    for s in range(len(descriptor.species)):
        start = s * (1 + n_g2) + 1
        columns += list(range(start, start + n_g2))
    return columns + list(range(len(descriptor.species) * (1 + n_g2), total))


@pytest.mark.parametrize("repeat,cutoff", [((1, 1, 1), 5.0), ((2, 1, 1), 6.0), ((2, 2, 2), 4.5)])
def test_acsf_equals_dscribe_on_periodic_lisi(repeat, cutoff):
    atoms = distorted_lisi(repeat, seed=sum(repeat))
    ours = ACSF(["Li", "Si"], cutoff=cutoff, g5_params=[[0.01, 1.0, 1.0], [0.05, 2.0, -1.0]])
    features = ours.featurize(build_batch([atoms], cutoff)).detach().numpy()
    g45 = ours.g45.numpy()
    peer = dscribe.ACSF(
        r_cut=cutoff, g2_params=ours.g2.numpy(), g4_params=g45[: ours.n_g4], g5_params=g45[ours.n_g4 :],
        species=["Li", "Si"], periodic=True,
    )
    expected = peer.create(atoms)
    expected = expected[:, dscribe_columns(ours, expected.shape[1])]
    assert features.shape == expected.shape
    relative = np.abs(features - expected) / np.maximum(np.abs(expected), 1e-12)
    assert relative.max() < 1e-8


def test_acsf_contract_lisi_with_small_angular_cutoff(capsys):
    summary = check_descriptor(ACSF(["Li", "Si"], cutoff=5.0, angular_cutoff=4.0, g5_params=[[0.02, 2.0, 1.0]]))
    assert capsys.readouterr().out == summary + "\n"  # a pass says what it checked
    lines = summary.splitlines()
    assert lines[0].startswith("check_descriptor passed: ACSF, species Li, Si,") and "cells of 6, 7, 8 atoms" in lines[0]
    checked = ["get_config round trip", "batch equals single", "features_and_jacobian equals autograd", "invariance (",
               "forces against finite differences", "stress against finite differences"]
    assert len(lines) == 1 + len(checked) and all(line.strip().startswith(c) for line, c in zip(lines[1:], checked)), summary


def test_acsf_contract_g5_without_g4():
    descriptor = ACSF(["Li", "Si"], cutoff=5.0, n_angular=0, g5_params=[[0.02, 2.0, 1.0], [0.05, 1.0, -1.0]])
    assert descriptor.n_g4 == 0 and descriptor.n_features == 2 * 12 + 3 * 2
    check_descriptor(descriptor)


def test_triplet_chunks_do_not_change_features_gradients_or_jacobian(monkeypatch):
    descriptor = ACSF(["Li", "Si"], cutoff=5.0, g5_params=[[0.02, 2.0, 1.0]])
    atoms = distorted_lisi()
    batch = build_batch([atoms], descriptor.cutoff)
    n_triplets = descriptor.triplets(batch.numbers, batch.edge_index, batch.edge_vectors())[0].shape[0]
    assert 10 * 7 < n_triplets <= acsf_module.TRIPLET_CHUNK
    whole = features_gradients_jacobian(descriptor, atoms)
    monkeypatch.setattr(acsf_module, "TRIPLET_CHUNK", 7)
    chunked = features_gradients_jacobian(descriptor, atoms)
    for one, other in zip(whole, chunked):
        assert torch.allclose(one, other, atol=1e-12, rtol=0)


def test_second_derivatives_through_acsf_are_refused():
    descriptor = ACSF(["Li", "Si"], cutoff=5.0)
    batch = build_batch([distorted_lisi()], descriptor.cutoff)
    vectors = batch.edge_vectors().detach().requires_grad_(True)
    features = descriptor(batch.numbers, batch.edge_index, vectors)
    with pytest.raises(NotImplementedError, match="differentiable once"):
        torch.autograd.grad(features.sum(), vectors, create_graph=True)


def test_acsf_contract_cutoff_larger_than_half_cell():
    descriptor = ACSF(["Li", "Si"], cutoff=6.5)
    atoms = sample_structure(descriptor.species, descriptor.cutoff, seed=3)
    assert min(atoms.cell.lengths()) < 2 * descriptor.cutoff
    check_descriptor(descriptor)


def test_acsf_describe_names_every_feature():
    descriptor = ACSF(["Si", "Li"], cutoff=5.0, n_radial=3, n_angular=1, zetas=[1])
    names = descriptor.describe()
    assert descriptor.species == ("Li", "Si")
    assert len(names) == descriptor.n_features == 2 * 3 + 3 * 2
    assert names[0].startswith("G2[Li]") and names[-1].startswith("G4[Si-Si]")


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"cutoff": -1.0}, "cutoff"),
        ({"cutoff": 1.5}, "shorter than the shortest Si bond"),
        ({"angular_cutoff": 9.0}, "angular_cutoff"),
        ({"angular_cutoff": 1.0}, "descriptor.angular_cutoff = 1.0"),
        ({"g4_params": [[0.1, 1.0, 0.5]]}, "lambda"),
    ],
)
def test_acsf_bad_hyperparameters_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        ACSF(["Si"], **kwargs)
