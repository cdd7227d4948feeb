"""Phase *start*: the structure the first step delithiates (``start.file``, or a random cell at
the path's first composition melt-quenched with the first model or the reference), relaxed with
the reference; its labels go to ``reference.db``. With ``baseline.enabled`` the baseline's one
cell at that composition is relaxed in the same map (:mod:`pesmith.search.phases.baseline`).
A resumed run redoes the phase from the same seeds."""

from __future__ import annotations

import logging
import time

from ase import Atoms

from pesmith import ase_files
from pesmith.errors import CalculationFailed, ConfigError, DataError

from ..config import SearchConfig
from ..context import SearchContext
from ..labels import failed_labels_last, store_labels
from ..state import Entry
from ..status import grouped_reasons
from . import baseline
from .anneal import composition

log = logging.getLogger(__name__)


def run(ctx: SearchContext) -> None:
    config = ctx.config
    if config.start.file is not None:
        atoms = ase_files.read(config.start.file, index=-1).repeat(config.start.repeat)
        atoms.calc = None
    else:
        atoms = _melt_quenched_start(ctx)
    check_start(config, atoms)
    counts = composition(atoms)
    picks = baseline.prepare(ctx, counts, 1) if config.baseline.enabled else []
    structures = [atoms] + [ctx.read_structure(p.structure) for p in picks]
    description = "relaxing the start structure" + (" and the baseline's cell" * bool(picks)) + " with the reference"
    relaxed, *sampled = ctx.map_ordered(ctx.reference_task(), structures, description)
    if config.baseline.enabled:
        baseline.finish(ctx, picks, [baseline.entry(ctx, p, r) for p, r in zip(picks, sampled)], counts["Li"] / counts["Si"])
    if relaxed.ok:
        store_labels(ctx, relaxed, "start", 0)
    else:
        raise DataError(
            f"start structure {config.start.file or '(melt-quenched)'}: the reference relaxation failed: {relaxed.reason.splitlines()[0]};"
            f" raise confirm.steps or confirm.fmax (or confirm.time_limit), then `pesmith search {ctx.config_path} --resume`"
        )
    ctx.state.start = Entry.of(relaxed, ctx.write_structure("start.xyz", relaxed.atoms), kind="start")
    ctx.state.current = ctx.state.start.structure


def check_start(config: SearchConfig, atoms: Atoms) -> None:
    """Refuse a start structure that is not Li-Si at the path's first composition.

    Raises
    ------
    ConfigError
        Without Li or Si, with other elements, or at another x than ``path[0]``.
    """
    where = f"start structure {config.start.file or '(melt-quenched)'}"
    n_li, n_si = int((atoms.numbers == 3).sum()), int((atoms.numbers == 14).sum())
    if n_li == 0:
        raise ConfigError(f"{where} ({atoms.get_chemical_formula()}) has no Li: a delithiation search starts from a lithiated structure")
    if n_si == 0 or set(atoms.numbers) - {3, 14}:
        raise ConfigError(f"{where} ({atoms.get_chemical_formula()}) must hold Li and Si only, with at least one Si")
    x0 = config.path[0]
    if abs(n_li - x0 * n_si) > 0.5:
        raise ConfigError(f"{where} is Li{n_li}Si{n_si} (x = {n_li / n_si:.3f}) but path starts at x = {x0}; make them agree")
    for x in config.path[1:]:
        if abs(x * n_si - round(x * n_si)) > 0.25:
            log.warning("x = %s with %d Si is not a whole number of Li; the step uses %d Li", x, n_si, round(x * n_si))


def _melt_quenched_start(ctx: SearchContext) -> Atoms:
    """A random cell at the path's first composition, melt-quenched with the first model or
    the reference (``start.driver``)."""
    from pesmith.simulate.md import melt_quench
    from pesmith.simulate.packing import random_cell

    from ..amorphous import composition_counts, interpolated_volume_per_atom
    from ..relaxation import model_calculator

    config = ctx.config
    settings = config.start
    counts = composition_counts(config.path[0], settings.atoms)
    crystals = [ase_files.read(p, index=-1) for p in config.hull.crystals]
    volume = settings.volume_per_atom or interpolated_volume_per_atom(config.path[0], crystals)
    started = time.perf_counter()
    if settings.pool:
        return _lowest_of_pool(ctx, counts, volume, started)
    cell = random_cell(counts, volume, ctx.rng)
    if settings.driver == "model":
        driver, calculator = ctx.state.model, model_calculator(str(ctx.model_path), 1)
    else:
        ctx.require_reference_calculator("start.driver")
        driver, calculator = config.reference.kind, ctx.reference.make_calculator()
    try:
        frames = melt_quench(cell, calculator, settings.melt_quench, ctx.rng)
    except CalculationFailed as exc:
        raise DataError(
            f"start: the melt-quench driven by {driver} failed ({exc}); set start.driver: reference (a model trained"
            " on few structures can be unstable in MD), lower start.melt_quench.timestep_fs, or give start.file"
        ) from exc
    atoms = frames[-1]
    atoms.info = {}
    ctx.echo(
        f"start: {atoms.get_chemical_formula()} at {volume:.2f} Å^3/atom melt-quenched with {driver}"
        f" ({settings.melt_quench.n_steps} MD steps, {time.perf_counter() - started:.0f} s)"
    )
    return atoms


def _lowest_of_pool(ctx: SearchContext, counts: dict[str, int], volume: float, started: float) -> Atoms:
    """The lowest of ``start.pool`` random cells melt-quenched and relaxed with the first model
    (:func:`pesmith.search.anneal.anneal_with_model`; a failed one is replaced by the next cell,
    up to ``start.pool x start.draws`` cells): in model energy or, with ``anneal.screen``,
    in a reference single point of each (:func:`pesmith.search.phases.anneal.screen`)."""
    from ..anneal import QuenchSettings
    from ..baseline import sample_cells
    from .anneal import quench_until, screen

    config = ctx.config
    settings = QuenchSettings(melt_quench=config.start.melt_quench, min_distance=config.anneal.min_distance, relax=config.anneal.relax)
    cells = sample_cells(counts, volume, config.start.pool * config.start.draws, ctx.rng)
    results, ok = quench_until(ctx, settings, cells, config.start.pool, "start")
    if not ok:
        raise DataError(
            f"start: every one of the {len(results)} melt-quenches with {ctx.state.model} failed ({grouped_reasons(r.reason for r in results)});"
            " set start.driver: reference and start.pool: 0 (a model trained on few structures can be unstable in MD), or give start.file"
        )
    ranking = "its model energy"
    lowest = min(ok, key=lambda r: r.energy)
    if config.anneal.screen:
        screened = screen(ctx, [r.atoms for r in ok], "start screen")
        lowest = min(zip(ok, screened), key=lambda pair: failed_labels_last(pair[1], pair[0].energy))[0]
        ranking = "a reference single point"
    ctx.echo(
        f"start: the lowest of {len(ok)} {lowest.atoms.get_chemical_formula()} cells melt-quenched and relaxed with {ctx.state.model}, by {ranking}"
        f" ({len(results) - len(ok)} failed; {lowest.energy / len(lowest.atoms):.4f} eV/atom with the model, {time.perf_counter() - started:.0f} s)"
    )
    return lowest.atoms
