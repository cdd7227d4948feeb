"""The ``pesmith search`` configuration: what to search, with which reference and model.

Relative paths resolve against the config file's folder. Every section has a validated range;
an error names the file and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pesmith.config import PluginSettings, check_plugin_options, parse_config, resolve_path, validate_section
from pesmith.errors import ConfigError
from pesmith.registry import Registry

from .amorphous import MeltQuenchSettings
from .explore import ExploreSettings
from .ga import GASettings
from .initial_set import GenerateConfig, Section
from .relaxation import RelaxKind, RelaxSettings


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
    """The MLP retrained at every step: the ``descriptor``, ``model`` and ``training`` sections of
    a ``pesmith train`` config, trained on every label in the search's database."""

    descriptor: PluginSettings
    model: PluginSettings
    training: dict[str, Any] = Field(default_factory=dict)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    isolated_atom_energies: dict[str, float] | None = None
    warm_start: bool = Field(True, description="retrain each step from the previous model (weights, feature scaling, reference energies) instead of from scratch")


class StartSettings(Section):
    """The amorphous structure the first step starts from: read from ``file``, or made by a
    melt-quench from a random cell of about ``atoms`` atoms at the path's first composition,
    driven by the first trained model (``driver: model``) or by the reference (then relaxed with
    the reference, like a file's structure)."""

    file: Path | None = Field(None, description="a Li-Si structure (extxyz, POSCAR, ...) at the first composition of the path")
    atoms: int = Field(38, ge=2, le=5000, description="atoms of the melt-quenched cell (about; the composition decides)")
    volume_per_atom: float | None = Field(None, gt=5, lt=60, description="Å^3; default: interpolated between the hull's Li and Si crystals")
    melt_quench: MeltQuenchSettings = MeltQuenchSettings()
    driver: Literal["model", "reference"] = Field("model", description="what drives the melt-quench MD")


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
    explore: ExploreSettings = ExploreSettings()
    hull: HullSettings
    holdout: list[Path] = Field(default_factory=list, description="labeled files every trained model is evaluated on (learning curve)")

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
        return self


def load_search_config(path: str | Path, registry: Registry) -> SearchConfig:
    """Read and validate a search config; plugin sections are checked against their plugins."""
    path = Path(path)
    config = parse_config(path, SearchConfig)
    base = path.resolve().parent
    config.output = resolve_path(base, config.output)
    config.initial.labeled = [resolve_path(base, p) for p in config.initial.labeled]
    if config.start.file is not None:
        config.start.file = resolve_path(base, config.start.file)
    config.hull.crystals = [resolve_path(base, p) for p in config.hull.crystals]
    config.holdout = [resolve_path(base, p) for p in config.holdout]
    for file in config.holdout:
        if not file.is_file():
            raise ConfigError(f"{path}: key 'holdout': {file} is not a file")
    check_plugin_options(path, "reference", config.reference, registry, implicit=())
    check_plugin_options(path, "descriptor", config.potential.descriptor, registry, implicit=("species",))
    model_cls = check_plugin_options(path, "model", config.potential.model, registry, implicit=("species", "n_features"))
    validate_section(path, "potential.training", config.potential.training, model_cls.settings_schema)
    if config.initial.generate is not None:
        generate_config(config, path)  # validates the recipe now, not after hours
    return config


def generate_config(config: SearchConfig, where: Path):
    """The :class:`pesmith.search.initial_set.GenerateConfig` of ``initial.generate``: labels go
    to ``<output>/reference.db`` with the search's reference and workers."""
    base = where.resolve().parent
    recipe = dict(config.initial.generate or {})
    for key in ("output", "reference", "workers"):
        if key in recipe:
            raise ConfigError(f"{where}: key 'initial.generate.{key}' is set by the search (output, reference, workers); remove it")
    recipe["crystals"] = [str(resolve_path(base, Path(p))) for p in recipe.get("crystals", [])]
    recipe.update(output=str(config.output / "reference.db"), reference=config.reference.model_dump(), workers=config.workers, progress=config.progress)
    generate = validate_section(where, "initial.generate", recipe, GenerateConfig)
    if generate.md is not None:
        generate.md.model = resolve_path(base, generate.md.model)
    return generate
