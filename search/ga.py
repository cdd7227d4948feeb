"""The genetic algorithm of the search, on DEAP.

A :class:`deap.base.Toolbox` holds the operators by role (``genome``, ``mate``, ``mutate``,
``select``, ``elite``); individuals are :class:`Individual` lists with a minimising
:class:`deap.base.Fitness` (no ``deap.creator`` classes made at import). Every random draw
comes from the :class:`numpy.random.Generator` of the :class:`GeneticSearch`, never from the
global ``random`` module, so a run is reproducible from its seed and resumable from its state.

One generation: keep the ``elite`` best individuals, then fill the population with children of
parents chosen by tournament (or a roulette wheel on the energy): crossover of two parents, then a swap
mutation with probability ``mutation_rate``. A child whose genome was seen before (in any
generation) is redrawn a few times; whatever genome is left is never evaluated twice: its
energy comes from the evaluation cache. The duplicate rate per generation is recorded. The run
stops after ``generations`` generations, after ``patience`` generations without a lower energy,
or when every arrangement has been evaluated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
from deap import base, tools
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .delithiation import DelithiationProblem, Genome, genome_hash, swap_mutation, uniform_crossover

MAX_DUPLICATE_REDRAWS = 10  # extra draws for one population place while the draws repeat a genome already seen


class GASettings(BaseModel):
    """The ``ga:`` section of a search config."""

    model_config = ConfigDict(extra="forbid")

    population: int = Field(32, ge=2, description="individuals per generation")
    mutation_rate: float = Field(0.1, ge=0.0, le=1.0, description="probability that a child is also mutated (one Li-vacancy swap)")
    elite: int = Field(2, ge=0, description="best individuals copied unchanged into the next generation")
    selection: Literal["tournament", "roulette"] = "tournament"
    tournament_size: int = Field(3, ge=2)
    generations: int = Field(20, ge=1, description="at most this many generations per step (the first is random)")
    patience: int | None = Field(5, ge=1, description="stop after this many generations without a lower energy")

    @model_validator(mode="after")
    def _elite_below_population(self):
        if self.elite >= self.population:
            raise ValueError(f"elite ({self.elite}) must be smaller than population ({self.population})")
        return self


class EnergyFitness(base.Fitness):
    """One objective, the energy (eV), minimised; a failed evaluation has energy ``inf``."""

    weights = (-1.0,)


class Individual(list):
    """A genome (list of 0/1 per Li site) with a DEAP fitness."""

    def __init__(self, genome: Sequence[int]):
        super().__init__(genome)
        self.fitness = EnergyFitness()

    @property
    def key(self) -> str:
        return genome_hash(self)


@dataclass
class Evaluation:
    """The outcome of one genome: energy (eV) after relaxation, or the reason it failed."""

    key: str
    genome: Genome
    generation: int
    operator: str  # "random", "crossover", "crossover+mutation", "mutation"
    parents: tuple[str, ...] = ()
    energy: float | None = None
    energy_std: float | None = None
    reason: str | None = None
    payload: dict = field(default_factory=dict)  # what the evaluator returns besides the energy

    @property
    def ok(self) -> bool:
        return self.energy is not None

    @property
    def score(self) -> float:
        return self.energy if self.energy is not None else float("inf")

    def as_dict(self) -> dict:
        return asdict(self) | {"genome": list(self.genome), "parents": list(self.parents)}

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        return cls(**(data | {"genome": tuple(data["genome"]), "parents": tuple(data["parents"])}))


@dataclass
class Outcome:
    """What an evaluator returns for one genome."""

    energy: float | None
    reason: str | None = None
    energy_std: float | None = None
    payload: dict = field(default_factory=dict)


Evaluator = Callable[[list[Genome]], list[Outcome]]  # or list[Evaluation] -> list[Outcome] (``with_origins``)


@dataclass
class GenerationRecord:
    """One line of the GA log."""

    generation: int
    evaluated: int
    duplicates: int  # children whose genome had been seen before (not evaluated again)
    failed: int
    best_energy: float
    mean_energy: float

    @property
    def duplicate_rate(self) -> float:
        total = self.evaluated + self.duplicates
        return self.duplicates / total if total else 0.0


def make_toolbox(problem: DelithiationProblem, settings: GASettings, rng: np.random.Generator) -> base.Toolbox:
    """The operators of one delithiation step, registered by role."""
    toolbox = base.Toolbox()
    toolbox.register("genome", lambda: Individual(problem.random_genome(rng)))
    toolbox.register("mate", lambda a, b: Individual(uniform_crossover(a, b, rng)))
    toolbox.register("mutate", lambda a: Individual(swap_mutation(a, rng)))
    toolbox.register("elite", tools.selBest)
    if settings.selection == "tournament":
        toolbox.register("select", select_tournament, size=settings.tournament_size, rng=rng)
    else:
        toolbox.register("select", select_roulette, rng=rng)
    return toolbox


def select_tournament(individuals: Sequence[Individual], k: int, size: int, rng: np.random.Generator) -> list[Individual]:
    """``k`` winners of tournaments of ``size`` individuals drawn with replacement."""
    scores = np.array([-ind.fitness.wvalues[0] for ind in individuals])
    picks = rng.integers(len(individuals), size=(k, size))
    return [individuals[row[np.argmin(scores[row])]] for row in picks]


def select_roulette(individuals: Sequence[Individual], k: int, rng: np.random.Generator) -> list[Individual]:
    """``k`` individuals drawn with probability proportional to ``E_max - E`` (the classic
    roulette wheel on the energy above the worst one, plus a floor of 1 % of the spread so the
    worst keeps a chance). Failed individuals (``E = inf``) have weight 0 unless all failed."""
    energies = np.array([-ind.fitness.wvalues[0] for ind in individuals])
    finite = np.isfinite(energies)
    if not finite.any():
        weights = np.ones(len(individuals))
    else:
        worst, spread = energies[finite].max(), np.ptp(energies[finite])
        weights = np.where(finite, worst - np.where(finite, energies, worst) + 0.01 * spread + 1e-12, 0.0)
    picks = rng.choice(len(individuals), size=k, p=weights / weights.sum())
    return [individuals[i] for i in picks]


@dataclass
class GAState:
    """Everything a step's GA needs to continue after a restart (JSON-serialisable via ``as_dict``)."""

    generation: int = 0  # generations done
    population: list[str] = field(default_factory=list)  # keys of the current population
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # every genome ever evaluated
    log: list[GenerationRecord] = field(default_factory=list)
    stale: int = 0  # generations since the best energy last fell
    done: bool = False
    stop_reason: str = ""

    def best(self, n: int = 1) -> list[Evaluation]:
        """The ``n`` lowest-energy successful evaluations."""
        ok = [e for e in self.evaluations.values() if e.ok]
        return sorted(ok, key=lambda e: (e.energy, e.key))[:n]

    def as_dict(self) -> dict:
        return {
            "generation": self.generation,
            "population": self.population,
            "evaluations": [e.as_dict() for e in self.evaluations.values()],
            "log": [asdict(r) for r in self.log],
            "stale": self.stale,
            "done": self.done,
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def from_dict(cls, data: dict) -> GAState:
        evaluations = [Evaluation.from_dict(e) for e in data["evaluations"]]
        return cls(
            generation=data["generation"],
            population=list(data["population"]),
            evaluations={e.key: e for e in evaluations},
            log=[GenerationRecord(**r) for r in data["log"]],
            stale=data["stale"],
            done=data["done"],
            stop_reason=data["stop_reason"],
        )


class GeneticSearch:
    """The GA of one delithiation step, run one generation at a time.

    Parameters
    ----------
    problem, settings
        What to search and how.
    evaluate
        Energies (eV) of a batch of genomes, in order (the search maps it over workers).
    rng
        The generator every random choice draws from; its state belongs to the caller's
        checkpoint.
    state
        A state to continue from (a fresh one by default).
    with_origins
        Give ``evaluate`` the :class:`Evaluation` of each new genome (key, genome, generation,
        operator, parents; no outcome yet) instead of the bare genome, so that it can store
        where a candidate came from together with its result.
    """

    def __init__(
        self,
        problem: DelithiationProblem,
        settings: GASettings,
        evaluate: Evaluator,
        rng: np.random.Generator,
        state: GAState | None = None,
        *,
        with_origins: bool = False,
    ):
        self.problem = problem
        self.settings = settings
        self.evaluate = evaluate
        self.rng = rng
        self.state = state or GAState()
        self.with_origins = with_origins
        self.toolbox = make_toolbox(problem, settings, rng)

    def run(self, after_generation: Callable[[GeneticSearch], None] | None = None) -> GAState:
        """Run generations until a stopping rule holds; ``after_generation`` is called after each."""
        while not self.state.done:
            self.next_generation()
            if after_generation is not None:
                after_generation(self)
        return self.state

    def next_generation(self) -> GenerationRecord:
        """Make, evaluate and select one generation; update the stopping rule."""
        state = self.state
        if state.generation == 0:
            proposals = self._random_population()
        else:
            proposals = self._offspring()
        new = {}
        duplicates = 0
        for genome, operator, parents in proposals:
            key = genome_hash(genome)
            if operator == "elite":
                continue
            if key in state.evaluations or key in new:
                duplicates += 1
            else:
                new[key] = Evaluation(key, genome, state.generation, operator, parents)
        previous_best = state.best()[0].energy if state.evaluations and state.best() else float("inf")
        asked = list(new.values()) if self.with_origins else [e.genome for e in new.values()]
        outcomes = self.evaluate(asked) if new else []
        for evaluation, outcome in zip(new.values(), outcomes):
            evaluation.energy = None if outcome.energy is None or not np.isfinite(outcome.energy) else float(outcome.energy)
            evaluation.reason = outcome.reason if evaluation.energy is None else None
            if evaluation.energy is None and evaluation.reason is None:
                evaluation.reason = "non-finite energy"
            evaluation.energy_std = outcome.energy_std
            evaluation.payload = outcome.payload
            state.evaluations[evaluation.key] = evaluation
        state.population = list(dict.fromkeys(genome_hash(g) for g, _, _ in proposals))
        energies = np.array([state.evaluations[k].score for k in state.population])
        finite = energies[np.isfinite(energies)]
        best = state.best()[0].energy if state.best() else float("inf")
        record = GenerationRecord(
            generation=state.generation,
            evaluated=len(new),
            duplicates=duplicates,
            failed=sum(1 for e in new.values() if not e.ok),
            best_energy=float(best),
            mean_energy=float(finite.mean()) if len(finite) else float("inf"),
        )
        state.log.append(record)
        state.stale = 0 if best < previous_best - 1e-9 else state.stale + 1
        state.generation += 1
        self._check_stop()
        return record

    def _check_stop(self) -> None:
        state, settings = self.state, self.settings
        if len(state.evaluations) >= self.problem.n_arrangements:
            state.done, state.stop_reason = True, f"all {self.problem.n_arrangements} arrangements evaluated"
        elif state.generation >= settings.generations:
            state.done, state.stop_reason = True, f"{settings.generations} generations"
        elif settings.patience is not None and state.generation > 1 and state.stale >= settings.patience:
            state.done, state.stop_reason = True, f"no lower energy in {settings.patience} generations"

    def _random_population(self) -> list[tuple[Genome, str, tuple]]:
        size = min(self.settings.population, self.problem.n_arrangements)
        seen: dict[str, Genome] = {}
        for _ in range(size * (MAX_DUPLICATE_REDRAWS + 1)):
            genome = tuple(self.toolbox.genome())
            seen.setdefault(genome_hash(genome), genome)
            if len(seen) == size:
                break
        return [(g, "random", ()) for g in seen.values()]

    def _individuals(self) -> list[Individual]:
        out = []
        for key in self.state.population:
            evaluation = self.state.evaluations[key]
            individual = Individual(evaluation.genome)
            individual.fitness.values = (evaluation.score,)
            out.append(individual)
        return out

    def _offspring(self) -> list[tuple[Genome, str, tuple]]:
        toolbox, settings, seen = self.toolbox, self.settings, self.state.evaluations
        parents = self._individuals()
        elite = toolbox.elite(parents, min(settings.elite, len(parents)))
        out = [(tuple(ind), "elite", (ind.key,)) for ind in elite]
        taken = {genome_hash(g) for g, _, _ in out}
        while len(out) < settings.population:
            for _ in range(MAX_DUPLICATE_REDRAWS + 1):
                first, second = toolbox.select(parents, 2)
                if first == second:
                    child, operator, origin = toolbox.mutate(first), "mutation", (first.key,)
                else:
                    child, operator, origin = toolbox.mate(first, second), "crossover", (first.key, second.key)
                    if self.rng.random() < settings.mutation_rate:
                        child, operator = toolbox.mutate(child), "crossover+mutation"
                key = genome_hash(child)
                if key not in seen and key not in taken:
                    break
            taken.add(key)
            out.append((tuple(child), operator, origin))
        return out
