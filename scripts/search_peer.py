"""pesmith's GA and the ASE genetic algorithm (ase-ga) on one delithiation problem.

Used by ``scripts/bench_search.py`` and ``tests/test_search_peer.py``. Both GAs draw their
energies from one :class:`EnergyCache` (the cheap model runs once per arrangement, whichever
GA or the enumeration asks first), but each run counts its own evaluations: every genome it
asked for, duplicates included, in the order asked.

ase-ga sees the problem as a fixed-composition permutation problem: the Si atoms are its fixed
"slab", the Li sites its "top" atoms, and a removed Li is a placeholder atom ``X`` (atomic
number 0) left on its site, so that swapping an Li with an X moves a vacancy and keeps the
composition. Its operators are the ones of its tutorial (``ga_optimize``) that keep atoms on
the sites: ``CutAndSplicePairing`` (a child whose atoms overlap is rejected by ``blmin``, so an
accepted child has one atom per site) and, with probability 0.3, ``PermutationMutation``
(default ``probability=0.33``: 3 swaps of 15 top atoms); population 20 with its
``InteratomicDistanceComparator`` and its raw-score (``-energy``) fitness roulette.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import FIRE

from pesmith.plugins.references.morse import MorseCalculator
from pesmith.search.delithiation import DelithiationProblem, Genome
from pesmith.search.ga import GASettings, GeneticSearch, Outcome

FOUND_TOLERANCE = 1e-9  # eV: an energy this close to the enumerated minimum counts as found
ASE_GA_POPULATION = 20  # ase-ga tutorial (ga_optimize): population_size
ASE_GA_MUTATION_PROBABILITY = 0.3  # ase-ga tutorial: mutation_probability
ASE_GA_BLMIN_RATIO = 0.7  # ase-ga tutorial: ratio_of_covalent_radii of blmin
PLACEHOLDER = 0  # atomic number of "X", a removed Li in ase-ga's representation


class EnergyCache:
    """Single-point energies (eV) of the arrangements of ``problem``, each computed once.

    ``model_seconds`` adds up the time spent in the model (s).
    """

    def __init__(self, problem: DelithiationProblem, calculator_factory: Callable = MorseCalculator):
        self.problem = problem
        self.calculator = calculator_factory()
        self.energies: dict[Genome, float] = {}
        self.model_seconds = 0.0

    def energy(self, genome: Sequence[int]) -> float:
        genome = tuple(int(g) for g in genome)
        if genome not in self.energies:
            started = time.perf_counter()
            atoms = self.problem.apply(genome)
            atoms.calc = self.calculator
            self.energies[genome] = float(atoms.get_potential_energy())
            self.model_seconds += time.perf_counter() - started
        return self.energies[genome]


def all_genomes(problem: DelithiationProblem) -> list[Genome]:
    """Every arrangement, ``C(n_li, n_remove)`` genomes."""
    return [
        tuple(int(i in removed) for i in range(problem.n_li))
        for removed in itertools.combinations(range(problem.n_li), problem.n_remove)
    ]


@dataclass
class Enumeration:
    minimum: float  # eV
    n_arrangements: int
    n_at_minimum: int  # arrangements within FOUND_TOLERANCE of the minimum
    seconds: float  # wall time of the model over all arrangements (those not cached before)
    spread: float  # eV, highest minus lowest energy


def enumerate_all(cache: EnergyCache) -> Enumeration:
    """The global minimum by evaluating every arrangement (through the cache)."""
    before = cache.model_seconds
    energies = np.array([cache.energy(g) for g in all_genomes(cache.problem)])
    lowest = float(energies.min())
    return Enumeration(
        minimum=lowest,
        n_arrangements=len(energies),
        n_at_minimum=int((energies <= lowest + FOUND_TOLERANCE).sum()),
        seconds=cache.model_seconds - before,
        spread=float(np.ptp(energies)),
    )


@dataclass
class RunResult:
    """One GA run on one seed.

    ``evaluations_to_minimum`` counts every evaluation up to the batch that first held the
    global minimum (a pesmith generation, ase-ga's initial population, otherwise one ase-ga
    candidate); ``..._sequential`` stops at the evaluation itself. ``None``: not found within
    the budget (``found`` is False).
    ``own_stop_*`` (pesmith only): where its own stopping rule (generations, patience) ended the
    run, without knowing the minimum; ``patience_stop_*`` where it would end if ``patience``
    counted the generations since the best energy last fell (in pesmith.search.ga as of this
    script it counts every generation, so the run always ends after ``patience`` generations).
    """

    ga: str
    seed: int
    found: bool
    evaluations_to_minimum: int | None
    evaluations_to_minimum_sequential: int | None
    distinct_to_minimum: int | None  # distinct genomes among the evaluations_to_minimum
    evaluations: int  # asked for, duplicates included
    distinct: int
    best_energy: float
    seconds: float
    own_stop_found: bool | None = None
    own_stop_evaluations: int | None = None
    own_stop_reason: str | None = None
    patience_stop_found: bool | None = None
    patience_stop_evaluations: int | None = None
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Trace:
    """Genomes a run asked for, in order, with the end of the batch that first held the minimum.

    The minimum counts as found only if that batch ended within ``budget`` evaluations.
    """

    def __init__(self, cache: EnergyCache, minimum: float, budget: int):
        self.cache, self.minimum, self.budget = cache, minimum, budget
        self.genomes: list[Genome] = []
        self.first_hit: int | None = None  # index into genomes
        self.first_hit_batch_end: int | None = None

    def evaluate(self, genomes: Sequence[Genome]) -> list[float]:
        energies = []
        for genome in genomes:
            energy = self.cache.energy(genome)
            if self.first_hit is None and energy <= self.minimum + FOUND_TOLERANCE:
                self.first_hit = len(self.genomes)
            self.genomes.append(tuple(genome))
            energies.append(energy)
        if self.first_hit is not None and self.first_hit_batch_end is None:
            self.first_hit_batch_end = len(self.genomes)
        return energies

    @property
    def has_minimum(self) -> bool:
        """The minimum is among the genomes evaluated so far (budget or not)."""
        return self.first_hit is not None

    @property
    def found(self) -> bool:
        return self.first_hit_batch_end is not None and self.first_hit_batch_end <= self.budget

    def result(self, ga: str, seed: int, seconds: float, **extra) -> RunResult:
        return RunResult(
            ga=ga,
            seed=seed,
            found=self.found,
            evaluations_to_minimum=self.first_hit_batch_end if self.found else None,
            evaluations_to_minimum_sequential=self.first_hit + 1 if self.found else None,
            distinct_to_minimum=len(set(self.genomes[: self.first_hit_batch_end])) if self.found else None,
            evaluations=len(self.genomes),
            distinct=len(set(self.genomes)),
            best_energy=min(self.cache.energy(g) for g in self.genomes),
            seconds=seconds,
            **extra,
        )


def run_pesmith(problem: DelithiationProblem, cache: EnergyCache, minimum: float, seed: int, budget: int, settings: GASettings | None = None) -> RunResult:
    """pesmith's GA (default :class:`GASettings`) from ``numpy.random.default_rng(seed)``.

    Generations go on until the minimum is found or ``budget`` evaluations are spent, and at
    least until the GA's own stopping rule, and the same rule with ``patience`` counted from
    the last fall of the best energy, would have ended the run (both points are recorded): the
    rule only sets a flag, so the generations after it are those of a run without it.
    """
    settings = settings or GASettings()
    trace = Trace(cache, minimum, budget)
    search = GeneticSearch(problem, settings, lambda genomes: [Outcome(e) for e in trace.evaluate(genomes)], np.random.default_rng(seed))
    own: dict = {}
    patience: dict = {}
    last_fall, best = 0, float("inf")
    started = time.perf_counter()
    while True:
        record = search.next_generation()
        exhausted = len(search.state.evaluations) >= problem.n_arrangements
        if record.best_energy < best - 1e-9:
            last_fall, best = record.generation, record.best_energy
        stale = record.generation - last_fall
        if search.state.done and not own:
            own = {"own_stop_found": trace.has_minimum, "own_stop_evaluations": len(trace.genomes), "own_stop_reason": search.state.stop_reason}
        patience_done = exhausted or search.state.generation >= settings.generations or (
            settings.patience is not None and search.state.generation > 1 and stale >= settings.patience
        )
        if patience_done and not patience:
            patience = {"patience_stop_found": trace.has_minimum, "patience_stop_evaluations": len(trace.genomes)}
        if own and patience and (trace.found or len(trace.genomes) >= budget or exhausted):
            break
    return trace.result("pesmith", seed, time.perf_counter() - started, **own, **patience)


class AseGaLayout:
    """The ase-ga picture of a :class:`DelithiationProblem`: Si slab + (kept Li, X) on the Li sites."""

    def __init__(self, problem: DelithiationProblem):
        self.problem = problem
        structure = problem.structure.copy()
        structure.wrap()
        self.slab = structure[structure.numbers != 3]
        self.sites = structure.positions[problem.li_sites]  # (n_li, 3), Å
        n_kept = problem.n_li - problem.n_remove
        self.top_numbers = [3] * n_kept + [PLACEHOLDER] * problem.n_remove

    @property
    def n_top(self) -> int:
        return self.problem.n_li

    def candidate(self, genome: Sequence[int]) -> Atoms:
        """The slab plus kept Li then X atoms on their sites (ase-ga keeps this atom order)."""
        mask = np.asarray(genome, dtype=bool)
        positions = np.concatenate([self.sites[~mask], self.sites[mask]])
        top = Atoms(numbers=self.top_numbers, positions=positions, cell=self.slab.cell, pbc=self.slab.pbc)
        return self.slab + top

    def genome(self, candidate: Atoms) -> Genome:
        """The removed sites of a candidate: the site under each X (raises if atoms are off-site)."""
        top = candidate[len(self.slab):]
        cell = self.slab.cell
        frac = cell.scaled_positions(top.positions)[:, None, :] - cell.scaled_positions(self.sites)[None, :, :]
        frac -= np.round(frac)
        distance = np.linalg.norm(frac @ cell.array, axis=-1)  # (n_top, n_li), Å
        site = distance.argmin(axis=1)
        if distance[np.arange(len(top)), site].max() > 1e-3 or len(set(site)) != len(top):
            raise RuntimeError("an ase-ga candidate has atoms off the Li sites or two on one site")
        genome = np.zeros(self.problem.n_li, dtype=int)
        genome[site[top.numbers == PLACEHOLDER]] = 1
        return tuple(int(g) for g in genome)


def run_ase_ga(problem: DelithiationProblem, cache: EnergyCache, minimum: float, seed: int, budget: int, folder: Path | None = None) -> RunResult:
    """The ase-ga tutorial loop (``ga_optimize``) on ``problem``, from ``RandomState(seed)``.

    A random initial population of 20 arrangements, then one child at a time: two parents from
    the population's fitness roulette, cut-and-splice, a permutation mutation with probability
    0.3, evaluation (energy from the cache as raw score ``-E``), population update. Stops when
    the minimum is found or after ``budget`` evaluations. Its ase.db database lives in a
    temporary folder under ``folder`` (default ``/dev/shm`` where it exists: ase-ga reads and
    writes the database several times per candidate, about 0.2 s per candidate here).
    """
    if folder is None and Path("/dev/shm").is_dir():
        folder = Path("/dev/shm")
    from ase_ga.cutandsplicepairing import CutAndSplicePairing
    from ase_ga.data import DataConnection, PrepareDB
    from ase_ga.offspring_creator import OperationSelector
    from ase_ga.population import Population
    from ase_ga.standard_comparators import InteratomicDistanceComparator
    from ase_ga.standardmutations import PermutationMutation
    from ase_ga.utilities import closest_distances_generator, get_all_atom_types

    layout = AseGaLayout(problem)
    rng = np.random.RandomState(seed)
    trace = Trace(cache, minimum, budget)
    failed_pairings = 0

    def evaluate(candidates: list[Atoms]) -> None:
        energies = trace.evaluate([layout.genome(a) for a in candidates])
        for atoms, energy in zip(candidates, energies):
            atoms.calc = SinglePointCalculator(atoms, energy=energy)
            atoms.info["key_value_pairs"]["raw_score"] = -energy

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        db_file = str(Path(tmp) / "ase_ga.db")
        prepare = PrepareDB(db_file, simulation_cell=layout.slab, stoichiometry=layout.top_numbers)
        for _ in range(ASE_GA_POPULATION):
            genome = np.zeros(problem.n_li, dtype=int)
            genome[rng.choice(problem.n_li, problem.n_remove, replace=False)] = 1
            prepare.add_unrelaxed_candidate(layout.candidate(genome))
        data = DataConnection(db_file)
        blmin = closest_distances_generator(get_all_atom_types(layout.slab, layout.top_numbers), ASE_GA_BLMIN_RATIO)
        comparator = InteratomicDistanceComparator(n_top=layout.n_top, pair_cor_cum_diff=0.015, pair_cor_max=0.7, dE=0.02, mic=False)
        pairing = CutAndSplicePairing(layout.slab, layout.n_top, blmin, rng=rng)
        mutations = OperationSelector([1.0], [PermutationMutation(layout.n_top, rng=rng)], rng=rng)

        initial = data.get_all_unrelaxed_candidates()
        evaluate(initial)
        for atoms in initial:
            data.add_relaxed_step(atoms)
        population = Population(data_connection=data, population_size=ASE_GA_POPULATION, comparator=comparator, rng=rng)
        while not trace.has_minimum and len(trace.genomes) < budget:
            first, second = population.get_two_candidates()
            child, description = pairing.get_new_individual([first, second])
            if child is None:
                failed_pairings += 1
                continue
            data.add_unrelaxed_candidate(child, description=description)
            if rng.random() < ASE_GA_MUTATION_PROBABILITY:
                mutant, description = mutations.get_new_individual([child])
                if mutant is not None:
                    data.add_unrelaxed_step(mutant, description)
                    child = mutant
            evaluate([child])
            data.add_relaxed_step(child)
            population.update()
    return trace.result("ase-ga", seed, time.perf_counter() - started, notes={"failed_pairings": failed_pairings})


def relaxed_energy(atoms: Atoms, steps: int = 10) -> tuple[float, float]:
    """Energy (eV) after ``steps`` FIRE steps with the Morse model, and the seconds it took.

    A model of fixed cost for the timing section (module level: picklable for ``parallel_map``).
    """
    started = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = MorseCalculator()
    FIRE(atoms, logfile=None).run(fmax=1e-3, steps=steps)
    return float(atoms.get_potential_energy()), time.perf_counter() - started
