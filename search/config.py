"""The ``pesmith search`` configuration: what to search, with which reference and model.

Relative paths resolve against the config file's folder. Every section has a validated range;
an error names the file and key.
"""

from __future__ import annotations

import logging
from math import comb
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from pesmith.config import (
    PluginSettings,
    TermSettings,
    check_plugin_options,
    check_potential_sections,
    term_sections,
    parse_config,
    resolve_path,
    resolve_setting_paths,
    validate_section,
)
from pesmith.errors import ConfigError
from pesmith.registry import Registry
from pesmith.simulate.md import MeltQuenchSettings
from pesmith.simulate.relax import RelaxKind, RelaxSettings

from .anneal import AnnealSettings
from .baseline import BaselineSettings
from .explore import ExploreSettings
from .ga import GASettings
from .initial_set import GenerateConfig, Section

log = logging.getLogger(__name__)


class InitialData(Section):
    """Where the first training set comes from: a labeled file or database, or the generate
    recipe (the keys of a ``pesmith generate`` config except ``output``, ``reference``,
    ``workers``), labeled with the search's reference into ``<output>/reference.db``."""

    labeled: list[Path] = Field(default_factory=list, description="labeled extxyz/ase.db files of the same reference")
    generate: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something(self):
        if not self.labeled and self.generate is None:
            raise ValueError("give labeled files (initial.labeled) or a recipe (initial.generate)")
        return self


class PotentialSettings(Section):
    """The MLP retrained at every step: the ``descriptor`` + ``model`` (or ``terms``) and
    ``training`` sections of a ``pesmith train`` config, trained on every label in the search's
    database."""

    descriptor: PluginSettings | None = None
    model: PluginSettings | None = None
    terms: list[TermSettings] | None = Field(
        None, description="instead of descriptor + model: the terms of a sum E = sum_t E_t, each {descriptor, model} (gap)"
    )
    training: dict[str, Any] = Field(default_factory=dict)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    isolated_atom_energies: dict[str, float] | None = None
    warm_start: bool = Field(True, description="retrain each step from the previous model (weights, feature scaling, reference energies) instead of from scratch")

    @property
    def term_sections(self) -> list[TermSettings]:
        """The terms of the potential: ``terms``, or the one term of ``descriptor`` + ``model``."""
        return term_sections(self.descriptor, self.model, self.terms)


class StartSettings(Section):
    """The amorphous structure the first step starts from: read from ``file``, or made by a
    melt-quench from a random cell of about ``atoms`` atoms at the path's first composition,
    driven by the first trained model (``driver: model``) or by the reference (then relaxed with
    the reference, like a file's structure)."""

    file: Path | None = Field(None, description="a Li-Si structure (extxyz, POSCAR, ...) at the first composition of the path")
    repeat: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (1, 1, 1), description="with file: its cell repeated this many times along a, b, c (a supercell)"
    )
    atoms: int = Field(38, ge=2, le=5000, description="atoms of the melt-quenched cell (about; the composition decides)")
    volume_per_atom: float | None = Field(None, gt=5, lt=60, description="Å^3; default: interpolated between the hull's Li and Si crystals")
    melt_quench: MeltQuenchSettings = MeltQuenchSettings()
    driver: Literal["model", "reference"] = Field("model", description="what drives the melt-quench MD")
    pool: int = Field(
        0, ge=0, le=10_000, description="with driver: model, this many random cells are melt-quenched and relaxed with the"
        " first model (anneal.relax, anneal.min_distance) and the lowest is the start (0: one cell, no relaxation)",
    )
    draws: int = Field(
        1, ge=1, le=100, description="a pool melt-quench that fails (the first model is unstable there) is replaced by the"
        " next random cell, up to pool x draws cells",
    )

    @model_validator(mode="after")
    def _pool_needs_the_model(self):
        if self.pool and self.driver != "model":
            raise ValueError(f"pool ({self.pool}) melt-quenches with the model: set driver: model, or pool: 0")
        return self


class ConfirmSettings(RelaxSettings):
    """Reference relaxations of the best GA candidates of each step."""

    relax: RelaxKind = "cell"
    candidates: int = Field(30, ge=1, description="unique lowest-energy candidates relaxed with the reference per step")
    frame_interval: int = Field(10, ge=0, description="label a relaxation frame every this many steps (0: final only)")
    uncertainty_weight: float = Field(
        0.0, ge=0, description="rank candidates by E - w * energy_std (eV) when the model gives a spread: w > 0 favours uncertain ones"
    )
    diversity: float = Field(
        0.0, ge=0, le=2, description="Å; skip a candidate whose distance fingerprint is within this mean difference of one"
        " already picked, whatever the energies (0: only candidates that relaxed into the same structure are merged)"
    )


class HullSettings(Section):
    """Structures relaxed with the reference for the phase diagram besides the search's: the
    elemental references (bcc Li, diamond Si) are required, compounds optional."""

    crystals: list[Path] = Field(min_length=2, description="crystal files; must include pure Li and pure Si")


class SearchConfig(Section):
    """A ``pesmith search`` configuration."""

    output: Path = Field(description="folder for the database, models, checkpoint, tables and plots")
    seed: int = 0
    workers: int = Field(1, ge=1, description="local worker processes (under MPI the ranks are the workers)")
    progress: bool = True
    reference: PluginSettings
    initial: InitialData
    potential: PotentialSettings
    start: StartSettings
    path: list[float] = Field(min_length=2, description="Li per Si at each step, the first being the start's, decreasing")
    ga: GASettings = GASettings()
    fitness: RelaxSettings = RelaxSettings(relax="positions", fmax=0.1, steps=150)
    confirm: ConfirmSettings = ConfirmSettings()
    anneal: AnnealSettings = AnnealSettings()
    explore: ExploreSettings = ExploreSettings()
    baseline: BaselineSettings = BaselineSettings()
    hull: HullSettings
    holdout: list[Path] = Field(default_factory=list, description="labeled files every trained model is evaluated on (learning curve)")
    holdout_truth: list[Path] = Field(
        default_factory=list,
        description="files labeled by a more accurate method than the reference (e.g. DFT): every model's and the"
        " reference's own force errors on them are reported side by side",
    )

    @field_validator("path")
    @classmethod
    def _decreasing(cls, path: list[float]) -> list[float]:
        for before, after in zip(path, path[1:]):
            if after >= before:
                raise ValueError(f"must decrease at every step (a delithiation path): {after} follows {before}")
        if path[-1] < 0:
            raise ValueError(f"Li per Si cannot be negative ({path[-1]})")
        return path

    @model_validator(mode="after")
    def _enough_candidates(self):
        most = self.ga.population * self.ga.generations
        if self.confirm.candidates > most:
            raise ValueError(
                f"confirm.candidates ({self.confirm.candidates}) is more than the GA can evaluate per step"
                f" (population x generations = {most})"
            )
        pool = self.anneal.candidates + self.anneal.melt_quenches
        if pool and pool < self.confirm.candidates:
            raise ValueError(
                f"anneal.candidates + anneal.melt_quenches ({pool}) is fewer than confirm.candidates ({self.confirm.candidates}):"
                " the reference relaxes the best of the annealed pool; raise them or set both to 0"
            )
        if self.anneal.screen and not pool and not self.start.pool:
            raise ValueError(
                "anneal.screen ranks the annealed pool (anneal.candidates + anneal.melt_quenches) and the start pool"
                " (start.pool), and all are 0: set a pool, or drop anneal.screen"
            )
        return self


def load_search_config(path: str | Path, registry: Registry, warn: Callable[[str], None] | None = None) -> SearchConfig:
    """Read and validate a search config; plugin sections are checked against their plugins.

    Everything that can be known before labeling is checked here, before anything is written:
    every file key names a file, the start structure is Li-Si at the path's first composition,
    and every step of the path removes Li from a cell of that size. ``warn`` receives notes for
    the user (default: this module's logger), e.g. a GA population larger than a step's
    distinct arrangements.
    """
    path = Path(path)
    config = parse_config(path, SearchConfig)
    base = path.resolve().parent
    config.output = resolve_path(base, config.output)
    config.initial.labeled = [resolve_path(base, p) for p in config.initial.labeled]
    if config.start.file is not None:
        config.start.file = resolve_path(base, config.start.file)
    config.hull.crystals = [resolve_path(base, p) for p in config.hull.crystals]
    config.holdout = [resolve_path(base, p) for p in config.holdout]
    config.holdout_truth = [resolve_path(base, p) for p in config.holdout_truth]
    files = {
        "initial.labeled": config.initial.labeled,
        "hull.crystals": config.hull.crystals,
        "holdout": config.holdout,
        "holdout_truth": config.holdout_truth,
    }
    if config.start.file is not None:
        files["start.file"] = [config.start.file]
    for key, paths in files.items():
        for file in paths:
            check_file(path, key, file)
    check_plugin_options(path, "reference", config.reference, registry, implicit=())
    model_cls = check_potential_sections(path, config.potential, config.potential.training, registry, prefix="potential.")
    check_warm_start(path, config.potential, model_cls)
    resolve_setting_paths(config.potential, config.potential.training, model_cls.settings_schema, path.resolve().parent)
    validate_section(path, "potential.training", config.potential.training, model_cls.settings_schema)
    if config.initial.generate is not None:
        generate_config(config, path)  # validates the recipe now, not after hours
    check_hull_crystals(config, path)
    n_li, n_si = start_counts(config, path)
    check_steps(config, path, n_li, n_si, warn or log.warning)
    return config


def check_warm_start(config_path: Path, potential: PotentialSettings, model_cls: type) -> None:
    """Raise :class:`ConfigError` when ``potential.warm_start`` asks a model that refits from
    scratch (a GAP, a sum of terms) to continue from the previous step's model: found at load,
    not after the initial set is labeled and the first model trained."""
    if not potential.warm_start:
        return
    if potential.terms is not None and len(potential.terms) > 1:
        why = "a sum of terms is refitted from scratch at every step"
    elif not model_cls.can_warm_start():
        why = f"model kind '{potential.term_sections[0].model.kind}' is refitted from scratch (its fit takes no warm start)"
    else:
        return
    raise ConfigError(f"{config_path}: key 'potential.warm_start': {why}; set potential.warm_start: false")


def check_file(config_path: Path, key: str, file: Path) -> None:
    """Raise :class:`ConfigError` unless ``file`` (the value of ``key``) is an existing file."""
    if not file.is_file():
        raise ConfigError(f"{config_path}: key '{key}': {file} is not a file; fix the path (relative paths resolve against the config's folder)")


def check_hull_crystals(config: SearchConfig, config_path: Path) -> None:
    """Every ``hull.crystals`` file reads as a Li-Si structure, and pure Li and pure Si are among
    them (the elemental references of the hull, needed at the end of the search)."""
    from pesmith import ase_files

    found = set()
    for file in config.hull.crystals:
        where = f"{config_path}: key 'hull.crystals': {file}"
        try:
            atoms = ase_files.read(file, index=-1)
        except Exception as exc:
            raise ConfigError(f"{where} cannot be read as a structure ({type(exc).__name__}: {exc}); give an extxyz, POSCAR, cif, ... file") from None
        elements = set(atoms.get_chemical_symbols())
        if not elements or elements - {"Li", "Si"}:
            raise ConfigError(f"{where} ({atoms.get_chemical_formula()}) is not a Li-Si structure; the hull takes Li, Si and Li-Si crystals")
        found.add(frozenset(elements))
    missing = [element for element in ("Li", "Si") if frozenset({element}) not in found]
    if missing:
        raise ConfigError(
            f"{config_path}: key 'hull.crystals' has no pure {' and no pure '.join(missing)} crystal; add the elemental"
            " references (e.g. data/lisi_crystals/Li_bcc.xyz, Si_diamond.xyz)"
        )


def start_counts(config: SearchConfig, config_path: Path) -> tuple[int, int]:
    """Li and Si atoms of the start structure: ``start.file``'s (read and checked: Li and Si
    only, at the path's first composition), else the melt-quenched cell's of about
    ``start.atoms`` atoms.

    Raises
    ------
    ConfigError
        The file cannot be read, holds no Li, no Si or other elements, or is not at ``path[0]``.
    """
    from .amorphous import composition_counts

    x0 = config.path[0]
    if config.start.file is None:
        try:
            counts = composition_counts(x0, config.start.atoms)
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: key 'start.atoms': {exc}") from None
        return counts["Li"], counts["Si"]
    from pesmith import ase_files

    where = f"{config_path}: key 'start.file': {config.start.file}"
    try:
        atoms = ase_files.read(config.start.file, index=-1).repeat(config.start.repeat)
    except Exception as exc:
        raise ConfigError(f"{where} cannot be read as a structure ({type(exc).__name__}: {exc}); give an extxyz, POSCAR, cif, ... file") from None
    n_li, n_si = int((atoms.numbers == 3).sum()), int((atoms.numbers == 14).sum())
    formula = atoms.get_chemical_formula()
    if n_li == 0:
        raise ConfigError(f"{where} ({formula}) has no Li: a delithiation search starts from a lithiated structure")
    if n_si == 0 or set(atoms.numbers.tolist()) - {3, 14}:
        raise ConfigError(f"{where} ({formula}) must hold Li and Si only, with at least one Si")
    if abs(n_li - x0 * n_si) > 0.5:
        raise ConfigError(
            f"{where} is Li{n_li}Si{n_si} (x = {n_li / n_si:.3f} Li per Si) but path starts at x = {x0}; make them agree"
        )
    return n_li, n_si


def check_steps(config: SearchConfig, config_path: Path, n_li: int, n_si: int, warn: Callable[[str], None]) -> None:
    """Every step of the path removes at least one Li from the start cell (``n_li`` Li,
    ``n_si`` Si), as the search rounds ``x * n_si``; ``warn`` notes a step whose distinct
    arrangements are fewer than the GA population."""
    path = config.path
    if config.start.file is not None:
        size, fix = f"start.file's {n_si} Si", "give a larger start.file cell or start.repeat"
    else:
        size, fix = f"start.atoms: {config.start.atoms} gives Li{n_li}Si{n_si}", "raise start.atoms"
    before = n_li
    for step, (x_from, x_to) in enumerate(zip(path, path[1:]), start=1):
        after = round(x_to * n_si)
        if after >= before:
            raise ConfigError(
                f"{config_path}: key 'path': step {step} (x = {x_from} -> {x_to}) removes no Li with {size}"
                f" (Li{before}Si{n_si} -> Li{after}Si{n_si}); {fix} or use fewer steps"
            )
        removed = before - after
        arrangements = comb(before, removed)
        if removed < before and config.ga.population > arrangements:
            warn(
                f"{config_path}: step {step} (x = {x_from} -> {x_to}) has {arrangements} distinct arrangements"
                f" (remove {removed} of {before} Li), fewer than ga.population ({config.ga.population}): the GA evaluates every one and stops"
            )
        before = after


def generate_config(config: SearchConfig, where: Path):
    """The :class:`pesmith.search.initial_set.GenerateConfig` of ``initial.generate``: labels go
    to ``<output>/reference.db`` with the search's reference and workers."""
    base = where.resolve().parent
    recipe = dict(config.initial.generate or {})
    for key in ("output", "reference", "workers"):
        if key in recipe:
            raise ConfigError(f"{where}: key 'initial.generate.{key}' is set by the search (output, reference, workers); remove it")
    recipe["crystals"] = [str(resolve_path(base, Path(p))) for p in recipe.get("crystals", [])]
    for crystal in recipe["crystals"]:
        check_file(where, "initial.generate.crystals", Path(crystal))
    recipe.update(output=str(config.output / "reference.db"), reference=config.reference.model_dump(), workers=config.workers, progress=config.progress)
    generate = validate_section(where, "initial.generate", recipe, GenerateConfig)
    if generate.md is not None:
        generate.md.model = resolve_path(base, generate.md.model)
        check_file(where, "initial.generate.md.model", generate.md.model)
    return generate
