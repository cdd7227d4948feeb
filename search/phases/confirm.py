"""Phase *confirm*: the candidates the GA picked are relaxed with the reference; final structures
and relaxation frames are labeled into ``reference.db`` and the verdict added to each one's row of
``candidates.db``. The model's error on the new labels is the learning curve; the lowest
confirmed structure becomes the next step's start. The baseline's cells (phase *baseline*) are
relaxed in the same map, their labels kept out of ``reference.db``. The checkpoint is replaced
after every relaxation, so a resumed run redoes no finished reference relaxation."""

from __future__ import annotations

import time

from pesmith.errors import DataError
from pesmith.reference_db import Label

from ..context import SearchContext
from ..labels import model_errors, store_labels
from ..state import Entry
from ..status import grouped_reasons
from . import baseline
from .anneal import target_counts


def run(ctx: SearchContext) -> None:
    state = ctx.state
    step = state.step
    record = state.steps[step]
    confirm = state.confirm
    store = ctx.candidates
    started = time.perf_counter()
    todo = [p for p in confirm.picked + confirm.baseline if p.key not in confirm.done]
    structures = [ctx.read_structure(p.structure) if p.structure else store.atoms(p.row) for p in todo]
    what = f" ({len(confirm.picked)} of the search, {len(confirm.baseline)} of the baseline)" if confirm.baseline else ""
    results = ctx.map(ctx.reference_task(), structures, f"step {step + 1}: reference relaxations{what}")
    rank = {p.key: position for position, p in enumerate(confirm.picked)}  # the same after a resume
    for index, relaxed in results:
        pick = todo[index]
        if baseline.is_baseline(pick.key):
            confirm.done[pick.key] = baseline.entry(ctx, pick, relaxed)
            ctx.save()
            continue
        source, position = f"step {step + 1} candidate {pick.key}", rank[pick.key]
        rows = store_labels(ctx, relaxed, source, position) if relaxed.ok else []
        if not relaxed.ok:
            ctx.database.write(structures[index], Label(reason=relaxed.reason, wall_time=relaxed.wall_time), source=source, source_index=position)
        structure = ctx.write_structure(f"step{step + 1}_{pick.key}.xyz", relaxed.atoms) if relaxed.ok else None
        entry = Entry.of(relaxed, structure, kind=f"step {step + 1}", label_rows=rows, model_energy=pick.model_energy, origin=pick.origin)
        confirm.done[pick.key] = entry
        if pick.row is not None:
            store.record_reference(pick.row, ctx.config.reference.kind, entry.energy, entry.reason)
        ctx.save()
    if ctx.config.baseline.enabled:
        counts = target_counts(ctx)
        baseline.finish(ctx, confirm.baseline, [confirm.done[p.key] for p in confirm.baseline], counts["Li"] / counts["Si"])
    done = confirm.finished()
    ok = [d for d in done if d.ok]
    record.confirmed, record.failed_confirmations = len(ok), len(done) - len(ok)
    record.wall_time_confirm_s += time.perf_counter() - started
    label_rows = [r for d in ok for r in d.label_rows]
    record.model_energy_rmse_meV_per_atom, record.model_force_rmse_eV_per_A = model_errors(ctx, label_rows)
    record.new_labels = len(label_rows)
    if not ok:
        raise DataError(
            f"step {step + 1}: all {len(done)} reference relaxations failed: {grouped_reasons(d.reason for d in done)};"
            f" raise confirm.steps or confirm.fmax (or confirm.time_limit), then `pesmith search {ctx.config_path} --resume`"
        )
    state.entries += ok
    lowest = min(ok, key=lambda d: d.energy_per_atom)
    record.lowest_reference_energy_per_atom = lowest.energy_per_atom
    record.lowest_origin = lowest.origin
    state.current = lowest.structure
    ctx.echo(
        f"step {step + 1} (x {record.x_from:.3f} -> {record.x_to:.3f}): {record.confirmed} confirmed,"
        f" {record.failed_confirmations} failed; model before retraining on them:"
        f" {record.model_energy_rmse_meV_per_atom:.1f} meV/atom, {record.model_force_rmse_eV_per_A:.3f} eV/Å"
    )
    state.step = step + 1
