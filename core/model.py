"""The contract of a model plugin: per-atom features -> per-atom energies."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

import torch

from .errors import ConfigError
from .fit_settings import FitSettings

if TYPE_CHECKING:
    from .features import FeatureSet

INTERRUPTED_AT_EPOCH = "interrupted_at_epoch"  # FitSummary.info key of a fit ended by Ctrl-C
# FitSummary.info key of an iterative fit: the rule that ended it, "epochs" (all run), "patience"
# (early stopping), "min_learning_rate" or "interrupted" (Ctrl-C)
STOPPED_BY = "stopped_by"
StopRule = Literal["epochs", "patience", "min_learning_rate", "interrupted"]
STOP_REASON = "stop_reason"  # FitSummary.info key of an iterative fit: why it ended, one sentence for the user


@dataclass
class FitSummary:
    """What a fit reports: numbers for the report (JSON types, e.g. ``epochs_run``,
    ``best_epoch`` of an iterative fit, or the regularisation of a closed-form one) and, for
    an iterative fit, one entry per epoch with train and validation metrics. A fit that
    Ctrl-C ended early with a usable state records the epoch that was running under
    :data:`INTERRUPTED_AT_EPOCH`. An iterative fit says why it stopped: the rule under
    :data:`STOPPED_BY` and a sentence under :data:`STOP_REASON`."""

    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] | None = None


class Model(torch.nn.Module, ABC):
    """Maps per-atom features ``(n_atoms, n_features)`` to per-atom energies ``(n_atoms,)``, eV.

    The energies are residuals: pesmith adds per-element reference energies. ``forward`` must
    be differentiable in the features (forces follow by the chain rule). Learned state lives in
    parameters and buffers, so ``state_dict()`` holds all of it; :meth:`get_config` holds the
    hyper-parameters, and ``cls(species=..., n_features=..., **get_config())`` followed by
    :meth:`load_fitted_state` rebuilds a fitted model, also when the fit changed the shapes of
    its buffers (e.g. sparse points chosen from the data).

    ``settings_schema`` is the pydantic model of the fit settings (a config's ``training:``
    section); it extends :class:`~pesmith.fit_settings.FitSettings`.
    """

    settings_schema: ClassVar[type[FitSettings]] = FitSettings

    def __init__(self, species: Sequence[str], n_features: int):
        super().__init__()
        self.species = tuple(species)
        self.n_features = int(n_features)

    @abstractmethod
    def forward(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(n_atoms,) energies, eV, of atoms with ``features`` (n_atoms, F) and ``numbers``."""

    @abstractmethod
    def fit(self, train: "FeatureSet", validation: "FeatureSet | None", settings: FitSettings) -> FitSummary:
        """Fit to ``train`` (energies and, per the settings, forces and stress).

        A model that can continue from its current state (one loaded from a model file: its
        parameters and feature scaling) accepts a keyword ``warm_start: bool``; pesmith passes
        it only when a warm start is asked for, so models without it keep this signature.

        On Ctrl-C (:class:`KeyboardInterrupt`) a fit that has a usable state by then (e.g. the
        best epoch so far) may catch it, keep that state and return a summary with
        ``info[INTERRUPTED_AT_EPOCH]``: pesmith then saves it as the model. Any other fit lets
        the interrupt propagate, and nothing is saved.
        """

    @classmethod
    def can_warm_start(cls) -> bool:
        """Whether :meth:`fit` can continue from a loaded state (it takes ``warm_start``)."""
        return "warm_start" in inspect.signature(cls.fit).parameters

    @classmethod
    def fit_terms(
        cls,
        models: Sequence["Model"],
        train_sets: Sequence["FeatureSet"],
        validations: Sequence["FeatureSet | None"],
        settings: FitSettings,
        term_settings: Sequence[FitSettings],
    ) -> FitSummary:
        """Fit ``models`` (all of this class, one per term of a potential) jointly so that the
        sum of their energies fits the labels; ``train_sets`` / ``validations`` hold each
        term's features of the same structures, ``term_settings`` each term's settings.

        The default refuses (a :class:`~pesmith.errors.ConfigError`): only models that
        override it (GAP) can be terms of a potential of several terms.
        """
        raise ConfigError(
            f"model {cls.__name__} cannot be one of several terms of a potential yet (only gap models are fitted"
            " jointly); use a single descriptor and model, or gap models in every term"
        )

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters (plain YAML/JSON types), without ``species`` and ``n_features``."""

    def energy_std(
        self, features: torch.Tensor, numbers: torch.Tensor, structure_index: torch.Tensor, n_structures: int
    ) -> torch.Tensor | None:
        """(n_structures,) standard deviation of each structure's predicted energy, eV, or
        ``None`` when the model has no uncertainty estimate (the default)."""
        return None

    def forces_std(
        self, features: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor, jacobian: torch.Tensor
    ) -> torch.Tensor | None:
        """(n_atoms, 3) standard deviation of each predicted force component, eV/Å, or ``None``
        when the model has no force uncertainty (the default).

        ``jacobian`` ``(n_edges, F, 3)`` holds the feature derivatives ``dG_center/dr_edge``
        (feature units / Å) of the ``edge_index`` ``(2, n_edges)`` edges, as
        :meth:`pesmith.descriptor.Descriptor.features_and_jacobian` returns them.
        """
        return None

    @property
    def has_forces_std(self) -> bool:
        """Whether :meth:`forces_std` is implemented (the caller then computes feature
        derivatives for it)."""
        return type(self).forces_std is not Model.forces_std

    def load_fitted_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a saved ``state_dict``, first giving every buffer and parameter the saved shape."""
        for name, value in state.items():
            owner_name, _, attribute = name.rpartition(".")
            owner = self.get_submodule(owner_name) if owner_name else self
            current = getattr(owner, attribute, None)
            if isinstance(current, torch.Tensor) and current.shape != value.shape:
                resized = torch.empty(value.shape, dtype=value.dtype)
                if isinstance(current, torch.nn.Parameter):
                    setattr(owner, attribute, torch.nn.Parameter(resized, requires_grad=current.requires_grad))
                else:
                    owner.register_buffer(attribute, resized, persistent=attribute not in owner._non_persistent_buffers_set)
        self.load_state_dict(state)


def standardization(features: torch.Tensor, numbers: torch.Tensor, species: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element feature means and scales ``(n_species, F)`` (population standard deviation;
    1 for constant features and for elements absent from ``features``)."""
    from ase.data import atomic_numbers

    mean = torch.zeros(len(species), features.shape[1], dtype=features.dtype)
    scale = torch.ones_like(mean)
    for index, symbol in enumerate(species):
        rows = features[numbers == atomic_numbers[symbol]]
        if rows.shape[0] == 0:
            continue
        mean[index] = rows.mean(0)
        std = rows.std(0, unbiased=False)
        scale[index] = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean, scale

