"""Phase *anneal*: a pool annealed with the model before the reference sees it.

The pool is the step's ``anneal.candidates`` lowest distinct GA candidates and
``anneal.melt_quenches`` random cells of the step's composition; each is run through
:func:`pesmith.search.anneal.anneal_with_model` (MD on a melt-quench schedule, then a cell
relaxation, with the current model). The lowest ``confirm.candidates`` distinct members replace
the GA's picks for phase *confirm*, each with its annealed structure and where it came from:
lowest in model energy or, with ``anneal.screen``, in the reference's energy at the annealed
geometry (one single point each, labeled into ``reference.db``: data at the new composition).
A resumed run redoes the phase from the same seeds.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
from ase import Atoms

from pesmith import ase_files
from pesmith.labeling import label_one
from pesmith.simulate.relax import Relaxed

from ..amorphous import interpolated_volume_per_atom
from ..anneal import SEED_KEY, QuenchSettings, anneal_with_model
from ..baseline import sample_cells
from ..comparator import StructureComparator
from ..context import SearchContext
from ..labels import failed_labels_last
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
        counts = composition(structures[0]) if structures else target_counts(ctx)
        structures += sample_cells(counts, volume_per_atom(ctx, counts, settings.volume_per_atom), settings.melt_quenches, ctx.rng)
    origins = [ORIGIN_GA] * len(seeds) + [ORIGIN_MELT_QUENCH] * (len(structures) - len(seeds))
    results = ctx.map_ordered(quench_task(ctx, settings), structures, f"step {step + 1}: annealing {len(structures)} candidates with the model")
    members = distinct_members(results)  # every member has the step's composition: total energies rank them
    ranked: list[tuple[tuple[float, int], float | None]] = [(member, None) for member in members]
    if settings.screen:
        screened = screen(ctx, [results[i].atoms for _, i in members], f"step {step + 1} screen")
        record.screened = len(members)
        record.screen_energy_rmse_meV_per_atom = _model_error(results, members, screened)
        ranked = sorted(zip(members, screened), key=lambda pair: failed_labels_last(pair[1], pair[0]))
    picks = []
    for (energy, index), reference_energy in ranked[:ctx.config.confirm.candidates]:
        structure = ctx.write_structure(f"step{step + 1}_pool{index}.xyz", results[index].atoms)
        row = seeds[index].row if index < len(seeds) else None
        picks.append(Pick(f"pool{index}", row, float(energy), structure, origins[index], reference_energy))
    state.confirm = ConfirmState(picked=picks)
    record.annealed = sum(r.ok for r in results)
    record.failed_anneals = len(results) - record.annealed
    record.pool_from_ga = sum(p.origin == ORIGIN_GA for p in state.confirm.picked)
    record.pool_from_melt_quench = len(state.confirm.picked) - record.pool_from_ga
    record.candidates = len(state.confirm.picked)
    record.wall_time_anneal_s += time.perf_counter() - started
    screening = ""
    if settings.screen:
        error = record.screen_energy_rmse_meV_per_atom
        screening = f"; {record.screened} distinct ranked by reference single points (model {'-' if error is None else f'{error:.1f}'} meV/atom off on them)"
    ctx.echo(
        f"step {step + 1}: annealed {record.annealed} of {len(results)} ({len(seeds)} GA candidates, {len(results) - len(seeds)} melt-quenches)"
        f" with the model{screening}; to the reference: {record.pool_from_ga} from the GA, {record.pool_from_melt_quench} melt-quenched"
    )


def distinct_members(results: list[Relaxed]) -> list[tuple[float, int]]:
    """``(model energy, index)`` of the annealed pool's successful members, lowest first, each
    duplicate (:class:`~pesmith.search.comparator.StructureComparator`) merged into the lower."""
    members: list[tuple[float, int]] = []
    comparator = StructureComparator()
    for energy, index in sorted((r.energy, i) for i, r in enumerate(results) if r.ok):
        atoms = results[index].atoms
        if not any(comparator.same(atoms, energy, results[other].atoms, other_energy) for other_energy, other in members):
            members.append((energy, index))
    return members


def screen(ctx: SearchContext, members: list[Atoms], source: str) -> list[float | None]:
    """The reference's energy (eV) of each structure, ``None`` where labeling failed; the labels
    go to ``reference.db`` as ``source`` (a redone phase replaces them)."""
    database = ctx.database
    database.delete_source(source)
    bare = [Atoms(a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc) for a in members]
    task = partial(label_one, ctx.reference, ctx.config.confirm.time_limit)
    labels = dict(ctx.map(task, bare, f"{source}: reference single points of {len(bare)} structures"))
    for index, atoms in enumerate(bare):
        database.write(atoms, labels[index], source=source, source_index=index)
    return [labels[i].energy if labels[i].ok else None for i in range(len(bare))]


def _model_error(results: list[Relaxed], members: list[tuple[float, int]], screened: list[float | None]) -> float | None:
    """RMSE (meV/atom) of the model's energies against the screen's at the same geometries."""
    errors = [(energy - ref) / len(results[index].atoms) for (energy, index), ref in zip(members, screened) if ref is not None]
    return 1000 * float(np.sqrt(np.mean(np.square(errors)))) if errors else None


def quench_task(ctx: SearchContext, settings: QuenchSettings):
    """The mapped anneal with the current model."""
    return partial(anneal_with_model, str(ctx.model_path), settings, ctx.worker_threads)


def quench_until(ctx: SearchContext, settings: QuenchSettings, cells: list[Atoms], wanted: int, what: str) -> tuple[list[Relaxed], list[Relaxed]]:
    """Anneal ``cells`` with the model in batches until ``wanted`` succeed or the cells run out (a
    failed run is replaced by the next cell); every result in cell order, and the successful ones."""
    results: list[Relaxed] = []
    ok: list[Relaxed] = []
    while len(ok) < wanted and len(results) < len(cells):
        batch = cells[len(results):len(results) + wanted - len(ok)]
        done = ctx.map_ordered(quench_task(ctx, settings), batch, f"{what}: {len(batch)} melt-quenches with the model")
        results += done
        ok += [r for r in done if r.ok]
    return results, ok


def composition(atoms: Atoms) -> dict[str, int]:
    """Li and Si counts of ``atoms``."""
    return {"Li": int((atoms.numbers == 3).sum()), "Si": int((atoms.numbers == 14).sum())}


def target_counts(ctx: SearchContext) -> dict[str, int]:
    """Li and Si of the step's target composition, from the current structure's Si."""
    counts = composition(ctx.read_structure(ctx.state.current))
    return {"Li": counts["Li"] - ctx.state.steps[ctx.state.step].n_li_removed, "Si": counts["Si"]}


def volume_per_atom(ctx: SearchContext, counts: dict[str, int], given: float | None) -> float:
    """Å^3 per atom of random cells of ``counts``: ``given``, else interpolated between the hull's crystals."""
    if given is not None:
        return given
    crystals: list[Atoms] = [ase_files.read(p, index=-1) for p in ctx.config.hull.crystals]
    return interpolated_volume_per_atom(counts["Li"] / counts["Si"], crystals)
