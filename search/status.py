"""``pesmith search --status``: where a run stands, read from its checkpoint (no model loaded).

Steps are 1-based as in the search's log (step 1 is the first delithiation, ``path[0] ->
path[1]``): :func:`where` is the one wording of "phase and step" that ``--status``, the
``--resume`` line and the log agree on.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Iterable

from pesmith import ase_files

from . import checkpoint
from .state import SearchState


def step_of(state: SearchState) -> int:
    """The 1-based step the state's phase belongs to (0 before the first step's GA).

    ``state.step`` counts the steps confirmed: during *ga*, *anneal*, *baseline* and *confirm*
    the step under way is ``state.step + 1``; *confirm* then counts it, so *explore* and *train*
    (retraining on its labels) belong to step ``state.step``.
    """
    if state.phase in ("ga", "anneal", "baseline", "confirm"):
        return state.step + 1
    return state.step


def where(state: SearchState) -> str:
    """``"phase ga, at step 2"`` (``"phase start, before step 1"``, ``"phase hull, after step 2"``)."""
    step = step_of(state)
    if state.phase == "done":
        return f"finished, {len(state.steps)} steps"
    if step == 0:
        return f"phase {state.phase}, before step 1"
    if state.phase == "hull":
        return f"phase hull, after step {step}"
    return f"phase {state.phase}, at step {step}"


def grouped_reasons(reasons: Iterable[str | None]) -> str:
    """``"12 x 'fmax 0.1 eV/Å not reached ...', 4 x 'RuntimeError: ...'"``: the first line of each
    failure reason and how often it came, most frequent first (as ``pesmith label`` counts them)."""
    counts = Counter(reason.splitlines()[0] if reason else "no reason given" for reason in reasons)
    return ", ".join(f"{count} x {reason!r}" for reason, count in counts.most_common())


def describe(checkpoint_path: Path) -> str:
    """A few lines: phase, step, the current GA generation and best energy, finished steps."""
    if not checkpoint_path.is_file():
        return f"no search has started in {checkpoint_path.parent} (no {checkpoint_path.name})"
    state = checkpoint.load(checkpoint_path, None)
    lines = [f"{checkpoint_path.parent}: {where(state)}"]
    if state.model:
        lines.append(f"model: {state.model} ({state.model_hash})")
    ga = state.ga
    if state.phase == "ga" and ga is not None and ga.log:
        last = ga.log[-1]
        best = "-"
        if math.isfinite(last.best_energy) and state.current:
            n_atoms = len(ase_files.read(checkpoint_path.parent / state.current, index=-1)) - state.steps[-1].n_li_removed
            best = f"{last.best_energy / n_atoms:.4f} eV/atom"
        lines.append(
            f"GA: {ga.generation} generations, {len(ga.evaluations)} evaluated, best {best},"
            f" {ga.stale} generations without improvement"
        )
    if state.phase == "confirm" and state.confirm is not None:
        total, baseline = len(state.confirm.picked) + len(state.confirm.baseline), len(state.confirm.baseline)
        lines.append(f"reference relaxations: {len(state.confirm.done)} of {total} done" + (f" ({baseline} of them the baseline's)" if baseline else ""))
    for record in state.steps:
        if record.confirmed:
            lines.append(
                f"step {record.step + 1}: x {record.x_from:.2f} -> {record.x_to:.2f}, {record.evaluated} evaluated,"
                f" {record.confirmed} confirmed, lowest {record.lowest_reference_energy_per_atom:.4f} eV/atom"
            )
    return "\n".join(lines)
