"""Phase *baseline*: melt-quench sampling at the composition the search just reached, with as
many reference relaxations as the search spent there (:mod:`pesmith.search.baseline`).

It runs after the start (one reference relaxation at the path's first composition) and after
each confirmation (``confirm.candidates`` of them). Random cells of the current structure's
composition and size are melt-quenched and relaxed with the current model (a model run that
fails is replaced by the next cell, up to ``baseline.draws`` cells per relaxation), then relaxed with
the reference. Their labels stay out of ``reference.db``: no model of the search trains on them.
A resumed run redoes the phase from the same seeds.
"""

from __future__ import annotations

import time

from ..baseline import sample_cells
from ..context import SearchContext
from ..state import Entry
from .anneal import ORIGIN_MELT_QUENCH, quench_until, volume_per_atom


def run(ctx: SearchContext) -> None:
    state, settings = ctx.state, ctx.config.baseline
    started = time.perf_counter()
    current = ctx.read_structure(state.current)
    counts = {"Li": int((current.numbers == 3).sum()), "Si": int((current.numbers == 14).sum())}
    x = counts["Li"] / counts["Si"]
    budget = 1 if state.step == 0 else len(state.confirm.picked)  # reference relaxations the search spent at x
    cells = sample_cells(counts, volume_per_atom(ctx, counts, settings.volume_per_atom), budget * settings.draws, ctx.rng)
    quenched, chosen = quench_until(ctx, settings, cells, budget, f"baseline at x = {x:.2f}")
    relaxed = ctx.map_ordered(ctx.reference_task(), [q.atoms for q in chosen], f"baseline at x = {x:.2f}: reference relaxations")
    entries = []
    for index, (model, result) in enumerate(zip(chosen, relaxed)):
        structure = ctx.write_structure(f"baseline_x{x:.3f}_{index}.xyz", result.atoms) if result.ok else None
        entries.append(Entry.of(result, structure, kind="baseline", origin=ORIGIN_MELT_QUENCH, model_energy=model.energy))
    state.baseline += [e for e in entries if e.ok]
    state.baseline_done.append(round(x, 6))
    ok = [e for e in entries if e.ok]
    lowest = min((e.energy_per_atom for e in ok), default=None)
    reasons = sorted({q.reason.splitlines()[0] for q in quenched if not q.ok} | {e.reason.splitlines()[0] for e in entries if not e.ok})
    ctx.echo(
        f"baseline at x = {x:.2f}: {len(ok)} of {budget} reference relaxations done ({len(quenched) - len(chosen)} of"
        f" {len(quenched)} model melt-quenches failed), lowest {'-' if lowest is None else f'{lowest:.4f}'} eV/atom ({time.perf_counter() - started:.0f} s)"
        + (f"; failures: {'; '.join(reasons)}" if reasons and len(ok) < budget else "")
    )
