"""Phase *explore* (with ``explore.frames``): MD from the step's confirmed structures, driven by
the model or the reference (:mod:`pesmith.search.explore`); a frame every ``explore.interval``
MD steps is labeled with the reference into ``reference.db``, and the model's error on them
before retraining is recorded. An interrupted exploration is redone from the same seeds."""

from __future__ import annotations

import time
from functools import partial

from pesmith.labeling import label_one

from ..context import SearchContext
from ..explore import SEED_KEY, explore_with_model, explore_with_reference
from ..labels import model_errors


def run(ctx: SearchContext) -> None:
    state = ctx.state
    step = state.step  # the step just confirmed (1-based)
    record = state.steps[step - 1]
    settings = ctx.config.explore
    source = f"step {step} explore"
    started = time.perf_counter()
    database = ctx.database
    database.delete_source(source)  # rows of an interrupted attempt: this one redoes it from the same seeds
    starts = []
    for done in state.confirm.finished():  # pick order, not completion order
        if done.ok:
            atoms = ctx.read_structure(done.structure)
            atoms.calc = None
            atoms.info = {SEED_KEY: int(ctx.rng.integers(2**62))}
            starts.append(atoms)
    if settings.driver == "model":
        task = partial(explore_with_model, str(ctx.model_path), settings, ctx.worker_threads)
    else:
        ctx.require_reference_calculator("explore.driver")
        task = partial(explore_with_reference, ctx.reference, settings)
    runs = ctx.map_ordered(task, starts, f"step {step}: exploration MD")
    frames = [frame for run in runs for frame in run.frames]
    labels = dict(ctx.map(partial(label_one, ctx.reference, ctx.config.confirm.time_limit), frames, f"step {step}: labeling {len(frames)} explored frames"))
    rows = [database.write(frame, labels[i], source=source, source_index=i) for i, frame in enumerate(frames)]
    ok_rows = [row for i, row in enumerate(rows) if labels[i].ok]
    energy_rmse, force_rmse = model_errors(ctx, ok_rows)
    record.explored_frames = len(ok_rows)
    record.failed_explore_labels = len(rows) - len(ok_rows)
    record.explore_stops = [run.reason for run in runs if run.reason]
    record.explore_energy_rmse_meV_per_atom, record.explore_force_rmse_eV_per_A = energy_rmse, force_rmse
    record.wall_time_explore_s = time.perf_counter() - started
    heat = f"{settings.start_K:.0f} -> " if settings.start_K else ""
    message = f"step {step}: explored {len(starts)} structures at {heat}{settings.temperature_K:.0f} K, {len(ok_rows)} frames labeled"
    if ok_rows:
        message += f"; model before retraining on them: {energy_rmse:.1f} meV/atom, {force_rmse:.3f} eV/Å"
    for reason in record.explore_stops:
        message += f"; a run {reason}"
    ctx.echo(message)
