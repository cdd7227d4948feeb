"""YAML configuration -> validated config objects, with errors that name the file and key.

Relative paths in a config resolve against the config file's folder.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from .errors import ConfigError, PluginError
from .registry import Kind, Registry
from .fit_settings import FitSettings

ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


class DataSettings(BaseModel):
    """The ``data:`` section."""

    model_config = ConfigDict(extra="forbid")

    train: Path | list[Path] = Field(
        description="labeled structures: an extxyz or ase.db file, or a list of them (concatenated in order)"
    )
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="share of structures held out")
    seed: int = Field(0, description="seed of the train/validation split")
    isolated_atom_energies: dict[str, float] | None = Field(
        None, description="eV per element; default: least-squares fit of energy vs composition"
    )
    allow_mixed_references: bool = Field(
        False, description="train on labels of different reference methods or parameters in one set"
    )

    @field_validator("train")
    @classmethod
    def _not_empty(cls, value: Path | list[Path]) -> Path | list[Path]:
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one file of labeled structures")
        return value

    @property
    def train_files(self) -> list[Path]:
        """``train`` as a list of files."""
        return list(self.train) if isinstance(self.train, list) else [self.train]


class PluginSettings(BaseModel):
    """A ``descriptor:`` or ``model:`` section: ``kind`` plus the plugin's own keys."""

    model_config = ConfigDict(extra="allow")

    kind: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TermSettings(BaseModel):
    """One entry of ``terms:``: a term's descriptor and model and, under ``training:``, the fit
    settings it sets for itself (only the keys its model's ``settings_schema.term_keys`` allows,
    e.g. a GAP term's ``n_sparse``); the rest come from the config's ``training:``."""

    model_config = ConfigDict(extra="forbid")

    descriptor: PluginSettings
    model: PluginSettings
    training: dict[str, Any] = Field(default_factory=dict, description="this term's own fit settings (e.g. n_sparse)")


class PairParameters(BaseModel):
    """One element pair of a ``baseline: {kind: pair}`` section: ``A exp(-r / rho)`` below ``cutoff``."""

    model_config = ConfigDict(extra="forbid")

    A: float = Field(gt=0, allow_inf_nan=False, description="prefactor, eV")
    rho: float = Field(gt=0, allow_inf_nan=False, description="decay length, Å")
    cutoff: float = Field(gt=0, allow_inf_nan=False, description="beyond this distance (Å) the pair does not interact")


class PairBaselineSettings(BaseModel):
    """``baseline: {kind: pair, pairs: {Li-Si: {A, rho, cutoff}, ...}}``: a Born-Mayer repulsion
    per element pair (:class:`pesmith.baseline.PairBaseline`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pair"]
    pairs: dict[str, PairParameters] = Field(description="per element pair 'A-B': A (eV), rho (Å), cutoff (Å)")
    switch_width: float = Field(0.5, gt=0, allow_inf_nan=False, description="width (Å) of the smooth switch below each cutoff")


class ModelBaselineSettings(BaseModel):
    """``baseline: {kind: model, file: PATH}``: a fitted pesmith model file as the baseline."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["model"]
    file: Path = Field(description="a model file written by pesmith train; it is embedded in the new model file")


class ReferenceBaselineSettings(BaseModel):
    """``baseline: {kind: reference, reference: {kind: xtb, ...options}}``: a registered reference
    plugin as the baseline (:class:`pesmith.baseline.ReferenceBaseline`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reference"]
    reference: PluginSettings = Field(description="the reference plugin: its kind and options, as in pesmith label")


BaselineSettings = Annotated[Union[PairBaselineSettings, ModelBaselineSettings, ReferenceBaselineSettings], Field(discriminator="kind")]
BASELINE_KINDS: dict[str, type[BaseModel]] = {
    "model": ModelBaselineSettings,
    "pair": PairBaselineSettings,
    "reference": ReferenceBaselineSettings,
}


def term_sections(
    descriptor: PluginSettings | None, model: PluginSettings | None, terms: list[TermSettings] | None
) -> list[TermSettings]:
    """The terms of a potential section: ``terms``, or the one term of ``descriptor`` + ``model``."""
    if terms is not None:
        return list(terms)
    return [TermSettings(descriptor=descriptor, model=model)]


class TrainConfig(BaseModel):
    """A ``pesmith train`` configuration: a potential of one term (``descriptor:`` and
    ``model:``) or a sum of terms (``terms:``, a list of ``{descriptor, model}``)."""

    model_config = ConfigDict(extra="forbid")

    data: DataSettings
    descriptor: PluginSettings | None = None
    model: PluginSettings | None = None
    training: SerializeAsAny[FitSettings] = Field(
        default_factory=FitSettings, description="fit settings; the keys depend on the model (its settings_schema)"
    )
    output: Path = Field(description="model file to write (.pt)")
    initial_model: Path | None = Field(
        None, description="a model file to continue from (warm start: its weights, feature scaling and reference energies);"
        " its descriptor and model must be this config's"
    )
    terms: list[TermSettings] | None = Field(
        None, description="instead of descriptor + model: the terms of a sum E = sum_t E_t, each {descriptor, model}"
    )
    baseline: BaselineSettings | None = Field(
        None, description="delta learning: a fixed potential (model file or pair repulsion) whose labels are subtracted before the fit and added back in prediction"
    )

    @property
    def term_sections(self) -> list[TermSettings]:
        """The terms of the potential: ``terms``, or the one term of ``descriptor`` + ``model``."""
        return term_sections(self.descriptor, self.model, self.terms)


class PotentialSections(Protocol):
    """What :func:`check_potential_sections` reads: a :class:`TrainConfig`, or the ``potential``
    section of a search config."""

    descriptor: PluginSettings | None
    model: PluginSettings | None
    terms: list[TermSettings] | None

    @property
    def term_sections(self) -> list[TermSettings]: ...


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping key written twice (plain PyYAML keeps the last
    one and silently drops the others, e.g. a whole first ``training:`` block)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        check_unique_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def check_unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """Raise a ``yaml.MarkedYAMLError`` at the second occurrence of a key of ``node``, naming the
    key and the lines (1-based) of both; merge keys (``<<``) are left to PyYAML."""
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            line = first_line.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if line != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                problem=f"key '{key}' is written twice, at lines {line} and {key_node.start_mark.line + 1};"
                " keep one (YAML would silently drop the first)",
                problem_mark=key_node.start_mark,
            )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        content = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, descriptor, model, ...), got {type(content).__name__}")
    return content


def parse_config(path: str | Path, schema: type[ConfigModel]) -> ConfigModel:
    """Read a YAML file and validate it against ``schema``; errors name the file and key."""
    path = Path(path)
    try:
        return schema.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, schema)) from None


def load_train_config(path: str | Path, registry: Registry) -> TrainConfig:
    """Read and validate a training config; plugin keys are checked against the plugin and the
    ``training:`` section against the model's ``settings_schema``."""
    path = Path(path)
    raw = read_yaml(path)
    training = raw.pop("training", None) or {}
    baseline = raw.pop("baseline", None)
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, TrainConfig)) from None
    base = path.resolve().parent
    if baseline is not None:
        config.baseline = check_baseline_section(path, baseline, base, registry)
        if config.initial_model is not None:
            raise ConfigError(f"{path}: key 'baseline': a baseline with initial_model (warm start) is not supported yet; remove one of them")
    if isinstance(config.data.train, list):
        config.data.train = [resolve_path(base, p) for p in config.data.train]
    else:
        config.data.train = resolve_path(base, config.data.train)
    config.output = resolve_path(base, config.output)
    if config.initial_model is not None:
        config.initial_model = resolve_path(base, config.initial_model)
        if not config.initial_model.is_file():
            raise ConfigError(f"{path}: key 'initial_model': {config.initial_model} is not a file")
    model_cls = check_potential_sections(path, config, training, registry)
    resolve_setting_paths(config, training, model_cls.settings_schema, base)
    config.training = validate_section(path, "training", training, model_cls.settings_schema)
    return config


def resolve_setting_paths(config: PotentialSections, training: dict[str, Any], schema: type, base: Path) -> None:
    """Resolve, in place, the file paths among the fit settings (``schema.path_keys``) of the
    ``training`` section and of each term's own ``training`` against ``base``, the config's folder."""
    for section in (training, *(term.training for term in config.term_sections)):
        for key in schema.path_keys:
            if isinstance(section.get(key), str):
                section[key] = str(resolve_path(base, Path(section[key])))


def check_baseline_section(path: Path, content: Any, base: Path, registry: Registry) -> BaselineSettings:
    """Validate a ``baseline:`` section: its kind (``model``, ``pair`` or ``reference``), keys, a
    model baseline's file (resolved against ``base``, the config's folder), a pair baseline's
    parameters or a reference baseline's plugin kind and options.

    Raises
    ------
    ConfigError
        One line naming the file, the key and what to do.
    """
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: section 'baseline' must be a mapping with a kind ({', '.join(BASELINE_KINDS)}), got {type(content).__name__}")
    kind = content.get("kind")
    if kind not in BASELINE_KINDS:
        raise ConfigError(f"{path}: key 'baseline.kind': unknown baseline kind {kind!r}; valid kinds: {', '.join(BASELINE_KINDS)}")
    settings = validate_section(path, "baseline", content, BASELINE_KINDS[kind])
    if isinstance(settings, ModelBaselineSettings):
        settings.file = resolve_path(base, settings.file)
        if not settings.file.is_file():
            raise ConfigError(f"{path}: key 'baseline.file': {settings.file} is not a file; give a model file written by `pesmith train`")
    elif isinstance(settings, ReferenceBaselineSettings):
        check_plugin_options(path, "reference", settings.reference, registry, implicit=(), where="baseline.")
    else:
        from .baseline import PairBaseline  # torch: only for a pair baseline

        if not settings.pairs:
            raise ConfigError(f"{path}: key 'baseline.pairs' is empty; give at least one pair, e.g. Li-Si: {{A: 500, rho: 0.3, cutoff: 3}}")
        try:
            PairBaseline({key: pair.model_dump() for key, pair in settings.pairs.items()}, settings.switch_width)
        except ConfigError as exc:
            raise ConfigError(f"{path}: key 'baseline.pairs': {exc}") from None
    return settings


def check_potential_sections(
    path: Path, config: PotentialSections, training: dict[str, Any], registry: Registry, prefix: str = ""
) -> type:
    """Check the one-term form (``descriptor`` + ``model``) or the ``terms`` of ``config``: one
    form, not both; at least one term; plugin kinds and keys; each term's own ``training``
    keys. Returns the model class whose ``settings_schema`` validates ``training``. ``prefix``
    names the section that holds these keys in messages (e.g. ``potential.`` in a search config).

    Raises
    ------
    ConfigError
        One line naming the file and the key.
    """
    if config.terms is not None:
        if config.descriptor is not None or config.model is not None:
            given = " and ".join(key for key in ("descriptor", "model") if getattr(config, key) is not None)
            raise ConfigError(f"{path}: key '{prefix}terms': give either terms or descriptor + model, not both (remove {given} or terms)")
        if not config.terms:
            raise ConfigError(f"{path}: key '{prefix}terms' is empty; list at least one term {{descriptor: {{kind: ...}}, model: {{kind: ...}}}}")
    else:
        for key in ("descriptor", "model"):
            if getattr(config, key) is None:
                raise ConfigError(f"{path}: missing required key '{prefix}{key}' (or give 'terms', a list of {{descriptor, model}})")
    classes = []
    for k, term in enumerate(config.term_sections):
        where = prefix + (f"terms[{k}]." if config.terms is not None else "")
        check_plugin_options(path, "descriptor", term.descriptor, registry, implicit=("species",), where=where)
        classes.append(check_plugin_options(path, "model", term.model, registry, implicit=("species", "n_features"), where=where))
    if len(classes) > 1:
        kinds = sorted({term.model.kind for term in config.term_sections})
        if len(kinds) > 1:
            raise ConfigError(
                f"{path}: key '{prefix}terms': terms of different model kinds ({', '.join(kinds)}) cannot be fitted together yet;"
                " use one kind (gap) in every term"
            )
        from .model import Model  # torch: only here, where plugin classes are loaded anyway

        if classes[0].fit_terms.__func__ is Model.fit_terms.__func__:
            raise ConfigError(
                f"{path}: key '{prefix}terms': model kind '{kinds[0]}' cannot be one of several terms yet (only gap models are"
                " fitted jointly); use one descriptor and model, or gap in every term"
            )
    for k, (term, model_cls) in enumerate(zip(config.term_sections, classes)):
        where = prefix + (f"terms[{k}]." if config.terms is not None else "")
        allowed = model_cls.settings_schema.term_keys
        for key in term.training:
            if key not in allowed:
                raise ConfigError(
                    f"{path}: unknown key '{where}training.{key}': a term of model kind '{term.model.kind}' may set only"
                    f" {', '.join(allowed) or 'nothing'} for itself; put the other fit settings in the config's training section"
                )
        if term.training:
            validate_section(path, f"{where}training", training | term.training, model_cls.settings_schema)
    return classes[0]


def validate_section(path: Path, section: str, content: Any, schema: type[ConfigModel]) -> ConfigModel:
    """Validate one section of a config file against ``schema``; errors name the file and key."""
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: section '{section}' must be a mapping of keys, got {type(content).__name__}")
    try:
        return schema.model_validate(content)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, schema, prefix=(section,))) from None


def check_plugin_options(
    path: Path, kind: Kind, settings: PluginSettings, registry: Registry, implicit: tuple[str, ...], where: str = ""
) -> type:
    """Check that every key of a plugin section is a constructor argument of the plugin;
    ``where`` prefixes the key in messages (e.g. ``terms[1].``)."""
    if where:
        try:
            cls = registry.get(kind, settings.kind)
        except PluginError as exc:
            raise ConfigError(f"{path}: key '{where}{kind}.kind': {exc}") from None
    else:
        cls = registry.get(kind, settings.kind)
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return cls
    valid = [name for name in parameters if name != "self"]
    for key in settings.options:
        if key not in valid:
            raise ConfigError(
                f"{path}: unknown key '{where}{kind}.{key}' for {kind} kind '{settings.kind}'; valid keys: kind, "
                + ", ".join(name for name in valid if name not in implicit or name == "species")
            )
    return cls


def output_folder(path: str | Path) -> Path:
    """The ``output`` key of the config file ``path``, resolved against its folder, read without
    validating the rest (no plugin, model or torch is loaded: for reports on a run, such as
    ``pesmith search --status``)."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("output"), str):
        raise ConfigError(f"{path}: key 'output' (the run's folder) is missing or not a path")
    return resolve_path(path.resolve().parent, Path(raw["output"]))


def resolve_path(base: Path, path: Path) -> Path:
    """``path`` itself if absolute, else ``base / path`` (the config's folder)."""
    return path if path.is_absolute() else (base / path).resolve()


def _describe(path: Path, exc: ValidationError, schema: type[BaseModel], prefix: tuple[str, ...] = ()) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in (*prefix, *error["loc"]))
    if error["type"] == "extra_forbidden":
        section = error["loc"][:-1]
        model: type[BaseModel] = schema
        for part in section:
            if part in model.model_fields:  # else a key of a mapping of sections (e.g. a config_type)
                model = _section_model(model.model_fields[part].annotation)
        valid = ", ".join(model.model_fields)
        where = ".".join(map(str, (*prefix, *section)))
        return f"{path}: unknown key '{location}'; valid keys{' in ' + where if where else ''}: {valid}"
    if error["type"] == "missing":
        return f"{path}: missing required key '{location}'"
    return f"{path}: key '{location}': {error['msg']} (got {error.get('input')!r})"


def _section_model(annotation: Any) -> type[BaseModel]:
    """The model class of a section's annotation, ``Section``, ``Section | None`` or
    ``dict[str, Section]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel))
