"""The Adam fit loop that trainable models may use: minibatches, schedule, early stopping.

Split as ``fit_adam`` -> ``train_one_epoch`` -> ``take_step``, with :func:`pesmith.loss.evaluate`
on whole sets. Loss = MSE of energy per atom (eV/atom)^2 + ``force_weight`` x MSE of force
components (eV/Å)^2 + ``stress_weight`` x MSE of stress components (eV/Å^3)^2 (structures with
stress labels). With ``force_weight_start`` the force weight of each epoch follows the learning
rate (:func:`epoch_force_weight`); the best epoch is chosen on the loss with ``force_weight``.
A minibatch whose derivatives exceed the memory budget is processed in parts whose gradients
add up to the minibatch's.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Literal

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from .distributed import Ranks, all_reduce_gradients, all_reduce_sums, current_ranks, rank_threads, shard
from .features import FeatureSet
from .fit_settings import FitSettings
from .interrupt import interrupt_once
from .loss import add_sums, error_sums, evaluate, metrics_from_sums
from .model import INTERRUPTED_AT_EPOCH, STOP_REASON, STOPPED_BY, FitSummary, StopRule
from .threads import FIT_LOOP_THREADS, torch_threads

logger = logging.getLogger(__name__)


class AdamSettings(FitSettings):
    """Settings of the Adam loop (the ``training:`` section of a config for the ``nn`` model)."""

    epochs: int = Field(500, ge=1, description="maximum number of passes over the training set")
    batch_size: int = Field(16, ge=1, description="structures per minibatch")
    learning_rate: float = Field(1e-3, gt=0, description="initial Adam learning rate")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="learning rate x this on a plateau")
    lr_patience: int = Field(25, ge=1, description="epochs without improvement before the rate drops")
    min_learning_rate: float = Field(1e-5, gt=0, description="stop when the rate falls below this")
    patience: int = Field(100, ge=1, description="early stopping: epochs without validation improvement")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on the weights (AdamW)")
    lr_schedule: Literal["plateau", "cosine", "exponential"] = Field(
        "plateau",
        description="plateau: x lr_factor after lr_patience epochs without improvement, stop below min_learning_rate;"
        " cosine or exponential: from learning_rate down to min_learning_rate at the last epoch (cosine annealing,"
        " or a constant factor per epoch), after the warm-up",
    )
    warmup_epochs: int = Field(
        0, ge=0, description="epochs of linear warm-up from learning_rate / warmup_epochs to learning_rate (cosine, exponential)"
    )
    force_weight_start: float | None = Field(
        None,
        gt=0,
        description="force weight of the first epochs, moving to force_weight as the learning rate falls:"
        " force_weight + (force_weight_start - force_weight) x rate / learning_rate (DeePMD's prefactor rule);"
        " the best epoch is still chosen on the loss with force_weight. Default: force_weight throughout",
    )

    @model_validator(mode="after")
    def _schedule_needs_force_labels(self) -> "AdamSettings":
        if self.force_weight_start is not None and self.force_weight == 0:
            raise ValueError("training.force_weight_start needs training.force_weight > 0 (the weight it moves to)")
        return self


def epoch_force_weight(settings: AdamSettings, epoch: int, rate: float) -> float:
    """The force weight of ``epoch`` (1-based) run at Adam rate ``rate``: ``settings.force_weight``
    without a schedule, else the interpolation of :attr:`AdamSettings.force_weight_start`
    (``force_weight_start`` itself during a warm-up)."""
    if settings.force_weight_start is None:
        return settings.force_weight
    progress = 1.0 if epoch <= settings.warmup_epochs else min(1.0, rate / settings.learning_rate)
    return settings.force_weight + (settings.force_weight_start - settings.force_weight) * progress


LOSS_KEYS = ("energy", "force", "stress")


def take_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    parts: list[FeatureSet],
    settings: FitSettings,
    counts: dict[str, int] | None = None,
    ranks: Ranks | None = None,
) -> dict[str, float]:
    """One optimizer step on a minibatch given as ``parts``; returns its error sums (see
    :func:`pesmith.loss.error_sums`) before the step. Each part's graph is freed by its
    backward pass before the next part's derivatives are read.

    ``counts`` (:meth:`FeatureSet.label_counts`, default: those of ``parts``) are what the
    minibatch's errors average over. Under ``ranks``, ``parts`` are this rank's shard of the
    minibatch, ``counts`` the whole minibatch's, and the gradients and the returned sums are
    summed over the ranks before the step."""
    optimizer.zero_grad()
    if counts is None:
        part_counts = [part.label_counts(torch.arange(part.n_structures)) for part in parts]
        counts = {key: sum(c[key] for c in part_counts) for key in ("n_energy", "n_force", "n_stress")}
    weights = {"energy": 1.0, "force": settings.force_weight, "stress": settings.stress_weight}
    totals: dict[str, float] = {}
    for part in parts:
        part_sums = error_sums(model, part, settings, create_graph=settings.needs_jacobian)
        loss = sum(weights[k] * part_sums[k] / counts[f"n_{k}"] for k in LOSS_KEYS if k in part_sums)
        loss.backward()
        add_sums(totals, part_sums)
    if ranks is not None:
        all_reduce_gradients(model.parameters())
    optimizer.step()
    return all_reduce_sums(totals, ranks)


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: FeatureSet,
    settings: AdamSettings,
    generator: torch.Generator,
    ranks: Ranks | None = None,
) -> dict[str, float]:
    """One pass over shuffled minibatches. Returns the epoch's running metrics (as ``evaluate``):
    errors of each minibatch before its step, summed over the epoch, so the weights change
    within the average, as in the running loss other trainers print. Under ``ranks`` each rank
    takes its :func:`~pesmith.distributed.shard` of every minibatch (see :func:`take_step`)."""
    totals: dict[str, float] = {}
    for rows in data.minibatches(settings.batch_size, generator):
        parts = data.parts(shard(rows, ranks))
        add_sums(totals, take_step(model, optimizer, parts, settings, data.label_counts(rows), ranks))
    return metrics_from_sums(totals, settings)


def fit_adam(
    model: torch.nn.Module, train_set: FeatureSet, validation: FeatureSet | None, settings: AdamSettings
) -> FitSummary:
    """Fit ``model``'s parameters (see :func:`fit_loop`) on ``settings.threads`` torch threads,
    by default :data:`pesmith.threads.FIT_LOOP_THREADS`, at most a rank's share of the cores when
    a process group is set up (:func:`pesmith.distributed.current_ranks`)."""
    ranks = current_ranks()
    with torch_threads(rank_threads(settings.threads or FIT_LOOP_THREADS, ranks)):
        return fit_loop(model, train_set, validation, settings, ranks)


def fit_loop(
    model: torch.nn.Module,
    train_set: FeatureSet,
    validation: FeatureSet | None,
    settings: AdamSettings,
    ranks: Ranks | None = None,
) -> FitSummary:
    """Fit ``model``'s parameters; keep the weights with the best validation loss.

    Under ``ranks`` every rank runs this loop on the whole feature sets and takes its shard of
    each minibatch and of each evaluation (:mod:`pesmith.distributed`); the reduced sums make
    every rank take the same steps and stop at the same epoch; rank 0 alone shows progress.

    Returns a summary: epochs run, best epoch, why the loop stopped (``info["stopped_by"]``:
    ``"epochs"``, ``"patience"``, ``"min_learning_rate"`` or ``"interrupted"``, and the sentence
    ``info["stop_reason"]``, see :func:`stop_reason`), and the per-epoch history of train/validation
    RMSE, learning rate, force weight and wall-clock seconds (the epoch's steps and its
    evaluation). The train entries are the epoch's running metrics (:func:`train_one_epoch`) when there
    is a validation set, else the whole training set evaluated after the epoch.

    Ctrl-C (:class:`KeyboardInterrupt`) ends the loop like early stopping, with the best
    weights so far and ``info["interrupted_at_epoch"]`` = the epoch that was running; before the
    first epoch has finished there is nothing to keep and the interrupt propagates.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = learning_rate_schedule(optimizer, settings)
    monitor = validation if validation is not None and validation.n_structures > 0 else train_set
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    history = []
    bar = tqdm(total=settings.epochs, desc="training", unit="epoch", disable=not settings.progress or (ranks is not None and not ranks.is_root))
    epoch = 0
    stopped_by: StopRule = "epochs"
    with interrupt_once():  # a second Ctrl-C must not cut short keeping the best epoch
        try:
            for epoch in range(1, settings.epochs + 1):
                epoch_started = time.perf_counter()
                rate = optimizer.param_groups[0]["lr"]
                force_weight = epoch_force_weight(settings, epoch, rate)
                epoch_settings = settings if force_weight == settings.force_weight else settings.model_copy(update={"force_weight": force_weight})
                running = train_one_epoch(model, optimizer, train_set, epoch_settings, generator, ranks)
                monitor_metrics = evaluate(model, monitor, settings, ranks)
                train_metrics = monitor_metrics if monitor is train_set else running
                history.append({"epoch": epoch, "train": train_metrics, "validation": monitor_metrics,
                                "learning_rate": rate, "force_weight": force_weight, "seconds": time.perf_counter() - epoch_started})
                if monitor_metrics["loss"] < best_loss:
                    best_loss, best_epoch, best_state = monitor_metrics["loss"], epoch, copy.deepcopy(model.state_dict())
                if settings.lr_schedule == "plateau":
                    scheduler.step(monitor_metrics["loss"])
                else:
                    scheduler.step()
                bar.set_postfix(
                    E_train=f"{train_metrics['energy_rmse_meV_per_atom']:.2f}",
                    E_val=f"{monitor_metrics['energy_rmse_meV_per_atom']:.2f}",
                    F_train=f"{train_metrics.get('force_rmse_eV_per_A', math.nan):.3f}",
                    F_val=f"{monitor_metrics.get('force_rmse_eV_per_A', math.nan):.3f}",
                    lr=f"{optimizer.param_groups[0]['lr']:.1e}",
                    refresh=False,
                )
                bar.update()
                if epoch - best_epoch >= settings.patience:
                    stopped_by = "patience"
                    break
                if settings.lr_schedule == "plateau" and optimizer.param_groups[0]["lr"] < settings.min_learning_rate:
                    stopped_by = "min_learning_rate"
                    break
        except KeyboardInterrupt:  # Ctrl-C: stop as early stopping does, unless no epoch has finished
            if not history:
                raise
            stopped_by = "interrupted"
        finally:
            bar.close()
        model.load_state_dict(best_state)
    monitored = "validation" if monitor is validation else "training-set"
    reason = stop_reason(stopped_by, settings, epoch, best_epoch, optimizer.param_groups[0]["lr"], monitored)
    logger.info("training stopped: %s", reason)
    info = {
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_validation_loss": best_loss,
        STOPPED_BY: stopped_by,
        STOP_REASON: reason,
    }
    if stopped_by == "interrupted":
        info[INTERRUPTED_AT_EPOCH] = epoch
    return FitSummary(info=info, history=history)


def learning_rate_schedule(optimizer: torch.optim.Optimizer, settings: AdamSettings):
    """The scheduler of ``settings.lr_schedule``, stepped once per epoch (``plateau`` with the
    monitored loss). ``cosine`` and ``exponential``: the rate of epoch e (1-based) is
    ``learning_rate * e / warmup_epochs`` during the warm-up, then ``learning_rate * f(t)``,
    ``t = (e - 1 - warmup_epochs) / (epochs - 1 - warmup_epochs)`` from 0 to 1, with
    ``f = r + (1 - r) (1 + cos(pi t)) / 2`` or ``f = r^t`` and ``r = min_learning_rate / learning_rate``."""
    if settings.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=settings.lr_factor, patience=settings.lr_patience)
    ratio = min(1.0, settings.min_learning_rate / settings.learning_rate)
    warmup, span = settings.warmup_epochs, max(1, settings.epochs - 1 - settings.warmup_epochs)

    def factor(step: int) -> float:  # step = epochs finished, so epoch step + 1 runs at this factor
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / span)
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * t)) if settings.lr_schedule == "cosine" else ratio**t

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def stop_reason(
    stopped_by: StopRule, settings: AdamSettings, epoch: int, best_epoch: int, learning_rate: float, monitored: str
) -> str:
    """One sentence saying why :func:`fit_loop` stopped after ``epoch`` under the rule
    ``stopped_by`` (see :data:`pesmith.model.StopRule`), with the best epoch kept.
    ``learning_rate`` is the Adam rate at the stop (dimensionless: the step size in the model's
    parameters); ``monitored`` names the loss the best epoch is chosen on ("validation" or "training-set")."""
    best = f"best epoch {best_epoch}"
    if stopped_by == "patience":
        return (
            f"early stopping: no {monitored} improvement for {epoch - best_epoch} epochs"
            f" (training.patience = {settings.patience}), {best}"
        )
    if stopped_by == "min_learning_rate":
        return (
            f"the learning rate fell to {learning_rate:.3g}, below training.min_learning_rate = {settings.min_learning_rate:.3g},"
            f" at epoch {epoch}, {best}"
        )
    if stopped_by == "interrupted":
        return f"interrupted (Ctrl-C) at epoch {epoch}, {best}"
    return f"all {settings.epochs} epochs run (training.epochs), {best}"
