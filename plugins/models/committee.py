"""A committee of Behler-Parrinello networks: the mean as the prediction, the spread as its uncertainty.

Each of ``members`` networks is fitted with its own seed (initial weights, minibatch order) on
its own random ``subsample`` of the training structures, so the members agree where the data
fix the answer and scatter where they do not. The committee predicts the mean atomic energy;
``energy_std`` (eV) is the standard deviation over the members of a structure's energy and
``forces_std`` (eV/Å) that of each force component (sample standard deviation, ``K - 1`` in the
denominator). The same idea as the committee NNPs of Schran, Brezina and Marsalek (J. Chem.
Phys. 153, 104105 (2020), doi:10.1063/5.0016004) and as QbC active learning; the spread
measures disagreement, not the error itself, so calibrate it against held-out errors
(``pesmith validate``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from pydantic import Field

from pesmith.errors import ConfigError
from pesmith.features import FeatureSet
from pesmith.model import INTERRUPTED_AT_EPOCH, STOP_REASON, STOPPED_BY, FitSummary, Model
from pesmith.structures import DTYPE
from pesmith.training import AdamSettings

from .nn import BehlerParrinello


class CommitteeSettings(AdamSettings):
    """Fit settings of the ``committee`` model: those of ``nn`` for every member, plus the share of
    the training structures each member sees."""

    subsample: float = Field(0.9, gt=0, le=1, description="share of the training structures each member fits (drawn per member)")


class Committee(Model):
    """Committee of Behler-Parrinello networks: E = mean over members, with energy and force spread.

    Parameters
    ----------
    species, n_features
        As for every model.
    members
        Number of networks (at least 2).
    hidden, activation
        Each member's architecture (see the ``nn`` model). ``hidden`` is one list of layer sizes
        for every member, or a list of such lists that the members take in turn (member k the
        ``k % len(hidden)``-th), so that members also differ in architecture.
    """

    settings_schema: ClassVar[type[CommitteeSettings]] = CommitteeSettings

    def __init__(
        self,
        species: Sequence[str],
        n_features: int,
        members: int = 4,
        hidden: Sequence[int] | Sequence[Sequence[int]] = (15, 15),
        activation: str = "tanh",
    ):
        super().__init__(species, n_features)
        if int(members) < 2:
            raise ConfigError(f"model.members must be at least 2 (a committee of one has no spread), got {members!r}")
        self.architectures = _architectures(hidden)
        self.networks = torch.nn.ModuleList(
            BehlerParrinello(species, n_features, self.architectures[k % len(self.architectures)], activation) for k in range(int(members))
        )
        self.activation = activation

    def get_config(self) -> dict[str, Any]:
        hidden = [list(a) for a in self.architectures]
        return {"members": len(self.networks), "hidden": hidden[0] if len(hidden) == 1 else hidden, "activation": self.activation}

    def member_energies(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(members, n_atoms) atomic energies of each member, eV."""
        return torch.stack([network(features, numbers) for network in self.networks])

    def forward(self, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        return self.member_energies(features, numbers).mean(0)

    def energy_std(self, features: torch.Tensor, numbers: torch.Tensor, structure_index: torch.Tensor, n_structures: int) -> torch.Tensor:
        atoms = self.member_energies(features, numbers)  # (K, n_atoms)
        energies = torch.zeros(len(self.networks), n_structures, dtype=atoms.dtype).index_add(1, structure_index, atoms)
        return energies.std(0)

    def forces_std(self, features: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor, jacobian: torch.Tensor) -> torch.Tensor:
        """Spread of the members' forces. Per member, g_e = dE/dG_center . dG_center/dr_e for each
        edge e; the force on atom k is the sum of g_e over the edges it centres minus the sum over
        the edges it ends (r_e = r_neighbor - r_center)."""
        centers, neighbors = edge_index
        forces = []
        for network in self.networks:
            x = features.detach().requires_grad_(True)
            with torch.enable_grad():
                (gradient,) = torch.autograd.grad(network(x, numbers).sum(), x)  # (n_atoms, F) eV per feature unit
            per_edge = torch.einsum("ef,efc->ec", gradient[centers], jacobian)  # (n_edges, 3) eV/Å
            force = torch.zeros(features.shape[0], 3, dtype=DTYPE).index_add(0, centers, per_edge).index_add(0, neighbors, -per_edge)
            forces.append(force)
        return torch.stack(forces).std(0)

    def fit(self, train: FeatureSet, validation: FeatureSet | None, settings: CommitteeSettings, warm_start: bool = False) -> FitSummary:
        """Fit each member with seed ``settings.seed + k`` on its own ``settings.subsample`` of the
        training structures (drawn with that seed); every member sees the same validation set."""
        summaries = []
        for k, network in enumerate(self.networks):
            seed = settings.seed + k
            generator = torch.Generator().manual_seed(seed)
            n = max(1, round(settings.subsample * train.n_structures))
            rows = torch.randperm(train.n_structures, generator=generator)[:n].sort().values
            member_settings = AdamSettings(**settings.model_dump(exclude={"subsample"}) | {"seed": seed})
            summary = network.fit(train.select(rows), validation, member_settings, warm_start=warm_start)
            summaries.append(summary)
            if INTERRUPTED_AT_EPOCH in summary.info and k < len(self.networks) - 1:
                raise KeyboardInterrupt  # Ctrl-C before the last member: later members are unfitted, nothing to save
        return _combined(summaries, len(self.networks))


def _architectures(hidden: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """``hidden`` as a list of architectures: one list of layer sizes, or a list of such lists."""
    if isinstance(hidden, (str, bytes)) or not hidden:
        raise ConfigError(f"model.hidden must be a list of layer sizes or a list of such lists, got {hidden!r}")
    nested = [isinstance(h, (list, tuple)) for h in hidden]
    if all(nested):
        return [tuple(h) for h in hidden]
    if any(nested):
        raise ConfigError(f"model.hidden mixes layer sizes and lists of them: {hidden!r}; give [15, 15] or [[15, 15], [25, 25]]")
    return [tuple(hidden)]


def _combined(summaries: list[FitSummary], members: int) -> FitSummary:
    """One summary for the report: each member's numbers as lists, why each stopped."""
    keys = [key for key in summaries[0].info if key not in (STOP_REASON, STOPPED_BY, INTERRUPTED_AT_EPOCH)]
    info: dict[str, Any] = {"members": members, **{key: [s.info.get(key) for s in summaries] for key in keys}}
    info[STOP_REASON] = "; ".join(f"member {k + 1}: {s.info.get(STOP_REASON, 'done')}" for k, s in enumerate(summaries))
    info[STOPPED_BY] = summaries[-1].info.get(STOPPED_BY)
    if INTERRUPTED_AT_EPOCH in summaries[-1].info:
        info[INTERRUPTED_AT_EPOCH] = summaries[-1].info[INTERRUPTED_AT_EPOCH]
    return FitSummary(info=info, history=summaries[0].history)
