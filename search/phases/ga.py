"""Phase *ga*: a DEAP GA (:mod:`pesmith.search.ga`) chooses which Li of the current structure to
remove; fitness = the model's energy after a relaxation, mapped over the workers. Every
evaluation is a row of ``candidates.db`` as soon as it returns, with its operator and parents;
the checkpoint is replaced after every generation. At the end the lowest distinct candidates are
picked for the reference (phase *confirm*)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict

from ase import Atoms

from pesmith.errors import DataError

from ..comparator import StructureComparator
from ..context import SearchContext
from ..delithiation import DelithiationProblem, genome_hash
from ..ga import Evaluation, GAState, GeneticSearch, Outcome
from ..state import ConfirmState, Pick, StepRecord
from ..status import grouped_reasons


def begin_step(ctx: SearchContext) -> None:
    """Open the record of the next step (``state.step`` to ``state.step + 1``) and a fresh GA."""
    state = ctx.state
    current = ctx.read_structure(state.current)
    n_si = int((current.numbers == 14).sum())
    n_li = int((current.numbers == 3).sum())
    target = int(round(ctx.config.path[state.step + 1] * n_si))
    state.steps.append(StepRecord(state.step, n_li / n_si, target / n_si, n_li - target, 0))
    state.ga = GAState()


def run(ctx: SearchContext) -> None:
    state = ctx.state
    step = state.step
    record = state.steps[step]
    current = ctx.read_structure(state.current)
    started = time.perf_counter()
    if record.n_li_removed >= int((current.numbers == 3).sum()):  # x -> 0: the only arrangement is the Si framework itself
        genome = tuple([1] * int((current.numbers == 3).sum()))
        ga = GAState()
        evaluation = Evaluation(genome_hash(genome), genome, 0, "all", ())
        [outcome] = evaluate(ctx, None, [evaluation], current=current)
        evaluation.energy, evaluation.energy_std, evaluation.reason, evaluation.payload = outcome.energy, outcome.energy_std, outcome.reason, outcome.payload
        ga.evaluations[evaluation.key] = evaluation
        ga.done, ga.stop_reason = True, "one arrangement (every Li removed)"
        record.arrangements = 1
    else:
        problem = DelithiationProblem(current, record.n_li_removed)
        record.arrangements = problem.n_arrangements
        search = GeneticSearch(problem, ctx.config.ga, lambda asked: evaluate(ctx, problem, asked), ctx.rng, state.ga, with_origins=True)

        def after_generation(running: GeneticSearch) -> None:
            last = running.state.log[-1]
            state.ga = running.state
            ctx.save()
            best = f"{last.best_energy / (len(current) - record.n_li_removed):.4f} eV/atom" if math.isfinite(last.best_energy) else "-"
            ctx.echo(
                f"step {step + 1}, generation {last.generation}: {last.evaluated} evaluated, {last.duplicates} duplicates"
                f" ({100 * last.duplicate_rate:.0f} %), {last.failed} failed, best {best}"
            )

        ga = search.run(after_generation)
    record.generations = len(ga.log)
    record.evaluated = len(ga.evaluations)
    record.duplicates = sum(r.duplicates for r in ga.log)
    record.failed_evaluations = sum(1 for e in ga.evaluations.values() if not e.ok)
    record.stop_reason = ga.stop_reason
    best = ga.best()
    if not best:
        raise DataError(
            f"step {step + 1}: all {len(ga.evaluations)} candidates failed with the model:"
            f" {grouped_reasons(e.reason for e in ga.evaluations.values())}; raise fitness.steps or fitness.fmax"
            f" (or fitness.time_limit), then `pesmith search {ctx.config_path} --resume`; every one is in {ctx.output / 'candidates.db'}"
        )
    n_atoms = ctx.candidates.n_atoms(best[0].payload["row"])
    record.best_model_energy_per_atom = best[0].energy / n_atoms
    record.wall_time_ga_s += time.perf_counter() - started
    state.ga = ga
    state.ga_logs.append([asdict(r) | {"n_atoms": n_atoms} for r in ga.log])
    count = ctx.config.anneal.candidates if ctx.config.anneal.candidates + ctx.config.anneal.melt_quenches else ctx.config.confirm.candidates
    state.confirm = ConfirmState(picked=pick_candidates(ctx, ga, count))
    record.candidates = len(state.confirm.picked)


def evaluate(ctx: SearchContext, problem: DelithiationProblem | None, asked: list[Evaluation], current: Atoms | None = None) -> list[Outcome]:
    """Fitness of each asked genome: from ``candidates.db`` when this step already evaluated it
    (the first generation after a resume), else mapped over the workers and written there as it
    returns. Without a resume the GA never asks for a genome twice, so the database is read only
    once after one. ``problem`` ``None``: every Li of ``current`` goes."""
    step = ctx.state.step
    store = ctx.candidates
    known = store.evaluated(step + 1) if ctx.resumed else {}
    ctx.resumed = False
    outcomes: dict[int, Outcome] = {}
    todo = []
    for index, evaluation in enumerate(asked):
        if evaluation.key in known:
            outcomes[index] = known[evaluation.key]
        else:
            todo.append(index)
    structures = [problem.apply(asked[i].genome) if problem is not None else _without_li(current) for i in todo]
    generation = asked[0].generation if asked else 0
    results = ctx.map(ctx.fitness_task(str(ctx.model_path)), structures, f"step {step + 1}, generation {generation}: model relaxations")
    for position, relaxed in results:
        index = todo[position]
        outcomes[index] = store.add_evaluation(step + 1, asked[index], relaxed, structures[position], ctx.state.model_hash, ctx.config.fitness.relax)
    return [outcomes[i] for i in range(len(asked))]


def pick_candidates(ctx: SearchContext, ga: GAState, count: int) -> list[Pick]:
    """The lowest-energy candidates that are not the same structure (nor, with
    ``confirm.diversity``, too similar to one picked before), up to ``count``."""
    settings, store, comparator = ctx.config.confirm, ctx.candidates, StructureComparator()
    picked: list[tuple[Atoms, Pick]] = []
    weight = settings.uncertainty_weight
    ranked = sorted(ga.best(len(ga.evaluations)), key=lambda e: (e.energy - weight * (e.energy_std or 0.0), e.key))
    for evaluation in ranked:
        row = evaluation.payload["row"]
        atoms = store.atoms(row)
        if any(comparator.same(atoms, evaluation.energy, other, pick.model_energy) for other, pick in picked):
            continue
        if settings.diversity and any(comparator.differ_by(atoms, other) < settings.diversity for other, _ in picked):
            continue
        picked.append((atoms, Pick(evaluation.key, row, evaluation.energy)))
        if len(picked) == count:
            break
    return [pick for _, pick in picked]


def _without_li(atoms: Atoms) -> Atoms:
    out = atoms[atoms.numbers != 3]
    out.calc = None
    return out
