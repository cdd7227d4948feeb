"""The calculator's Verlet neighbor list (skin): reused below half the skin, rebuilt above it and on
a change of cell, numbers or pbc, with results equal to a list built afresh at every call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from pesmith.calculator import PesmithCalculator
from pesmith.errors import ConfigError
from pesmith.plugins.descriptors.acsf import ACSF
from pesmith.plugins.models.nn import BehlerParrinello
from pesmith.potential import Potential
from pesmith.testing import sample_structure

SKIN = 1.0  # Å


def lisi_potential(cutoff: float = 4.5) -> Potential:
    """An untrained Li-Si NN + ACSF with radial and angular terms (cost, not accuracy, matters)."""
    descriptor = ACSF(["Li", "Si"], cutoff=cutoff, angular_cutoff=3.5, n_radial=4, n_angular=1, zetas=[1.0])
    torch.manual_seed(0)
    model = BehlerParrinello(descriptor.species, descriptor.n_features, hidden=[6])
    return Potential(descriptor, model, {"Li": -1.9, "Si": -5.4})


@pytest.fixture(scope="module")
def potential() -> Potential:
    return lisi_potential()


def lisi_cell(seed: int = 0):
    """512 atoms: diamond Si (4 x 4 x 4 cubic cells) with a quarter of the sites Li, rattled by 0.1 Å."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(4)
    rng = np.random.default_rng(seed)
    atoms.numbers[rng.permutation(len(atoms))[: len(atoms) // 4]] = 3
    atoms.rattle(0.1, rng=rng)
    return atoms


def labels(atoms, calculator) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Energy (eV), per-atom energies, forces (eV/Å) and stress (eV/Å^3) of ``atoms``."""
    work = atoms.copy()
    work.calc = calculator
    return work.get_potential_energy(), work.get_potential_energies(), work.get_forces(), work.get_stress()


def assert_same_labels(atoms, calculator, potential) -> None:
    """``calculator`` gives what a new calculator with a list built afresh (skin 0) gives."""
    ours, fresh = labels(atoms, calculator), labels(atoms, PesmithCalculator(potential, skin=0.0))
    assert ours[0] == pytest.approx(fresh[0], abs=1e-12 * len(atoms))
    for a, b in zip(ours[1:], fresh[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def displaced(atoms, distance: float, rng: np.random.Generator):
    """``atoms`` with every atom moved by ``distance`` (Å) in a random direction."""
    directions = rng.normal(size=(len(atoms), 3))
    moved = atoms.copy()
    moved.positions += distance * directions / np.linalg.norm(directions, axis=1)[:, None]
    return moved


def test_a_512_atom_cell_reuses_its_list_below_half_the_skin_and_rebuilds_above(potential):
    rng = np.random.default_rng(0)
    start = lisi_cell()
    calculator = PesmithCalculator(potential, skin=SKIN)
    assert_same_labels(start, calculator, potential)
    assert calculator.neighbors.builds == 1
    for distance in (0.2, 0.45, 0.49):  # every atom moved, none by more than skin / 2 from the build
        assert_same_labels(displaced(start, distance, rng), calculator, potential)
        assert calculator.neighbors.builds == 1
    beyond = start.copy()
    beyond.positions[17] += [0.0, 0.51 * SKIN, 0.0]  # one atom past skin / 2
    assert_same_labels(beyond, calculator, potential)
    assert calculator.neighbors.builds == 2
    assert_same_labels(displaced(beyond, 0.3, rng), calculator, potential)  # from the new reference
    assert calculator.neighbors.builds == 2


def test_pairs_within_the_cutoff_are_found_after_every_small_move():
    """A displacement just under skin / 2 towards each other brings pairs from cutoff + skin
    (nearly) to the cutoff: they must be in the stored list, and the filtered list equal the fresh one."""
    potential = lisi_potential(cutoff=4.0)
    rng = np.random.default_rng(3)
    start = sample_structure(potential.species, potential.cutoff, seed=4, n_atoms=12)  # cell < 2 cutoffs: many images
    calculator = PesmithCalculator(potential, skin=SKIN)
    assert_same_labels(start, calculator, potential)
    for _ in range(5):
        assert_same_labels(displaced(start, 0.499 * SKIN, rng), calculator, potential)
    assert calculator.neighbors.builds == 1


def test_a_change_of_cell_numbers_or_pbc_rebuilds_the_list(potential):
    start = lisi_cell(seed=1)
    calculator = PesmithCalculator(potential, skin=SKIN)
    labels(start, calculator)
    strained = start.copy()
    strained.set_cell(start.cell.array * 1.001, scale_atoms=False)  # no atom moves
    assert_same_labels(strained, calculator, potential)
    swapped = start.copy()
    swapped.numbers[[0, 4]] = swapped.numbers[[4, 0]]
    assert_same_labels(swapped, calculator, potential)
    slab = start.copy()
    slab.pbc = (True, True, False)
    work = slab.copy()
    work.calc = calculator
    fresh = slab.copy()
    fresh.calc = PesmithCalculator(potential, skin=0.0)
    np.testing.assert_allclose(work.get_forces(), fresh.get_forces(), rtol=0, atol=1e-12)
    assert calculator.neighbors.builds == 4


def test_nve_md_with_a_skin_follows_the_trajectory_of_a_fresh_list(potential):
    atoms = lisi_cell(seed=2)
    thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(0))
    runs = []
    for skin in (0.0, SKIN):
        work = atoms.copy()
        work.calc = PesmithCalculator(potential, skin=skin)
        energies = []
        dynamics = VelocityVerlet(work, 2.0 * units.fs)
        dynamics.attach(lambda: energies.append((work.get_potential_energy(), work.get_stress())), interval=1)
        dynamics.run(8)
        runs.append((work.positions.copy(), energies, work.calc.neighbors.builds))
    (positions0, energies0, builds0), (positions1, energies1, builds1) = runs
    np.testing.assert_allclose(positions1, positions0, rtol=0, atol=1e-12)
    for (e0, s0), (e1, s1) in zip(energies0, energies1):
        assert e1 == pytest.approx(e0, abs=1e-12 * len(atoms))
        np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-12)
    assert builds0 == 9 and 1 <= builds1 < builds0  # 9 calls: the start and 8 steps


@pytest.mark.parametrize("skin", [-0.5, float("nan")])
def test_a_negative_skin_is_a_config_error_naming_the_option(potential, skin):
    with pytest.raises(ConfigError, match="^skin: .*>= 0") as error:
        PesmithCalculator(potential, skin=skin)
    assert "\n" not in str(error.value)


def test_two_atoms_closing_in_from_beyond_the_cutoff_are_found_without_a_rebuild():
    """Li and Si at cutoff + 0.9 skin, then each 0.49 skin closer: 0.08 skin inside the cutoff."""
    from ase import Atoms

    potential = lisi_potential()
    far = potential.cutoff + 0.9 * SKIN  # Å
    start = Atoms("LiSi", positions=[[0, 0, 0], [far, 0, 0]], cell=[30.0, 30.0, 30.0], pbc=True)
    calculator = PesmithCalculator(potential, skin=SKIN)
    assert np.all(labels(start, calculator)[2] == 0)  # beyond the cutoff: no force
    close = start.copy()
    close.positions[:, 0] += [0.49 * SKIN, -0.49 * SKIN]
    assert_same_labels(close, calculator, potential)
    assert np.abs(labels(close, calculator)[2]).max() > 0
    assert calculator.neighbors.builds == 1
