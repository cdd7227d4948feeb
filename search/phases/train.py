"""Phase *train*: fit the MLP on every label so far (the initial files and ``reference.db``)
into ``models/model_<step>.pt``, warm-started from the previous model when the config says so;
its errors on the ``holdout`` files are the learning curve, and its force errors on the
``holdout_truth`` files (labeled by a more accurate method) stand beside the reference's own."""

from __future__ import annotations

import time

import numpy as np

from pesmith.config import DataSettings, TrainConfig, validate_section
from pesmith.threads import torch_threads

from .. import checkpoint
from ..context import SearchContext
from ..state import ModelRecord


def run(ctx: SearchContext) -> None:
    from pesmith.workflows import train

    state, settings = ctx.state, ctx.config
    step = state.step
    started = time.perf_counter()
    models = ctx.output / "models"
    models.mkdir(exist_ok=True)
    potential = settings.potential
    files = [*settings.initial.labeled, ctx.output / "reference.db"]
    config = TrainConfig(
        data=DataSettings(
            train=[f for f in files if f.exists()],
            validation_fraction=potential.validation_fraction,
            seed=settings.seed,
            isolated_atom_energies=potential.isolated_atom_energies,
        ),
        descriptor=potential.descriptor,
        model=potential.model,
        terms=potential.terms,
        output=models / f"model_{step}.pt",
        initial_model=ctx.model_path if step > 0 and potential.warm_start else None,
    )
    model_cls = ctx.registry.get("model", potential.term_sections[0].model.kind)
    config.training = validate_section(ctx.config_path, "potential.training", dict(potential.training) | {"progress": False}, model_cls.settings_schema)
    config.training.threads = config.training.threads or ctx.training_threads
    with torch_threads(config.training.threads):
        result = train(config, ctx.registry, warn=ctx.echo, overwrite=True)  # a resumed step rewrites its model
    metrics = result.report["metrics"].get("validation", result.report["metrics"]["train"])
    state.model = str(config.output.relative_to(ctx.output))
    state.model_hash = checkpoint.file_hash(config.output)
    holdout = _holdout_metrics(ctx, result.potential)
    truth = _truth_metrics(ctx, result.potential)
    state.models.append(ModelRecord(step, state.model, state.model_hash, metrics, holdout, truth))
    if holdout:
        ctx.echo(f"model {state.model} on the holdout: {holdout['energy_rmse_meV_per_atom']:.1f} meV/atom, {holdout['force_rmse_eV_per_A']:.3f} eV/Å")
    if truth:
        if state.reference_truth is None:
            state.reference_truth = _reference_truth_metrics(ctx)
        ctx.echo(
            f"forces on holdout_truth ({truth['n_structures']} structures): model {state.model} {truth['force_rmse_eV_per_A']:.3f} eV/Å,"
            f" the reference itself {state.reference_truth['force_rmse_eV_per_A']:.3f} eV/Å (RMSE)"
        )
    wall = time.perf_counter() - started
    if step > 0:
        state.steps[step - 1].wall_time_train_s = wall
    ctx.echo(
        f"model {state.model}: {result.report['split']['n_train']} structures,"
        f" validation {metrics['energy_rmse_meV_per_atom']:.1f} meV/atom, {metrics['force_rmse_eV_per_A']:.3f} eV/Å ({wall:.0f} s)"
    )


def _holdout_metrics(ctx: SearchContext, potential) -> dict[str, float] | None:
    """Errors of a freshly trained potential on ``holdout`` files (the learning curve)."""
    if not ctx.config.holdout:
        return None
    from pesmith.data import read_dataset
    from pesmith.validation import predict_dataset

    dataset = read_dataset(ctx.config.holdout, allow_mixed_references=True)
    return predict_dataset(potential, dataset).metrics()


def _truth_metrics(ctx: SearchContext, potential) -> dict[str, float] | None:
    """Force RMSE and MAE (eV/Å) of a trained potential against the ``holdout_truth`` labels.

    Energies are left out: the model learned the reference's energy zero, not the truth's."""
    if not ctx.config.holdout_truth:
        return None
    from pesmith.data import read_dataset
    from pesmith.validation import predict_dataset

    dataset = read_dataset(ctx.config.holdout_truth, allow_mixed_references=True)
    metrics = predict_dataset(potential, dataset).metrics()
    return {k: metrics[k] for k in ("n_structures", "force_rmse_eV_per_A", "force_mae_eV_per_A")}


def _reference_truth_metrics(ctx: SearchContext) -> dict[str, float]:
    """Force RMSE and MAE (eV/Å) of the reference itself against the ``holdout_truth`` labels."""
    from pesmith.data import read_dataset

    dataset = read_dataset(ctx.config.holdout_truth, allow_mixed_references=True)
    error = np.concatenate([ctx.reference.label(atoms.copy())[1] - forces for atoms, forces in zip(dataset.structures, dataset.forces)])
    return {
        "n_structures": len(dataset),
        "force_rmse_eV_per_A": float(np.sqrt(np.mean(error**2))),
        "force_mae_eV_per_A": float(np.mean(np.abs(error))),
    }
