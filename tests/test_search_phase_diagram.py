"""The search's phase diagram on the tiny config (Morse reference, linear model) with the anneal
pool and the baseline on: both sampled at every composition, the baseline kept out of training,
the amorphous voltage profile written, and every structure on the hulls converged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pesmith import ase_files
from pesmith.plugins.references.morse import MorseCalculator
from pesmith.search.relaxation import RelaxSettings, relax

from test_search_loop import POOL, run_search, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning")  # the pool's MD takes the linear model far from its data

CONFIRM = {"candidates": 2, "relax": "positions", "fmax": 0.05, "steps": 400, "frame_interval": 10}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool")
    result = run_search(tiny_config(folder, confirm=CONFIRM, **POOL))
    return folder / "out", result


def test_search_and_baseline_at_every_composition_with_the_same_reference_budget(searched):
    output, result = searched
    state = json.loads((output / "checkpoint.json").read_text())
    compared = {row["li_per_si"]: row for row in result.search_vs_baseline}
    assert sorted(compared) == [2.25, 3.0, 3.75]
    assert compared[3.75]["search_structures"] == 1  # the start: one reference relaxation
    for x in (3.0, 2.25):
        assert compared[x]["search_structures"] == CONFIRM["candidates"]
    budget = {3.75: 1, 3.0: CONFIRM["candidates"], 2.25: CONFIRM["candidates"]}
    for x, row in compared.items():
        assert 1 <= row["baseline_structures"] <= budget[x]
        assert row["search_minus_baseline_meV_per_atom"] == pytest.approx(1000 * (row["search_lowest_eV_per_atom"] - row["baseline_lowest_eV_per_atom"]))
        assert min(row["search_lowest_by_origin"].values()) == pytest.approx(row["search_lowest_eV_per_atom"])
    confirmed = {e["origin"] for e in state["entries"]}
    assert set().union(*(result.search_vs_baseline[i]["search_lowest_by_origin"] for i in range(1, 3))) <= confirmed
    assert set(compared[3.75]["search_lowest_by_origin"]) == {"start"}
    assert len(state["baseline"]) == sum(row["baseline_structures"] for row in compared.values())
    assert all(entry["origin"] == "melt-quench" for entry in state["baseline"])


def test_the_baseline_stays_out_of_the_training_data(searched):
    output, _ = searched
    with ase_files.connect(output / "reference.db") as db:
        sources = {row.get("source") for row in db.select()}
    assert not any("baseline" in s for s in sources)
    hashes = {ase_files.read(output / e["structure"], index=-1).get_chemical_formula() for e in json.loads((output / "checkpoint.json").read_text())["baseline"]}
    assert hashes  # baseline structures were written as files, not labels


def test_the_pool_mixes_annealed_ga_candidates_and_melt_quenches(searched):
    output, result = searched
    state = json.loads((output / "checkpoint.json").read_text())
    assert {e["origin"] for e in state["entries"]} <= {"anneal of ga", "melt-quench"}
    for step in result.steps:
        assert step.annealed + step.failed_anneals == POOL["anneal"]["candidates"] + POOL["anneal"]["melt_quenches"]
        assert step.pool_from_ga + step.pool_from_melt_quench == step.candidates == CONFIRM["candidates"]
        assert step.lowest_origin in ("anneal of ga", "melt-quench")
    with ase_files.connect(output / "candidates.db") as db:
        verdicts = [row for row in db.select() if row.get("reference_method")]
    assert len(verdicts) == sum(step.pool_from_ga for step in result.steps)  # melt-quenched members have no GA row


def test_the_amorphous_voltage_profile_is_written_beside_the_crystalline_one(searched):
    output, result = searched
    assert result.amorphous_voltages and result.voltages
    assert result.amorphous_voltages[0]["x_low"] == 0.0
    assert result.amorphous_voltages[-1]["x_high"] in (2.25, 3.0, 3.75)
    rows = (output / "voltage.csv").read_text().splitlines()[1:]
    assert {row.split(",")[0] for row in rows} >= {"crystalline", "amorphous"}
    assert (output / "voltage.png").stat().st_size > 0


def test_every_structure_on_the_hulls_is_converged(searched):
    """Relaxing each hull vertex further with the same reference (fmax 0.02 eV/Å) lowers its
    energy by less than 2 meV/atom."""
    output, _ = searched
    rows = json.loads((output / "hull.json").read_text())["entries"]
    on_a_hull = [r for r in rows if r["on_hull"] or (r["e_above_amorphous_hull_eV_per_atom"] or 1.0) < 1e-9]
    assert any(r["kind"] == "crystal" for r in on_a_hull) and any(r["kind"] not in ("crystal",) for r in on_a_hull)
    for row in on_a_hull:
        atoms = ase_files.read(output / row["structure"], index=-1)
        further = relax(atoms, MorseCalculator(), RelaxSettings(relax="positions", fmax=0.02, steps=2000))
        lowered = row["energy_per_atom_eV"] - further.energy / len(atoms)
        assert -1e-4 <= lowered < 2e-3, row["structure"]  # eV/atom: FIRE may end a hair above where it began
        assert row["max_force_eV_per_A"] < CONFIRM["fmax"]
