"""``pesmith search --status``: where a run stands, read from its checkpoint (no model loaded)."""

from __future__ import annotations

import json
from pathlib import Path


def describe(checkpoint_path: Path) -> str:
    """A few lines: phase, step, the current GA generation and best energy, finished steps."""
    if not checkpoint_path.is_file():
        return f"no search has started in {checkpoint_path.parent} (no {checkpoint_path.name})"
    state = json.loads(checkpoint_path.read_text())
    steps = state.get("steps", [])
    if state["phase"] == "done":
        lines = [f"{checkpoint_path.parent}: finished, {len(steps)} steps"]
    else:
        lines = [f"{checkpoint_path.parent}: phase {state['phase']}, at step {state['step'] + 1}"]
    if state.get("model"):
        lines.append(f"model: {state['model']} ({state['model_hash']})")
    ga = state.get("ga") or {}
    if state["phase"] == "ga" and ga.get("log"):
        last = ga["log"][-1]
        lines.append(
            f"GA: {ga['generation']} generations, {len(ga['evaluations'])} evaluated, best {last['best_energy']:.4f} eV,"
            f" {ga['stale']} generations without improvement"
        )
    if state["phase"] == "confirm" and state.get("confirm"):
        confirm = state["confirm"]
        lines.append(f"reference relaxations: {len(confirm['done'])} of {len(confirm['picked'])} done")
    for record in steps:
        if record.get("confirmed"):
            lines.append(
                f"step {record['step'] + 1}: x {record['x_from']:.2f} -> {record['x_to']:.2f}, {record['evaluated']} evaluated,"
                f" {record['confirmed']} confirmed, lowest {record['lowest_reference_energy_per_atom']:.4f} eV/atom"
            )
    return "\n".join(lines)
