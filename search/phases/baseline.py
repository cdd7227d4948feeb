"""Phase *baseline*: melt-quench sampling at the composition the search is about to confirm, with
as many reference relaxations as the search spends there (:mod:`pesmith.search.baseline`).

Random cells of the step's target composition and size are melt-quenched and relaxed with the
current model (a model run that fails is replaced by the next cell, up to ``baseline.draws``
cells per relaxation); the quenched cells wait in ``state.confirm.baseline`` and are relaxed with
the reference in the same map as the search's own picks (phase *confirm*), so neither waits for
the other's longest relaxation. The start's baseline (one relaxation at the path's first
composition) is sampled by phase *start* the same way. Baseline labels stay out of
``reference.db``: no model of the search trains on them. A resumed run redoes the sampling from
the same seeds; finished reference relaxations are kept (``state.confirm.done``).
"""

from __future__ import annotations

from pesmith.simulate.relax import Relaxed

from ..baseline import sample_cells
from ..context import SearchContext
from ..state import Entry, Pick
from .anneal import ORIGIN_MELT_QUENCH, quench_until, target_counts, volume_per_atom

KEY = "baseline"  # pick keys are baseline0, baseline1, ...


def run(ctx: SearchContext) -> None:
    ctx.state.confirm.baseline = prepare(ctx, target_counts(ctx), len(ctx.state.confirm.picked))


def prepare(ctx: SearchContext, counts: dict[str, int], budget: int) -> list[Pick]:
    """``budget`` cells of ``counts`` (Li, Si) melt-quenched and relaxed with the current model,
    written to ``structures/``: the baseline's picks for the reference (fewer when the model
    failed on every draw)."""
    settings = ctx.config.baseline
    x = counts["Li"] / counts["Si"]
    cells = sample_cells(counts, volume_per_atom(ctx, counts, settings.volume_per_atom), budget * settings.draws, ctx.rng)
    quenched, chosen = quench_until(ctx, settings, cells, budget, f"baseline at x = {x:.2f}")
    picks = [
        Pick(f"{KEY}{index}", None, float(result.energy), ctx.write_structure(f"baseline_x{x:.3f}_{index}_quenched.xyz", result.atoms), ORIGIN_MELT_QUENCH)
        for index, result in enumerate(chosen)
    ]
    failed = sorted({q.reason.splitlines()[0] for q in quenched if not q.ok})
    ctx.echo(
        f"baseline at x = {x:.2f}: {len(chosen)} of {budget} cells melt-quenched with the model for the reference"
        f" ({len(quenched) - len(chosen)} of {len(quenched)} model melt-quenches failed{': ' + '; '.join(failed) if failed and len(chosen) < budget else ''})"
    )
    return picks


def is_baseline(key: str) -> bool:
    return key.startswith(KEY)


def entry(ctx: SearchContext, pick: Pick, relaxed: Relaxed) -> Entry:
    """The baseline entry of a reference relaxation of ``pick`` (its structure written when it succeeded)."""
    structure = ctx.write_structure(pick.structure.split("/")[-1].replace("_quenched", ""), relaxed.atoms) if relaxed.ok else None
    return Entry.of(relaxed, structure, kind="baseline", origin=ORIGIN_MELT_QUENCH, model_energy=pick.model_energy)


def finish(ctx: SearchContext, picks: list[Pick], entries: list[Entry], x: float) -> None:
    """Add the successful ``entries`` of the baseline's ``picks`` at ``x`` to the state; one line for the user."""
    state = ctx.state
    if round(x, 6) in state.baseline_done:  # a confirmation redone after a failure
        return
    ok = [e for e in entries if e.ok]
    state.baseline += ok
    state.baseline_done.append(round(x, 6))
    lowest = min((e.energy_per_atom for e in ok), default=None)
    reasons = sorted({e.reason.splitlines()[0] for e in entries if not e.ok})
    ctx.echo(
        f"baseline at x = {x:.2f}: {len(ok)} of {len(picks)} reference relaxations done, lowest"
        f" {'-' if lowest is None else f'{lowest:.4f}'} eV/atom" + (f"; failures: {'; '.join(reasons)}" if reasons else "")
    )
