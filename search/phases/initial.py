"""Phase *initial*: label the initial training set with the reference (the ``initial.generate``
recipe) into ``<output>/reference.db``, and relax the hull crystals (bcc Li, diamond Si,
compounds) with the reference."""

from __future__ import annotations

import time

from pesmith import ase_files

from ..config import generate_config
from ..context import SearchContext
from ..labels import reference_relax
from ..state import Entry


def run(ctx: SearchContext) -> None:
    config = ctx.config
    started = time.perf_counter()
    if config.initial.generate is not None:
        from ..initial_set import generate

        summary = generate(generate_config(config, ctx.config_path), ctx.registry, ctx.map_fn, where=str(ctx.config_path))
        ctx.echo(f"initial data: {summary.n_labeled} labeled, {summary.n_failed} failed, {summary.n_skipped} already in {summary.database}")
    crystals = []
    for path in config.hull.crystals:
        atoms = ase_files.read(path, index=-1)
        atoms.calc = None
        crystals.append(atoms)
    relaxed = reference_relax(ctx, crystals, "relaxing the hull crystals with the reference", source="hull crystal")
    ctx.state.crystals = [
        Entry.of(r, ctx.write_structure(f"crystal_{p.stem}.xyz", r.atoms) if r.ok else None, kind="crystal", file=str(p))
        for p, r in zip(config.hull.crystals, relaxed)
    ]
    for entry in ctx.state.crystals:
        if entry.reason:
            ctx.echo(f"hull crystal {entry.file} failed: {entry.reason}")
    ctx.echo(f"initial phase done in {time.perf_counter() - started:.0f} s")
