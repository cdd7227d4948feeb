"""Phase *anneal*: a pool annealed with the model before the reference sees it.

The pool is the step's ``anneal.candidates`` lowest distinct GA candidates and
``anneal.melt_quenches`` random cells of the step's composition; each is run through
:func:`pesmith.search.anneal.anneal_with_model` (MD on a melt-quench schedule, then a cell
relaxation, with the current model). The lowest ``confirm.candidates`` distinct members (model
energy) replace the GA's picks for phase *confirm*, each with its annealed structure and where
it came from. A resumed run redoes the phase from the same seeds.
"""

from __future__ import annotations

import time
from functools import partial

from ase import Atoms

from pesmith import ase_files

from ..amorphous import interpolated_volume_per_atom
from ..anneal import SEED_KEY, QuenchSettings, anneal_with_model
from ..baseline import sample_cells
from ..comparator import StructureComparator
from ..context import SearchContext
from ..state import ConfirmState, Pick

ORIGIN_GA, ORIGIN_MELT_QUENCH = "anneal of ga", "melt-quench"


def run(ctx: SearchContext) -> None:
    state, settings = ctx.state, ctx.config.anneal
    step = state.step
    record = state.steps[step]
    started = time.perf_counter()
    store = ctx.candidates
    seeds = list(state.confirm.picked)  # the GA's picks, anneal.candidates of them
    structures = []
    for pick in seeds:
        atoms = store.atoms(pick.row)
        atoms.info = {SEED_KEY: int(ctx.rng.integers(2**62))}
        structures.append(atoms)
    if settings.melt_quenches:
        counts = {"Li": int((structures[0].numbers == 3).sum()), "Si": int((structures[0].numbers == 14).sum())} if structures else target_counts(ctx)
        structures += sample_cells(counts, volume_per_atom(ctx, counts, settings.volume_per_atom), settings.melt_quenches, ctx.rng)
    origins = [ORIGIN_GA] * len(seeds) + [ORIGIN_MELT_QUENCH] * (len(structures) - len(seeds))
    results = ctx.map_ordered(quench_task(ctx, settings), structures, f"step {step + 1}: annealing {len(structures)} candidates with the model")
    ranked = sorted((r.energy, i) for i, r in enumerate(results) if r.ok)
    comparator, picked = StructureComparator(), []
    for energy, index in ranked:
        atoms = results[index].atoms
        if any(comparator.same(atoms, energy, other, other_energy) for other, other_energy, _ in picked):
            continue
        picked.append((atoms, energy, index))
        if len(picked) == ctx.config.confirm.candidates:
            break
    state.confirm = ConfirmState(picked=[
        Pick(
            key=f"pool{index}", row=seeds[index].row if index < len(seeds) else None, model_energy=float(energy),
            structure=ctx.write_structure(f"step{step + 1}_pool{index}.xyz", atoms), origin=origins[index],
        )
        for atoms, energy, index in picked
    ])
    record.annealed = sum(r.ok for r in results)
    record.failed_anneals = len(results) - record.annealed
    record.pool_from_ga = sum(p.origin == ORIGIN_GA for p in state.confirm.picked)
    record.pool_from_melt_quench = len(state.confirm.picked) - record.pool_from_ga
    record.candidates = len(state.confirm.picked)
    record.wall_time_anneal_s += time.perf_counter() - started
    ctx.echo(
        f"step {step + 1}: annealed {record.annealed} of {len(results)} ({len(seeds)} GA candidates, {len(results) - len(seeds)} melt-quenches)"
        f" with the model; to the reference: {record.pool_from_ga} from the GA, {record.pool_from_melt_quench} melt-quenched"
    )


def quench_task(ctx: SearchContext, settings: QuenchSettings):
    """The mapped anneal with the current model."""
    return partial(anneal_with_model, str(ctx.model_path), settings, ctx.worker_threads)


def target_counts(ctx: SearchContext) -> dict[str, int]:
    """Li and Si of the step's target composition, from the current structure's Si."""
    current = ctx.read_structure(ctx.state.current)
    n_si = int((current.numbers == 14).sum())
    return {"Li": int((current.numbers == 3).sum()) - ctx.state.steps[ctx.state.step].n_li_removed, "Si": n_si}


def volume_per_atom(ctx: SearchContext, counts: dict[str, int], given: float | None) -> float:
    """Å^3 per atom of random cells of ``counts``: ``given``, else interpolated between the hull's crystals."""
    if given is not None:
        return given
    crystals: list[Atoms] = [ase_files.read(p, index=-1) for p in ctx.config.hull.crystals]
    return interpolated_volume_per_atom(counts["Li"] / counts["Si"], crystals)
