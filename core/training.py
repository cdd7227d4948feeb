"""The fit loop shared by trainable models: minibatches, Adam, schedule, early stopping.

Split as ``train`` -> ``train_one_epoch`` -> ``take_step``, with ``evaluate`` on whole sets.
Loss = MSE of energy per atom (eV/atom)^2 + ``force_weight`` x MSE of force components (eV/Å)^2.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from .features import FeatureSet, predict_energies_forces

logger = logging.getLogger(__name__)


class TrainingSettings(BaseModel):
    """Settings of the fit loop (the ``training:`` section of a config)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(500, ge=1, description="maximum number of passes over the training set")
    force_weight: float = Field(0.1, ge=0, description="weight of the force MSE (eV/Å)^2 in the loss")
    batch_size: int = Field(16, ge=1, description="structures per minibatch")
    learning_rate: float = Field(1e-3, gt=0, description="initial Adam learning rate")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="learning rate x this on a plateau")
    lr_patience: int = Field(25, ge=1, description="epochs without improvement before the rate drops")
    min_learning_rate: float = Field(1e-5, gt=0, description="stop when the rate falls below this")
    patience: int = Field(100, ge=1, description="early stopping: epochs without validation improvement")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on the weights (AdamW)")
    seed: int = Field(0, description="seed of weight initialisation and minibatch order")
    threads: int | None = Field(None, ge=1, description="torch threads (default: torch's choice)")
    progress: bool = Field(True, description="show a progress bar")


def loss_terms(model: torch.nn.Module, data: FeatureSet, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(energy-per-atom MSE, force MSE) of ``model`` on ``data``."""
    energies, forces = predict_energies_forces(model, data, create_graph=create_graph)
    energy_mse = (((energies - data.energies) / data.atoms_per_structure) ** 2).mean()
    force_mse = ((forces - data.forces) ** 2).mean()
    return energy_mse, force_mse


def evaluate(model: torch.nn.Module, data: FeatureSet, force_weight: float) -> dict[str, float]:
    """Loss and RMSEs (energy meV/atom, force eV/Å) of ``model`` on a whole set."""
    energy_mse, force_mse = loss_terms(model, data, create_graph=False)
    return {
        "loss": (energy_mse + force_weight * force_mse).item(),
        "energy_rmse_meV_per_atom": 1000 * math.sqrt(energy_mse.item()),
        "force_rmse_eV_per_A": math.sqrt(force_mse.item()),
    }


def take_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: FeatureSet, force_weight: float
) -> tuple[float, float]:
    """One optimizer step on ``batch``; returns its (energy-per-atom MSE, force MSE) before the step."""
    optimizer.zero_grad()
    energy_mse, force_mse = loss_terms(model, batch, create_graph=force_weight > 0)
    loss = energy_mse + force_weight * force_mse
    loss.backward()
    optimizer.step()
    return energy_mse.item(), force_mse.item()


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: FeatureSet,
    settings: TrainingSettings,
    generator: torch.Generator,
) -> dict[str, float]:
    """One pass over shuffled minibatches. Returns the epoch's running metrics (as ``evaluate``):
    MSEs of each minibatch before its step, averaged over structures (energy) and atoms (forces),
    so the weights change within the average, as in the running loss other trainers print."""
    energy_sum = force_sum = 0.0
    for batch in data.minibatches(settings.batch_size, generator):
        energy_mse, force_mse = take_step(model, optimizer, batch, settings.force_weight)
        energy_sum += energy_mse * batch.n_structures
        force_sum += force_mse * batch.features.shape[0]
    energy_mse, force_mse = energy_sum / data.n_structures, force_sum / data.features.shape[0]
    return {
        "loss": energy_mse + settings.force_weight * force_mse,
        "energy_rmse_meV_per_atom": 1000 * math.sqrt(energy_mse),
        "force_rmse_eV_per_A": math.sqrt(force_mse),
    }


def train(
    model: torch.nn.Module, train_set: FeatureSet, validation: FeatureSet | None, settings: TrainingSettings
) -> dict[str, Any]:
    """Fit ``model``'s parameters; keep the weights with the best validation loss.

    Returns a summary: epochs run, best epoch, and the per-epoch history of train/validation
    RMSE. The train entries are the epoch's running metrics (:func:`train_one_epoch`) when there
    is a validation set, else the whole training set evaluated after the epoch.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=settings.lr_factor, patience=settings.lr_patience
    )
    monitor = validation if validation is not None and validation.n_structures > 0 else train_set
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    history = []
    bar = tqdm(range(1, settings.epochs + 1), desc="training", unit="epoch", disable=not settings.progress)
    for epoch in bar:
        running = train_one_epoch(model, optimizer, train_set, settings, generator)
        monitor_metrics = evaluate(model, monitor, settings.force_weight)
        train_metrics = monitor_metrics if monitor is train_set else running
        history.append({"epoch": epoch, "train": train_metrics, "validation": monitor_metrics})
        if monitor_metrics["loss"] < best_loss:
            best_loss, best_epoch, best_state = monitor_metrics["loss"], epoch, copy.deepcopy(model.state_dict())
        scheduler.step(monitor_metrics["loss"])
        bar.set_postfix(
            E_train=f"{train_metrics['energy_rmse_meV_per_atom']:.2f}",
            E_val=f"{monitor_metrics['energy_rmse_meV_per_atom']:.2f}",
            F_train=f"{train_metrics['force_rmse_eV_per_A']:.3f}",
            F_val=f"{monitor_metrics['force_rmse_eV_per_A']:.3f}",
            lr=f"{optimizer.param_groups[0]['lr']:.1e}",
        )
        if epoch - best_epoch >= settings.patience:
            logger.info("early stopping at epoch %d (best %d)", epoch, best_epoch)
            break
        if optimizer.param_groups[0]["lr"] < settings.min_learning_rate:
            logger.info("learning rate below %g at epoch %d", settings.min_learning_rate, epoch)
            break
    bar.close()
    model.load_state_dict(best_state)
    return {"epochs_run": len(history), "best_epoch": best_epoch, "best_validation_loss": best_loss, "history": history}
