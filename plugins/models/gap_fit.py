"""The observations of a GAP fit: weighted rows of ``K_NM`` and their targets, block by block.

Three kinds of observation, each divided by its noise (gap_fit's ``default_sigma`` with
``sigma_per_atom=T``, and its ``config_type_sigma``):

* total energy, eV: noise ``sigma_energy * sqrt(N)`` (``sigma_energy`` in eV/atom);
* force component, eV/Å: noise ``sigma_force``;
* virial component ``W = V * stress`` (eV, the derivative of the energy with respect to a
  homogeneous strain; ASE Voigt order and sign, so ``W = -virial`` of gap_fit, which does not
  matter for the fit since the rows carry the same sign as the targets): noise
  ``sigma_virial * sqrt(N)`` (``sigma_virial`` in eV/atom), six components per structure with
  a stress label and a full 3D cell; other structures are skipped.

A structure whose ``atoms.info["config_type"]`` is named in ``config_type_sigma`` uses the
sigmas given there and the defaults for the rest. Force and virial rows are built one chunk of
structures at a time (:meth:`pesmith.features.FeatureSet.chunks`, within the block size of the
edge work), so the whole set's feature Jacobian is never in memory at once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Iterator, Mapping

import torch
from pydantic import BaseModel, ConfigDict, Field

from pesmith.errors import DataError
from pesmith.features import FeatureSet
from pesmith.structures import DTYPE

from .gap_derivatives import force_and_virial_rows

if TYPE_CHECKING:
    from .gap import GAPModel, GAPSettings

KINDS = ("energy", "force", "virial")


class ConfigTypeSigma(BaseModel):
    """The sigmas of one ``config_type`` (any left out take the defaults of ``training:``)."""

    model_config = ConfigDict(extra="forbid")

    energy: float | None = Field(None, gt=0, description="energy noise per atom, eV/atom (x sqrt(N))")
    force: float | None = Field(None, gt=0, description="force noise per component, eV/Å")
    virial: float | None = Field(None, gt=0, description="virial noise per atom and component, eV/atom (x sqrt(N))")


@dataclasses.dataclass
class Sigmas:
    """Per-structure noise of each kind of observation; NaN: the kind is not fitted there."""

    energy: torch.Tensor  # (n_structures,) eV/atom
    force: torch.Tensor  # (n_structures,) eV/Å
    virial: torch.Tensor  # (n_structures,) eV/atom


def structure_sigmas(data: FeatureSet, settings: "GAPSettings") -> Sigmas:
    """The sigmas of each structure of ``data`` from the defaults and ``config_type_sigma``.

    Raises
    ------
    DataError
        A config_type named in ``training.config_type_sigma`` that no training structure has.
    """
    types = list(data.config_types) if data.config_types is not None else [None] * data.n_structures
    present = sorted({t for t in types if t is not None})
    missing = [name for name in settings.config_type_sigma if name not in present]
    if missing:
        have = ", ".join(present) if present else "none (no structure has atoms.info['config_type'])"
        raise DataError(
            f"training.config_type_sigma names config_type {', '.join(missing)}, which no training structure has;"
            f" the config types of the training data are: {have}; fix or remove the key"
        )
    values = {kind: [] for kind in KINDS}
    defaults = {"energy": settings.sigma_energy, "force": settings.sigma_force, "virial": settings.sigma_virial}
    for name in types:
        override = settings.config_type_sigma.get(name) if name is not None else None
        for kind in KINDS:
            value = getattr(override, kind) if override is not None else None
            value = defaults[kind] if value is None else value
            values[kind].append(math.nan if value is None else value)
    return Sigmas(**{kind: torch.tensor(v, dtype=DTYPE) for kind, v in values.items()})


def part_observations(model: "GAPModel", part: FeatureSet, sigmas: Sigmas, block_edges: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(kind, weighted rows (r, M), weighted targets (r,)) blocks of the energies, forces and
    virials of one chunk of structures (its sigmas already selected), each divided by its noise
    (module docstring); :func:`.gap_solve.joint_observations` walks the chunks."""
    root_n = part.atoms_per_structure.to(DTYPE).sqrt()  # (n_structures,)
    x, index = model._transform(part.features, part.numbers)
    kernel = model._sparse_kernel(x, index)  # (n_atoms, M)
    energy_rows = torch.zeros(part.n_structures, model.n_sparse, dtype=DTYPE).index_add(0, part.structure_index, kernel)
    noise = sigmas.energy * root_n  # (n_structures,) eV
    yield "energy", energy_rows / noise[:, None], part.energies / noise
    force_noise = sigmas.force[part.structure_index]  # (n_atoms,) eV/Å, NaN: not fitted
    with_forces = torch.isfinite(force_noise)
    with_virials = torch.isfinite(sigmas.virial) & part.has_stress  # (n_structures,)
    if not (bool(with_forces.any()) or bool(with_virials.any())):
        return
    virial = (part.edge_vectors, part.structure_index[part.edge_index[0]], part.n_structures) if bool(with_virials.any()) else None
    force_rows, virial_rows = force_and_virial_rows(
        model, part.features, part.numbers, part.edge_index, part.load_jacobian(), block_edges, virial
    )  # (n_atoms, 3, M), (n_structures, 6, M)
    if bool(with_forces.any()):
        noise = force_noise[with_forces][:, None]  # (n, 1)
        rows = force_rows[with_forces] / noise[:, :, None]
        yield "force", rows.reshape(-1, model.n_sparse), (part.forces[with_forces] / noise).reshape(-1)
    if virial_rows is not None:
        noise = (sigmas.virial * root_n)[with_virials][:, None]  # (n, 1) eV
        targets = part.stresses[with_virials] * part.volumes[with_virials][:, None]  # (n, 6) eV, V * stress
        rows = virial_rows[with_virials] / noise[:, :, None]
        yield "virial", rows.reshape(-1, model.n_sparse), (targets / noise).reshape(-1)


def describe_sigmas(settings: "GAPSettings") -> Mapping[str, object]:
    """The sigmas of a fit for its summary (JSON types)."""
    return {
        "sigma_energy_eV_per_atom": settings.sigma_energy,
        "sigma_force_eV_per_A": settings.sigma_force,
        "sigma_virial_eV_per_atom": settings.sigma_virial,
        "config_type_sigma": {name: sigma.model_dump(exclude_none=True) for name, sigma in settings.config_type_sigma.items()},
    }
