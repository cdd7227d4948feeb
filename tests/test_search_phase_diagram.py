"""The search's phase diagram on the tiny config (Morse reference, linear model) with the anneal
pool and the baseline on: both sampled at every composition, the baseline kept out of training,
the amorphous voltage profile written, and every structure on the hulls converged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pesmith import ase_files
from pesmith.plugins.references.morse import MorseCalculator
from pesmith.simulate.relax import RelaxSettings, relax

from test_search_loop import POOL, SHORT_QUENCH, run_search, tiny_config

pytestmark = [
    pytest.mark.filterwarnings("ignore::pesmith.calculator.ExtrapolationWarning"),  # the pool's MD takes the linear model far from its data
    pytest.mark.slow,  # every test here runs a complete search loop (the module's fixture, or its own)
]

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


def test_the_screen_sends_the_pool_members_lowest_in_reference_energy(searched):
    output, result = searched
    with ase_files.connect(output / "reference.db") as db:
        for step in result.steps:
            rows = list(db.select(source=f"step {step.step + 1} screen"))
            assert len(rows) == step.screened >= step.candidates
            assert all(row.get("status") == "ok" for row in rows)
            assert step.screen_energy_rmse_meV_per_atom is not None
            picked = sorted((output / "structures").glob(f"step{step.step + 1}_pool*.xyz"))
            assert len(picked) == step.candidates

            def screen_energy(path):
                positions = ase_files.read(path, index=-1).positions
                return min(rows, key=lambda row: np.abs(row.positions - positions).max()).energy

            assert sorted(screen_energy(p) for p in picked) == sorted(row.energy for row in rows)[: step.candidates]


def test_with_the_screen_the_reference_not_the_model_decides_which_members_go(tmp_path, monkeypatch):
    """A screen that ranks the pool the other way round from the model (members arrive lowest
    model energy first) sends the members highest in model energy."""
    from pesmith.search.phases import anneal as anneal_phase

    seen = []

    def reversed_screen(ctx, members, source):
        assert source == "step 1 screen"
        seen.append([m.positions.copy() for m in members])
        return [-float(k) for k in range(len(members))]

    monkeypatch.setattr(anneal_phase, "screen", reversed_screen)
    result = run_search(tiny_config(tmp_path, confirm=CONFIRM, path=[3.75, 3.0], **POOL))
    [members] = seen
    assert len(members) > CONFIRM["candidates"]
    picked = [ase_files.read(p, index=-1).positions for p in sorted((tmp_path / "out" / "structures").glob("step1_pool*.xyz"))]
    sent = sorted(min(range(len(members)), key=lambda k: np.abs(members[k] - positions).max()) for positions in picked)
    assert sent == list(range(len(members)))[-CONFIRM["candidates"]:]
    assert result.steps[0].screened == len(members)


def test_with_the_screen_the_start_is_the_pool_cell_lowest_in_reference_energy(tmp_path, monkeypatch):
    """start.pool with anneal.screen: a screen that ranks the cells the other way round from
    the model makes the cell highest in model energy the start (workers: 1 runs the map here,
    so results can be recorded)."""
    from pesmith.search.phases import anneal as anneal_phase

    quenched, sources = [], []

    def recording(*args):
        quenched.append(real(*args))
        return quenched[-1]

    def reversed_screen(ctx, members, source):
        sources.append(source)
        model_energy = {r.atoms.positions.tobytes(): r.energy for r in quenched if r.ok}
        return [-model_energy[m.positions.tobytes()] for m in members]

    real = anneal_phase.anneal_with_model
    monkeypatch.setattr(anneal_phase, "anneal_with_model", recording)
    monkeypatch.setattr(anneal_phase, "screen", reversed_screen)
    start = {"atoms": 19, "melt_quench": dict(SHORT_QUENCH["melt_quench"]), "driver": "model", "pool": 3}
    lines = []
    run_search(tiny_config(tmp_path, start=start, confirm=CONFIRM, path=[3.75, 3.0], **POOL), echo=lines.append)
    ok = [r for r in quenched[:3] if r.ok]
    assert len(ok) >= 2
    [line] = [line for line in lines if line.startswith("start: the lowest of")]
    assert sources[0] == "start screen" and "by a reference single point" in line
    assert f"{max(r.energy for r in ok) / 19:.4f} eV/atom with the model" in line


def test_a_failed_start_pool_melt_quench_is_replaced_by_the_next_cell(tmp_path, monkeypatch):
    """start.draws: the first two model melt-quenches fail; the pool still reaches start.pool
    cells from the replacements, and the start line counts the failures."""
    from pesmith.search.phases import anneal as anneal_phase
    from pesmith.simulate.relax import Relaxed

    calls = []

    def failing_first_two(*args):
        calls.append(args[-1])
        if len(calls) <= 2:
            return Relaxed(reason="anneal MD stopped early: two atoms closer than 1.2 Å")
        return real(*args)

    real = anneal_phase.anneal_with_model
    monkeypatch.setattr(anneal_phase, "anneal_with_model", failing_first_two)
    start = {"atoms": 19, "melt_quench": dict(SHORT_QUENCH["melt_quench"]), "driver": "model", "pool": 3, "draws": 2}
    lines = []
    run_search(tiny_config(tmp_path, start=start, path=[3.75, 3.0], anneal=SHORT_QUENCH), echo=lines.append)
    [line] = [line for line in lines if line.startswith("start: the lowest of")]
    assert "the lowest of 3 Li15Si4 cells" in line and "(2 failed;" in line
    seeds = [atoms.info["anneal_seed"] for atoms in calls[:5]]
    assert len(set(seeds)) == 5  # five distinct cells: three first, then two replacements


def test_without_the_screen_the_pool_members_lowest_in_model_energy_go(tmp_path):
    pool = {**POOL, "anneal": {**POOL["anneal"], "screen": False}}
    lines = []
    result = run_search(tiny_config(tmp_path, confirm=CONFIRM, path=[3.75, 3.0], **pool), echo=lines.append)
    [line] = [line for line in lines if line.startswith("step 1: annealed")]
    assert "reference single points" not in line
    assert result.steps[0].screened == 0 and result.steps[0].candidates == CONFIRM["candidates"]
    with ase_files.connect(tmp_path / "out" / "reference.db") as db:
        assert not list(db.select(source="step 1 screen"))
