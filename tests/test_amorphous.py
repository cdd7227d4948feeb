"""Amorphous cells: random packings that do not jam, and melt-quench MD with any ASE calculator."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pesmith.errors import ConfigError
from pesmith.plugins.references.base import CalculatorReference
from pesmith.plugins.references.morse import Morse
from pesmith.simulate.md import MeltQuenchSettings, melt_quench
from pesmith.simulate.packing import min_image_distance, random_cell


@pytest.mark.parametrize("n_atoms", [30, 120, 500])
@pytest.mark.parametrize("volume_per_atom", [14.0, 17.0, 20.0])
def test_random_cell_keeps_the_minimum_distance_at_liquid_densities(n_atoms, volume_per_atom):
    n_si = n_atoms // 4
    atoms = random_cell({"Li": n_atoms - n_si, "Si": n_si}, volume_per_atom, np.random.default_rng(n_atoms), min_distance=2.2)
    assert atoms.get_chemical_formula(mode="metal") == f"Li{n_atoms - n_si}Si{n_si}"
    assert atoms.get_volume() / n_atoms == pytest.approx(volume_per_atom)
    assert np.allclose(atoms.cell.array, np.diag(atoms.cell.lengths()))  # a cube
    # every pair, periodic images included (cutoff beyond the stated minimum)
    assert min_image_distance(atoms.positions, atoms.cell.array, 3.0) >= 2.2
    scaled = atoms.get_scaled_positions(wrap=False)
    assert ((scaled >= 0) & (scaled < 1)).all()


def test_random_cell_is_reproducible_and_shuffles_the_elements():
    first = random_cell({"Li": 15, "Si": 4}, 16.0, np.random.default_rng(3))
    second = random_cell({"Li": 15, "Si": 4}, 16.0, np.random.default_rng(3))
    other = random_cell({"Li": 15, "Si": 4}, 16.0, np.random.default_rng(4))
    assert (first.positions == second.positions).all() and (first.numbers == second.numbers).all()
    assert not np.allclose(first.positions, other.positions)
    assert list(first.symbols) != sorted(first.symbols)  # not all Li then all Si


def test_random_cell_refuses_what_cannot_exist_and_gives_up_after_bounded_attempts():
    with pytest.raises(ConfigError, match="beyond random close packing.*at least"):
        random_cell({"Li": 20}, 10.0, np.random.default_rng(0), min_distance=2.8)
    # packing fraction 0.62: allowed by the bound, but no start is pushed apart in 1 attempt
    with pytest.raises(ConfigError, match="in 1 attempts"):
        random_cell({"Li": 30}, 14.0, np.random.default_rng(0), min_distance=2.55, max_attempts=1)
    with pytest.raises(ConfigError, match="at least one atom"):
        random_cell({"Li": 0}, 14.0, np.random.default_rng(0))


SHORT = MeltQuenchSettings(melt_K=2500.0, melt_ps=0.1, quench_ps=0.2, final_K=100.0, timestep_fs=2.0, interval=10)


def morse_calculator():
    assert issubclass(Morse, CalculatorReference)  # what the generate recipe relies on
    return Morse().make_calculator()


def test_melt_quench_frames_are_reproducible_snapshots_without_a_calculator():
    atoms = random_cell({"Li": 12, "Si": 4}, 17.0, np.random.default_rng(0))
    frames = melt_quench(atoms, morse_calculator(), SHORT, np.random.default_rng(1))
    again = melt_quench(atoms, morse_calculator(), SHORT, np.random.default_rng(1))
    other = melt_quench(atoms, morse_calculator(), SHORT, np.random.default_rng(2))
    assert SHORT.n_steps == 150 and len(frames) == SHORT.n_snapshots == 15
    assert [f.info["md_step"] for f in frames] == list(range(10, 151, 10))
    assert all(f.calc is None and (f.cell == atoms.cell).all() and (f.numbers == atoms.numbers).all() for f in frames)
    assert all((a.positions == b.positions).all() for a, b in zip(frames, again))
    assert not np.allclose(frames[-1].positions, other[-1].positions)
    assert not np.allclose(frames[0].positions, atoms.positions)


def test_melt_quench_stops_when_two_atoms_come_closer_than_min_distance():
    atoms = random_cell({"Li": 12, "Si": 4}, 17.0, np.random.default_rng(0))
    every_step = SHORT.model_copy(update={"interval": 1})
    full = melt_quench(atoms, morse_calculator(), every_step, np.random.default_rng(1))
    closest = np.array([min_image_distance(f.positions, f.cell.array, 3.0) for f in full])  # after steps 1, 2, ...
    threshold = closest[:5].min()  # not crossed in the first 5 steps
    assert closest.min() < threshold  # but later
    first_below = int(np.argmax(closest < threshold))
    stopped = melt_quench(atoms, morse_calculator(), every_step, np.random.default_rng(1), min_distance=threshold)
    assert len(stopped) == first_below  # the frames of the steps before the one that came too close
    assert all((a.positions == b.positions).all() for a, b in zip(stopped, full))


def test_melt_quench_temperature_follows_the_schedule():
    settings = MeltQuenchSettings(melt_K=3000.0, melt_ps=0.2, quench_ps=0.3, final_K=50.0, timestep_fs=2.0, friction=0.05, interval=5)
    atoms = random_cell({"Li": 24, "Si": 8}, 17.0, np.random.default_rng(5))
    frames = melt_quench(atoms, morse_calculator(), settings, np.random.default_rng(0))
    melt = [f.info["temperature_K"] for f in frames if f.info["md_step"] <= settings.n_melt]
    last = [f.info["temperature_K"] for f in frames[-6:]]
    assert np.mean(melt) > 2000.0  # the thermostat holds about 3000 K (32 atoms: large fluctuations)
    assert np.mean(last) < 800.0 < np.mean(melt) / 3
    targets = [f.info["target_K"] for f in frames]
    assert targets[0] == 3000.0 and targets[-1] == pytest.approx(50.0) and np.all(np.diff(targets) <= 0)


def test_melt_quench_settings_ranges():
    with pytest.raises(ValidationError, match="final_K"):
        MeltQuenchSettings(melt_K=300.0, final_K=500.0)
    with pytest.raises(ValidationError, match="no snapshot"):
        MeltQuenchSettings(melt_ps=0.0, quench_ps=0.01, timestep_fs=1.0, interval=50)
    with pytest.raises(ValidationError, match="timestep_fs"):
        MeltQuenchSettings(timestep_fs=10.0)
    with pytest.raises(ValidationError, match="friction"):
        MeltQuenchSettings(friction=0.0)


def test_exploration_quenches_from_start_k_to_temperature_k():
    from pesmith.search.explore import ExploreSettings

    schedule = ExploreSettings(frames=5, interval=4, start_K=1500.0, temperature_K=300.0, timestep_fs=2.0).md_settings()
    assert schedule.n_steps == 20 and schedule.n_snapshots == 5
    assert [schedule.target_K(step) for step in (1, 10, 20)] == pytest.approx([1440.0, 900.0, 300.0])
    constant = ExploreSettings(frames=5, interval=4, temperature_K=300.0).md_settings()
    assert {constant.target_K(step) for step in range(1, 21)} == {300.0}
    with pytest.raises(ValueError, match="start_K .* must not be below temperature_K"):
        ExploreSettings(frames=5, start_K=200.0, temperature_K=300.0)
