"""The terms of a potential: E = sum_t E_t + sum_i e0(Z_i), each term a descriptor (with its
own cutoff) and the model of its per-atom energies.

A term sees only the edges within its own cutoff (the potential's neighbor list is built at
the largest one). Energies, forces and stress add over terms; so do the variances of
independent uncertainty estimates (:func:`combined_std`). For a fit of several terms the
feature sets of the terms hold the same structures with different edges; :func:`aligned_parts`
cuts them into the same groups of structures, so their rows line up.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .descriptor import Descriptor
from .errors import ConfigError
from .features import FeatureSet, groups_within
from .loss import add_sums, metrics_from_sums, predict_labels, prediction_errors
from .fit_settings import FitSettings
from .model import Model


class Term(torch.nn.Module):
    """One term of a potential: ``descriptor`` -> features ``(n_atoms, F)`` -> ``model`` ->
    per-atom energies ``(n_atoms,)``, eV. The model's species and ``n_features`` must be the
    descriptor's. The term computes in ``compute_dtype`` (float64; float32 in a copy made by
    :func:`pesmith.precision.inference_copy`)."""

    def __init__(self, descriptor: Descriptor, model: Model):
        super().__init__()
        if tuple(model.species) != tuple(descriptor.species) or model.n_features != descriptor.n_features:
            raise ConfigError(
                f"term {type(descriptor).__name__} + {type(model).__name__}: the model has species {list(model.species)} and"
                f" {model.n_features} features, the descriptor {list(descriptor.species)} and {descriptor.n_features}; build the"
                " model with the descriptor's species and n_features"
            )
        self.descriptor = descriptor
        self.model = model
        self.compute_dtype = torch.float64  # of edge vectors, features and energies inside the term (pesmith.precision)

    @property
    def cutoff(self) -> float:
        """The descriptor's cutoff, Å."""
        return float(self.descriptor.cutoff)


def edges_within(
    cutoff: float, largest: float, edge_index: torch.Tensor, edge_vectors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edges ``(2, e)`` and their vectors ``(e, 3)`` (Å, still differentiable) shorter than
    ``cutoff`` (Å); all of them when ``cutoff`` is the neighbor list's ``largest`` one."""
    if cutoff >= largest:
        return edge_index, edge_vectors
    keep = torch.nonzero(edge_vectors.detach().norm(dim=1) < cutoff).squeeze(1)  # (e,)
    return edge_index[:, keep], edge_vectors[keep]


def combined_std(stds: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """``sqrt(sum_t std_t^2)``: the standard deviation of a sum of independent terms (eV or
    eV/Å, as given), or ``None`` when a term has no estimate."""
    if any(std is None for std in stds):
        return None
    if len(stds) == 1:
        return stds[0]
    return torch.stack([std**2 for std in stds]).sum(0).sqrt()


def aligned_parts(sets: Sequence[FeatureSet]) -> Iterator[list[FeatureSet]]:
    """The structures of ``sets`` (one feature set per term, the same structures in the same
    order) in consecutive groups within the smallest memory budget (``chunk_edges``) of them
    counted over all terms' edges, one part per term for each group."""
    edges = torch.stack([s.edges_per_structure for s in sets]).sum(0)  # (n_structures,)
    chunk_edges = min(s.chunk_edges for s in sets)
    for group in groups_within(edges.tolist(), chunk_edges):
        yield [s.select(group) for s in sets]


def evaluate_terms(models: Sequence[Model], sets: Sequence[FeatureSet], settings: FitSettings) -> dict[str, float]:
    """Loss and RMSEs (energy meV/atom, force eV/Å, stress GPa) of the sum of ``models`` (one
    per term, each on its feature set of the same structures), as
    :func:`pesmith.loss.evaluate` reports them for one model."""
    totals: dict[str, float] = {}
    for parts in aligned_parts(sets):
        data = parts[0]
        use_stress = settings.stress_weight > 0 and bool(data.has_stress.any())
        forces = settings.force_weight > 0
        predicted: dict[str, torch.Tensor] = {}
        for model, part in zip(models, parts):
            with torch.enable_grad():
                labels = predict_labels(model, part, forces, use_stress, create_graph=False)
            for key, value in labels.items():
                predicted[key] = predicted[key] + value.detach() if key in predicted else value.detach()
        add_sums(totals, prediction_errors(predicted, data))
    return metrics_from_sums(totals, settings)
