"""The search's typed state through its checkpoint and status, and the candidates.db store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk

from pesmith.errors import ConfigError
from pesmith.search import checkpoint
from pesmith.search.candidates import CandidateStore
from pesmith.search.ga import Evaluation, GAState, GenerationRecord
from pesmith.simulate.relax import Relaxed
from pesmith.search.state import ConfirmState, Entry, ModelRecord, Pick, SearchState, StepRecord
from pesmith.search.status import describe


def a_state() -> SearchState:
    evaluation = Evaluation("gabc", (1, 0, 1), 0, "random", (), -10.0, 0.1, None, {"row": 1})
    ga = GAState(1, ["gabc"], {"gabc": evaluation}, [GenerationRecord(0, 1, 0, 0, -10.0, -10.0)], 0, False, "")
    entry = Entry("structures/step1_gabc.xyz", -9.5, 5, None, 3.0, kind="step 1", label_rows=[4, 5], model_energy=-10.0)
    return SearchState(
        config_hash="h", rng=np.random.default_rng(3).bit_generator.state, phase="confirm", step=0, model="models/model_0.pt",
        model_hash="sha256:0123456789abcdef", models=[ModelRecord(0, "models/model_0.pt", "sha256:0123456789abcdef", {"energy_rmse_meV_per_atom": 1.0})],
        crystals=[Entry("structures/crystal_Li.xyz", -1.9, 1, None, 1.0, kind="crystal", file="Li.xyz")],
        start=Entry("structures/start.xyz", -20.0, 8, None, 2.0, kind="start"), current="structures/start.xyz", ga=ga,
        confirm=ConfirmState([Pick("gabc", 1, -10.0)], {"gabc": entry}), steps=[StepRecord(0, 3.75, 3.0, 1, 3, confirmed=1, lowest_reference_energy_per_atom=-1.9)],
        entries=[entry],
    )


def test_checkpoint_round_trips_the_typed_state_and_refuses_another_config(tmp_path):
    path = tmp_path / "checkpoint.json"
    state = a_state()
    checkpoint.save(path, state)
    assert checkpoint.load(path, "h") == state
    assert json.loads(path.read_text())["ga"]["population"] == ["gabc"]
    with pytest.raises(ConfigError, match="config changed"):
        checkpoint.load(path, "other")
    lines = describe(path).splitlines()
    assert "phase confirm, at step 1" in lines[0] and "reference relaxations: 1 of 1 done" in lines
    assert any(line.startswith("step 1: x 3.75 -> 3.00") for line in lines)


def test_a_version_1_checkpoint_still_loads(tmp_path):
    """Version 1 was the untyped dict: the same keys, entries without kind, file or label rows."""
    data = a_state().to_json()
    for entry in [*data["crystals"], data["start"], *data["entries"], *data["confirm"]["done"].values()]:
        for key in ("kind", "file", "label_rows", "model_energy"):
            entry.pop(key)
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps({"version": 1, **data}))
    state = checkpoint.load(path, "h")
    assert state.ga.population == ["gabc"] and state.confirm.picked == [Pick("gabc", 1, -10.0)] and state.start.energy == -20.0


def test_candidate_rows_are_written_once_with_their_origin_then_get_the_reference_verdict(tmp_path):
    store = CandidateStore(tmp_path / "candidates.db")
    atoms = bulk("Si", "diamond", 5.43)
    child = Evaluation("gchild", (0, 1), 2, "crossover", ("ga", "gb"))
    relaxed = Relaxed(atoms=atoms, energy=-9.0, energy_std=0.2, wall_time=0.5)
    outcome = store.add_evaluation(1, child, relaxed, atoms, "sha256:0123456789abcdef", "positions")
    assert (outcome.energy, outcome.energy_std) == (-9.0, 0.2)
    failed = store.add_evaluation(1, Evaluation("gfail", (1, 0), 2, "mutation", ("ga",)), Relaxed(reason="diverged\nmore"), atoms, "sha256:0", "none")
    assert failed.energy is None and failed.reason == "diverged"
    assert set(store.evaluated(1)) == {"gchild", "gfail"} and store.evaluated(2) == {}
    assert store.evaluated(1)["gchild"] == outcome
    store.record_reference(outcome.payload["row"], "morse", -8.5, None)
    with store._connect() as db:
        row = db.get(id=outcome.payload["row"])
        assert (row.operator, row.parents, row.generation, row.step) == ("crossover", "ga gb", 2, 1)
        assert row.confirmed and row.reference_energy == -8.5 and row.reference_method == "morse"
        assert db.get(genome_hash="gfail").parents == "ga"
    assert store.n_atoms(outcome.payload["row"]) == 2
