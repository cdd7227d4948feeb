"""Predictions of a model on a :class:`~pesmith.features.FeatureSet` and their errors: the loss
and RMSEs the fit loop, the closed-form fits and evaluation share.

Loss = MSE of energy per atom (eV/atom)^2 + ``force_weight`` x MSE of force components (eV/Å)^2
+ ``stress_weight`` x MSE of stress components (eV/Å^3)^2; RMSEs are reported in meV/atom, eV/Å
and GPa. Sums of squared errors are accumulated part by part (and over ranks) and turned into
metrics once, so a set of any size is evaluated within the memory budget of its parts.
"""

from __future__ import annotations

import math

import torch

from .distributed import Ranks, all_reduce_sums, shard
from .features import FeatureSet
from .fit_settings import FitSettings
from .grad import forces_from_edge_gradients, virial_stress

EV_PER_A3_IN_GPA = 160.21766208  # 1 eV/Å^3 in GPa


def predict_labels(
    atomic_energy: torch.nn.Module, data: FeatureSet, forces: bool, stress: bool, create_graph: bool
) -> dict[str, torch.Tensor]:
    """Energies (n_structures,) eV and, if asked, forces (n_atoms, 3) eV/Å and stress
    (n_structures, 6) eV/Å^3 of a model on ``data`` (its derivatives read from the store).

    ``atomic_energy(features, numbers)`` returns per-atom energies; forces and stress use the
    chain rule through the stored feature derivatives (``g_e = sum_f dE/dG_{i f} dG_{i f}/dr_e``).
    """
    features = data.features.detach().requires_grad_(forces or stress)
    atom_energies = atomic_energy(features, data.numbers)  # (n_atoms,)
    energies = torch.zeros(data.n_structures, dtype=atom_energies.dtype).index_add(0, data.structure_index, atom_energies)
    results = {"energy": energies}
    if not (forces or stress):
        return results
    (d_energy,) = torch.autograd.grad(atom_energies.sum(), features, create_graph=create_graph)  # (n_atoms, F)
    jacobian = data.load_jacobian()
    edge_gradients = torch.einsum("ef,efc->ec", d_energy[data.edge_index[0]], jacobian)  # (n_edges, 3)
    if forces:
        results["forces"] = forces_from_edge_gradients(edge_gradients, data.edge_index, data.n_atoms)
    if stress:
        owner = data.structure_index[data.edge_index[0]]
        volumes = torch.where(data.volumes > 0, data.volumes, torch.ones_like(data.volumes))
        results["stress"] = virial_stress(edge_gradients, data.edge_vectors, owner, volumes)
    return results


def error_sums(
    atomic_energy: torch.nn.Module, data: FeatureSet, settings: FitSettings, create_graph: bool
) -> dict[str, torch.Tensor | int]:
    """Sums of squared errors of a part and the counts they average over:
    ``energy`` (eV/atom)^2 over structures, ``force`` (eV/Å)^2 over components, ``stress``
    (eV/Å^3)^2 over the components of structures with stress labels."""
    use_stress = settings.stress_weight > 0 and bool(data.has_stress.any())
    predicted = predict_labels(atomic_energy, data, settings.force_weight > 0, use_stress, create_graph)
    return prediction_errors(predicted, data)


def prediction_errors(predicted: dict[str, torch.Tensor], data: FeatureSet) -> dict[str, torch.Tensor | int]:
    """:func:`error_sums` of predictions (``energy`` eV and, if present, ``forces`` eV/Å and
    ``stress`` eV/Å^3, as :func:`predict_labels` returns them) against the labels of ``data``."""
    sums: dict[str, torch.Tensor | int] = {
        "energy": (((predicted["energy"] - data.energies) / data.atoms_per_structure) ** 2).sum(),
        "n_energy": data.n_structures,
    }
    if "forces" in predicted:
        sums["force"], sums["n_force"] = ((predicted["forces"] - data.forces) ** 2).sum(), 3 * data.n_atoms
    if "stress" in predicted:
        labeled = data.has_stress
        sums["stress"] = ((predicted["stress"][labeled] - data.stresses[labeled]) ** 2).sum()
        sums["n_stress"] = 6 * int(labeled.sum())
    return sums


def metrics_from_sums(sums: dict[str, float], settings: FitSettings) -> dict[str, float]:
    """Loss and RMSEs (energy meV/atom, force eV/Å, stress GPa) from accumulated error sums."""
    energy_mse = sums["energy"] / max(sums["n_energy"], 1)
    force_mse = sums.get("force", 0.0) / max(sums.get("n_force", 0), 1)
    stress_mse = sums.get("stress", 0.0) / max(sums.get("n_stress", 0), 1)
    metrics = {
        "loss": energy_mse + settings.force_weight * force_mse + settings.stress_weight * stress_mse,
        "energy_rmse_meV_per_atom": 1000 * math.sqrt(energy_mse),
    }
    if sums.get("n_force"):
        metrics["force_rmse_eV_per_A"] = math.sqrt(force_mse)
    if sums.get("n_stress"):
        metrics["stress_rmse_GPa"] = EV_PER_A3_IN_GPA * math.sqrt(stress_mse)
    return metrics


def evaluate(atomic_energy: torch.nn.Module, data: FeatureSet, settings: FitSettings, ranks: Ranks | None = None) -> dict[str, float]:
    """Loss and RMSEs of ``atomic_energy`` on a whole set, chunk by chunk; under ``ranks``, each
    rank evaluates its :func:`~pesmith.distributed.shard` of the set and the error sums are
    added up over the ranks, so every rank gets the metrics of the whole set."""
    totals: dict[str, float] = {}
    for part in data.parts(shard(torch.arange(data.n_structures), ranks)):
        add_sums(totals, error_sums(atomic_energy, part, settings, create_graph=False))
    return metrics_from_sums(all_reduce_sums(totals, ranks), settings)


def add_sums(totals: dict[str, float], sums: dict[str, torch.Tensor | int]) -> None:
    """Add error sums (tensors or counts, see :func:`error_sums`) into ``totals`` as floats."""
    for key, value in sums.items():
        totals[key] = totals.get(key, 0.0) + (value.detach().item() if isinstance(value, torch.Tensor) else value)

