"""Forces and stress from energy gradients with respect to edge vectors.

This is the one place where pesmith differentiates energies. With ``g_e = dE/dr_e`` for each
edge ``e`` (center i -> neighbor j, ``r_e = r_j - r_i + shift @ cell``):

* force on atom k: ``F_k = sum_{e: i=k} g_e - sum_{e: j=k} g_e``;
* stress (ASE sign, eV/Å^3): ``sigma = (1/V) sum_e r_e (x) g_e``, the derivative of the energy
  with respect to a homogeneous strain of positions and cell, divided by the volume.

Both are exact for periodic cells, including cells smaller than twice the cutoff.
"""

from __future__ import annotations

import torch

from .structures import Batch

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def forces_from_edge_gradients(edge_gradients: torch.Tensor, edge_index: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """(n_atoms, 3) forces, eV/Å, from (n_edges, 3) gradients ``dE/dr_e``, eV/Å."""
    centers, neighbors = edge_index
    forces = torch.zeros(n_atoms, 3, dtype=edge_gradients.dtype, device=edge_gradients.device)
    forces = forces.index_add(0, centers, edge_gradients)
    return forces.index_add(0, neighbors, -edge_gradients)


def virial_stress(
    edge_gradients: torch.Tensor, edge_vectors: torch.Tensor, edge_owner: torch.Tensor, volumes: torch.Tensor
) -> torch.Tensor:
    """(n_structures, 6) stress in ASE Voigt order (xx, yy, zz, yz, xz, xy), eV/Å^3.

    ``edge_owner`` (n_edges,) is the structure of each edge, ``volumes`` (n_structures,) Å^3.
    """
    per_edge = edge_vectors.unsqueeze(2) * edge_gradients.unsqueeze(1)  # (n_edges, 3, 3)
    virial = torch.zeros(volumes.shape[0], 3, 3, dtype=per_edge.dtype, device=per_edge.device)
    virial = virial.index_add(0, edge_owner, per_edge)
    virial = 0.5 * (virial + virial.transpose(1, 2))
    stress = virial / volumes[:, None, None]
    return torch.stack([stress[:, a, b] for a, b in VOIGT], dim=1)


def stress_from_edge_gradients(
    edge_gradients: torch.Tensor, edge_vectors: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """(n_structures, 6) stress of a :class:`Batch` in ASE Voigt order, eV/Å^3."""
    owner = batch.structure_index[batch.edge_index[0]]
    return virial_stress(edge_gradients, edge_vectors, owner, batch.volumes())


def forces_and_stress(
    energy: torch.Tensor, edge_vectors: torch.Tensor, batch: Batch, stress: bool, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forces (n_atoms, 3) eV/Å and, if ``stress``, stress (n_structures, 6) eV/Å^3.

    ``energy`` is the (n_structures,) total energy computed from ``edge_vectors``
    (which must require grad).
    """
    (edge_gradients,) = torch.autograd.grad(energy.sum(), edge_vectors, create_graph=create_graph)
    forces = forces_from_edge_gradients(edge_gradients, batch.edge_index, batch.n_atoms)
    if not stress:
        return forces, None
    return forces, stress_from_edge_gradients(edge_gradients, edge_vectors, batch)
