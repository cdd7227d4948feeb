"""What the command line and the search call: train a potential from a config, label structures
in memory.

The CLI only parses arguments and prints; everything a run computes and writes is here, with the
rules for its outputs: they must be writable (:func:`check_writable`), and a training does not
replace an earlier one's files unless told to (:func:`check_train_outputs`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import yaml
from ase import Atoms

from . import __version__
from .atomic_io import write_text_atomic
from .baseline import Baseline, ModelBaseline, PairBaseline, ReferenceBaseline
from .config import BaselineSettings, ModelBaselineSettings, PotentialSections, ReferenceBaselineSettings, TrainConfig
from .data import Dataset, read_dataset
from .distributed import Ranks, check_shareable, current_ranks, rank_threads
from .errors import ConfigError, ModelFileError
from .fit_settings import FitSettings
from .interrupt import deferred_interrupt, interrupt_once
from .labeling import MapFunction, build_reference, label_one
from .model import INTERRUPTED_AT_EPOCH
from .model_file import load_potential, save_potential
from .parallel import parallel_map
from .potential import Potential
from .reference import Reference
from .reference_db import Label
from .registry import Registry
from .report import report_paths, write_report
from .training import AdamSettings
from .validation import Predictions, predict_dataset

logger = logging.getLogger(__name__)


BASELINE_METRICS = "of the total potential (baseline + learned terms) against the labels; the terms were fitted to the labels less the baseline's"


@dataclass
class TrainResult:
    """A trained potential and its report (the JSON the report file holds)."""

    potential: Potential
    report: dict[str, Any]


def build_potential(config: PotentialSections, species: Sequence[str], registry: Registry, baseline: Baseline | None = None) -> Potential:
    """Instantiate the descriptor and model plugins of each term ``config`` describes (one term
    for ``descriptor`` + ``model``, or its ``terms``; a :class:`TrainConfig` or a search
    config's ``potential`` section), over ``baseline`` if given (:func:`build_baseline`)."""
    terms, sections = config.terms, config.term_sections
    pairs = []
    for term in sections:
        descriptor_options = {"species": list(species), **term.descriptor.options}
        try:
            descriptor = registry.get("descriptor", term.descriptor.kind)(**descriptor_options)
            model = registry.get("model", term.model.kind)(
                species=descriptor.species, n_features=descriptor.n_features, **term.model.options
            )
        except TypeError as exc:
            raise ConfigError(f"invalid plugin options: {exc}") from exc
        pairs.append((descriptor, model))
    if terms is None:
        return Potential(*pairs[0], baseline=baseline)
    return Potential(terms=pairs, baseline=baseline)


def build_baseline(settings: BaselineSettings, species: Sequence[str], registry: Registry, where: str = "the train config") -> Baseline:
    """The baseline of a ``baseline:`` section, checked against the potential's ``species``;
    ``where`` names the config in errors.

    Raises
    ------
    ConfigError
        Naming the key: a baseline model file that cannot be read, whose species do not cover
        ``species`` or that has an external baseline of its own; a pair baseline naming an element
        outside ``species``; a reference baseline whose plugin cannot be set up.
    """
    if isinstance(settings, ReferenceBaselineSettings):  # any element: the reference itself fails on those it lacks
        reference = build_reference(settings.reference, registry, f"{where}: key 'baseline.reference'")
        return ReferenceBaseline(reference, {"kind": settings.reference.kind, **settings.reference.options})
    model = isinstance(settings, ModelBaselineSettings)
    try:
        if model:
            potential = load_potential(settings.file, registry)[0]
            if potential.baseline is not None and potential.baseline.external:
                raise ConfigError(
                    f"{settings.file} has a {potential.baseline.kind} baseline, which a baseline model cannot carry;"
                    " give the reference baseline to this config instead"
                )
            baseline: Baseline = ModelBaseline(potential, source=str(settings.file))
        else:
            baseline = PairBaseline({k: pair.model_dump() for k, pair in settings.pairs.items()}, settings.switch_width)
        baseline.check_species(species)
    except (ConfigError, ModelFileError) as exc:
        raise ConfigError(f"{where}: key 'baseline.{'file' if model else 'pairs'}': {exc}") from None
    return baseline


def term_settings(config: TrainConfig) -> list[FitSettings]:
    """Each term's fit settings: ``config.training`` with the term's own ``training`` keys."""
    schema = type(config.training)
    return [schema.model_validate(config.training.model_dump() | term.training) for term in config.term_sections]


def initial_potential(path: Path, built: Potential, registry: Registry) -> Potential:
    """The potential of model file ``path`` to warm-start from, checked against ``built`` (the
    config's fresh potential): same terms (descriptor and model each) and species, or a
    :class:`ConfigError`."""
    loaded, _ = load_potential(path, registry)
    if loaded.baseline is not None:
        raise ConfigError(f"initial_model {path}: it has a baseline, and continuing a delta-learned model is not supported yet; train from scratch")
    if len(loaded.terms) != len(built.terms):
        raise ConfigError(
            f"initial_model {path}: it has {len(loaded.terms)} term(s), the config {len(built.terms)}; train from scratch"
            " or use the initial model's settings"
        )
    for ours_term, theirs_term in zip(built.terms, loaded.terms):
        for part in ("descriptor", "model"):
            ours, theirs = getattr(ours_term, part), getattr(theirs_term, part)
            if type(ours) is not type(theirs) or ours.get_config() != theirs.get_config() or built.species != loaded.species:
                raise ConfigError(
                    f"initial_model {path}: its {part} ({type(theirs).__name__} {theirs.get_config()}, species {list(loaded.species)})"
                    f" differs from the config's ({type(ours).__name__} {ours.get_config()}, species {list(built.species)}); train from scratch"
                    " or use the initial model's settings"
                )
    loaded.train()
    return loaded


def no_validation_message(n_structures: int, validation_fraction: float, epochs: bool) -> str:
    """Why a split has no validation set, and what that means for a model fitted by ``epochs``
    (the best epoch is chosen on the training set) or in closed form (only training errors)."""
    reason = "data.validation_fraction is 0" if validation_fraction == 0 else f"{n_structures} structure(s) leave none to hold out"
    meaning = (
        "the best epoch kept is the one with the lowest loss on the training set itself"
        if epochs
        else "the report gives errors on the training set only"
    )
    return (
        f"no validation set ({reason}): {meaning}, which says nothing about errors on new structures;"
        " give at least 2 structures and data.validation_fraction > 0"
    )


def check_writable(path: Path, what: str) -> None:
    """Raise :class:`ConfigError` unless a file can be created at ``path``: it is not a folder, and
    its nearest existing folder accepts a new file (tried with a temporary file, which also
    catches read-only file systems). ``what`` names the path in the message."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file name")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{what} {path} cannot be written: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {path} cannot be written ({folder}: {exc.strerror}); choose a writable folder"
        ) from None


def train_outputs(output: Path) -> list[Path]:
    """Every file :func:`train` writes for the model file ``output``: the model, its report
    (JSON, markdown), parity plot and resolved config."""
    stem = output.with_suffix("")
    return [output, *report_paths(stem), stem.with_name(stem.name + "_config.yaml")]


def check_not_replacing(paths: Sequence[Path], overwrite: bool, refusal: Callable[[list[Path]], str]) -> None:
    """The overwrite rule of the commands that write a set of files (train, validate): unless
    ``overwrite``, any of ``paths`` that exists stops the run before anything is written (a
    second run would silently replace the first one's files).

    Raises
    ------
    ConfigError
        With ``refusal(existing)`` as its message, ``existing`` the paths found, in order.
    """
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        raise ConfigError(refusal(existing))


def check_train_outputs(output: Path, overwrite: bool, where: str = "the train config") -> None:
    """Unless ``overwrite``, refuse to train when an output of ``output`` exists
    (:func:`check_not_replacing`). ``where`` names the config in the message.

    Raises
    ------
    ConfigError
        Naming the existing file, the option that replaces it and the key that avoids it.
    """

    def refusal(existing: list[Path]) -> str:
        others = f" (and {len(existing) - 1} more output(s) of that run)" if len(existing) > 1 else ""
        return (
            f"{existing[0]} already exists{others}; pass --overwrite (overwrite=True in pesmith.workflows.train)"
            f" to replace the model, its reports, plot and config, or set another `output` in {where}"
        )

    check_not_replacing(train_outputs(output), overwrite, refusal)


def check_fit_over_ranks(potential: Potential, ranks: Ranks | None, where: str) -> None:
    """Under ``ranks``, every term's model must be fitted by the Adam loop
    (:func:`pesmith.training.fit_adam`, settings :class:`~pesmith.training.AdamSettings`), the one
    fit that shares its work over ranks.

    Raises
    ------
    ConfigError
        Naming the model that other fits (closed-form GAP or linear) would run on one rank
        while the others idle, and saying to run it on one rank.
    """
    if ranks is None:
        return
    for term in potential.terms:
        model = type(term.model)
        if not issubclass(model.settings_schema, AdamSettings):
            raise ConfigError(
                f"{where}: model {model.__name__} is not fitted by the Adam loop and cannot be trained over {ranks.size} ranks;"
                " run `pesmith train` on one rank (without mpiexec or torchrun)"
            )


def train(
    config: TrainConfig,
    registry: Registry,
    warn: Callable[[str], None] | None = None,
    overwrite: bool = False,
    where: str = "the train config",
) -> TrainResult:
    """Train the potential ``config`` describes; write the model file, its report (JSON,
    markdown, parity plot) and the resolved config beside ``config.output``. ``warn`` receives
    warnings for the user (default: the ``pesmith.workflows`` logger).

    An output that cannot be written (:func:`check_writable`) and, unless ``overwrite`` is true,
    an earlier run's outputs (:func:`check_train_outputs`) stop the run before anything is read
    (:class:`ConfigError`, naming the file); ``where`` names the config in those messages (the
    CLI passes the config file).

    A float32 cache of feature derivatives, when the memory budget calls for one, lives in a
    temporary folder beside the output and is removed at the end.

    Ctrl-C during a fit that keeps its best state so far (see :meth:`pesmith.model.Model.fit`)
    or during the final evaluation still writes the model, and the report says when it came
    (``report["interrupted"]``). A second Ctrl-C skips the final evaluation (the report then has
    no metrics and no plot); one while the files are written waits until they are whole. Before
    the fit has a model to keep, Ctrl-C propagates as :class:`KeyboardInterrupt` and nothing is
    written.

    In a process group (:func:`pesmith.distributed.process_group`, ``mpiexec -n K`` or
    ``torchrun``) every rank reads the data, the ranks share the featurization
    (:func:`pesmith.features.featurize_dataset`) and the Adam fit shares each minibatch; rank 0 alone warns, evaluates and writes the files, and the other
    ranks return the fitted potential with a report of the fit only. More ranks than training
    structures (:class:`~pesmith.errors.DataError`) and a model the Adam loop does not fit
    (:func:`check_fit_over_ranks`) stop the run on every rank before the fit.
    """
    check_writable(config.output, f"{where}: output")
    check_train_outputs(config.output, overwrite, where)
    ranks = current_ranks()
    root = ranks is None or ranks.is_root
    if not root:  # rank 0 alone shows progress
        config = config.model_copy(update={"training": config.training.model_copy(update={"progress": False})})
    if config.training.threads:
        torch.set_num_threads(rank_threads(config.training.threads, ranks))
    dataset = read_dataset(config.data.train, allow_mixed_references=config.data.allow_mixed_references)
    train_set, validation = dataset.split(config.data.validation_fraction, config.data.seed)
    check_shareable(len(train_set), ranks, dataset.source)
    species = config.term_sections[0].descriptor.options.get("species", dataset.species)
    baseline = build_baseline(config.baseline, species, registry, where) if config.baseline is not None else None
    potential = build_potential(config, species, registry, baseline)
    check_fit_over_ranks(potential, ranks, where)
    if not len(validation) and root:
        by_epochs = "epochs" in type(potential.terms[0].model).settings_schema.model_fields
        (warn or logger.warning)(no_validation_message(len(dataset), config.data.validation_fraction, by_epochs))
    if config.initial_model is not None:
        potential = initial_potential(config.initial_model, potential, registry)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with interrupt_once() as signals:  # the first Ctrl-C stops the fit; until the evaluation, more only count
        with tempfile.TemporaryDirectory(prefix=f".{config.output.stem}_features_", dir=config.output.parent) as cache:
            summary = potential.fit(
                train_set,
                validation,
                config.training,
                config.data.isolated_atom_energies,
                Path(cache),
                warm_start=config.initial_model is not None,
                term_settings=term_settings(config) if config.terms is not None else None,
            )
            signals.raising = False  # the fitted model is not to be lost to a Ctrl-C in the cache's removal
    wall_time = time.perf_counter() - started
    fit_interrupted = INTERRUPTED_AT_EPOCH in summary.info
    interrupted = [f"at epoch {summary.info[INTERRUPTED_AT_EPOCH]}"] if fit_interrupted else []
    predictions: dict[str, Predictions] = {}
    if not root:  # the other ranks helped fit the model; rank 0 evaluates and writes it
        return TrainResult(potential, {"training": summary.info, "metrics": {}})
    if signals.count > int(fit_interrupted):  # a Ctrl-C (again) after the fit: save without evaluating
        interrupted.append(("again " if fit_interrupted else "") + "before the final evaluation")
    else:
        try:
            predictions = final_predictions(potential, {"train": train_set, "validation": validation}, config.training.progress)
        except KeyboardInterrupt:  # the fitted model is kept; only its metrics are lost
            interrupted.append("during the final evaluation")
    resolved = config.model_dump(mode="json")
    if config.baseline is None:  # a config without a baseline is resolved as before baselines existed
        resolved.pop("baseline")
    resolved_terms = [
        {"descriptor": {"kind": section.descriptor.kind, **term.descriptor.get_config()}, "model": {"kind": section.model.kind, **term.model.get_config()}}
        | ({"training": section.training} if section.training else {})
        for section, term in zip(config.term_sections, potential.terms)
    ]
    if config.terms is None:
        resolved.pop("terms", None)
        resolved["descriptor"], resolved["model"] = resolved_terms[0]["descriptor"], resolved_terms[0]["model"]
    else:
        resolved.pop("descriptor", None)
        resolved.pop("model", None)
        resolved["terms"] = resolved_terms
    report = {
        "pesmith_version": __version__,
        "torch_version": torch.__version__,
        "model_file": str(config.output),
        "config": resolved,
        "data": {"train": resolved["data"]["train"], "seed": config.data.seed},
        "split": {
            "n_train": len(train_set),
            "n_validation": len(validation),
            "train_indices": train_set.indices.tolist(),
            "validation_indices": validation.indices.tolist(),
        },
        "reference_energies_eV": potential.reference,
        "training": summary.info | {"wall_time_s": wall_time},
        "metrics": {name: p.metrics() for name, p in predictions.items()},
        "history": summary.history or [],
    }
    if potential.baseline is not None:
        report["baseline"] = potential.baseline.describe() | {"metrics": BASELINE_METRICS}
    if interrupted:
        report["interrupted"] = " and ".join(interrupted)
    with deferred_interrupt() as held:  # a Ctrl-C now waits until every file is whole
        save_potential(potential, config.output, metadata={k: v for k, v in report.items() if k != "history"}, registry=registry)
        stem = config.output.with_suffix("")
        write_report(stem, report, predictions)
        write_text_atomic(stem.with_name(stem.name + "_config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    if held.count and not interrupted:
        report["interrupted"] = "while saving, after every file was written"
    return TrainResult(potential, report)


def final_predictions(potential: Potential, sets: dict[str, Dataset], progress: bool) -> dict[str, Predictions]:
    """Predictions of the fitted ``potential`` on each non-empty set, with a progress bar each."""
    return {
        name: predict_dataset(potential, dataset, progress=progress, description=f"evaluating {name} set")
        for name, dataset in sets.items()
        if len(dataset)
    }


def label(
    structures: Sequence[Atoms],
    reference: Reference,
    map_fn: MapFunction | None = None,
    workers: int = 1,
    time_limit: float | None = None,
    progress: bool = False,
) -> list[Label]:
    """Label ``structures`` with ``reference`` in memory: no database, no file is written.

    Each structure goes through :func:`pesmith.labeling.label_one`, so a calculation that fails
    (an exception, no SCF convergence, the time limit) comes back as a :class:`Label` with a
    ``reason`` instead of raising.

    Parameters
    ----------
    structures
        The structures; they are not modified.
    reference
        A reference plugin instance (picklable when ``workers > 1`` or under MPI).
    map_fn
        ``map_fn(fn, items, workers=, progress=, description=)`` yielding ``(index, fn(item))``
        in any order; default :func:`pesmith.parallel.parallel_map` (local processes or MPI ranks).
    workers
        Local worker processes (``1``: in this process).
    time_limit
        Seconds per structure; beyond it the structure fails. ``None``: no limit.
    progress
        Show a progress bar on stderr.

    Returns
    -------
    list[Label]
        One label per structure, in the order of ``structures``: energy (eV), forces (eV/Å),
        stress (eV/Å^3, or ``None`` without a 3D cell), or the ``reason`` it failed.
    """
    structures = list(structures)
    results = (map_fn or parallel_map)(
        partial(label_one, reference, time_limit),
        structures,
        workers=workers,
        progress=progress,
        description=f"labeling with {type(reference).__name__}",
    )
    labels: dict[int, Label] = dict(results)
    return [labels[index] for index in range(len(structures))]
