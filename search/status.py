"""``pesmith search --status``: where a run stands, read from its checkpoint (no model loaded)."""

from __future__ import annotations

from pathlib import Path

from . import checkpoint


def describe(checkpoint_path: Path) -> str:
    """A few lines: phase, step, the current GA generation and best energy, finished steps."""
    if not checkpoint_path.is_file():
        return f"no search has started in {checkpoint_path.parent} (no {checkpoint_path.name})"
    state = checkpoint.load(checkpoint_path, None)
    if state.phase == "done":
        lines = [f"{checkpoint_path.parent}: finished, {len(state.steps)} steps"]
    else:
        lines = [f"{checkpoint_path.parent}: phase {state.phase}, at step {state.step + 1}"]
    if state.model:
        lines.append(f"model: {state.model} ({state.model_hash})")
    ga = state.ga
    if state.phase == "ga" and ga is not None and ga.log:
        last = ga.log[-1]
        lines.append(
            f"GA: {ga.generation} generations, {len(ga.evaluations)} evaluated, best {last.best_energy:.4f} eV,"
            f" {ga.stale} generations without improvement"
        )
    if state.phase == "confirm" and state.confirm is not None:
        lines.append(f"reference relaxations: {len(state.confirm.done)} of {len(state.confirm.picked)} done")
    for record in state.steps:
        if record.confirmed:
            lines.append(
                f"step {record.step + 1}: x {record.x_from:.2f} -> {record.x_to:.2f}, {record.evaluated} evaluated,"
                f" {record.confirmed} confirmed, lowest {record.lowest_reference_energy_per_atom:.4f} eV/atom"
            )
    return "\n".join(lines)
