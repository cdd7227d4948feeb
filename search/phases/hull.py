"""Phase *hull*: formation energies of the hull crystals, the start and every confirmed
structure, the convex hull, the voltage profile, their tables and plots
(:func:`pesmith.search.phase_diagram.write_phase_diagram`)."""

from __future__ import annotations

from dataclasses import asdict

from ..context import SearchContext


def run(ctx: SearchContext) -> None:
    from ..phase_diagram import write_phase_diagram

    state = ctx.state
    kinds = [(e, "crystal") for e in state.crystals if e.ok] + [(state.start, "start")] + [(e, e.kind) for e in state.entries + state.baseline]
    rows = [asdict(e) | {"kind": kind} for e, kind in kinds]  # every field of an entry, as the phase diagram may read more
    structures = [ctx.read_structure(row["structure"]) for row in rows]
    state.hull = write_phase_diagram(ctx.output, rows, structures, [asdict(s) for s in state.steps], state.ga_logs)
