"""Opt-in float32 inference: a copy of a potential whose descriptors and models compute in float32.

Positions, cells and edge vectors stay float64 (an edge vector is formed from positions in
float64 before it is rounded, so large coordinates lose nothing); each term casts its edge vectors
to its ``compute_dtype`` and its per-atom energies back to float64, and the reference energies,
the sums over atoms, the forces and the stress are float64. Autograd carries the float32
gradients back through the cast. A descriptor or model that builds float64 tensors inside its
forward pass would silently compute in float64 (torch promotes mixed dtypes);
:func:`inference_copy` refuses it by name.
"""

from __future__ import annotations

import copy
from typing import get_args

import torch
from ase import Atoms

from .calculator_settings import Precision
from .errors import ConfigError
from .potential import Potential
from .structures import DTYPE, build_batch

DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


def check_precision(dtype: str) -> Precision:
    """``dtype`` if it is one of :data:`Precision`.

    Raises
    ------
    ConfigError
        Any other value.
    """
    if dtype not in get_args(Precision):
        raise ConfigError(f"dtype: {dtype!r} is not a supported inference precision; choose one of {', '.join(get_args(Precision))}")
    return dtype


def inference_copy(potential: Potential, dtype: Precision) -> Potential:
    """``potential`` itself for float64; for float32 a copy whose terms (descriptor and model)
    compute in float32, everything else (reference energies, feature range, core repulsion,
    baseline) as it is.

    Raises
    ------
    ConfigError
        ``dtype`` unknown, or a term's descriptor or model still returns float64 after the cast
        or fails in float32 (it creates float64 tensors inside its forward pass), named with what
        to do.
    """
    target = DTYPES[check_precision(dtype)]
    if target == DTYPE:
        return potential
    copied = copy.deepcopy(potential, memo={id(potential.baseline): potential.baseline})  # the baseline is shared, float64
    for term in copied.terms:
        cast_module(term, target)
        term.compute_dtype = target
        _check_term(term, target, copied.species)
    return copied


def cast_module(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast ``module``'s floating parameters and buffers and the floating tensors its submodules
    keep as plain attributes (constants such as a descriptor's grids) to ``dtype``, in place."""
    module.to(dtype)
    for part in module.modules():
        for name, value in list(vars(part).items()):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                setattr(part, name, value.to(dtype))


def _check_term(term: torch.nn.Module, dtype: torch.dtype, species: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``term`` computes features and energies in ``dtype``
    (without failing) on a small triangle of its first element (every edge within the cutoff,
    angles included)."""
    side = 0.6 * term.cutoff  # Å
    atoms = Atoms([species[0]] * 3, positions=[[0, 0, 0], [side, 0, 0], [0.5 * side, 0.8 * side, 0]], pbc=False)
    batch = build_batch([atoms], term.cutoff)
    vectors = batch.edge_vectors().to(dtype)  # (n_edges, 3) Å
    try:
        features = term.descriptor(batch.numbers, batch.edge_index, vectors)
        energies = term.model(features, batch.numbers)
    except RuntimeError as exc:  # e.g. an in-place op mixing its float64 constants with float32 inputs
        kinds = f"{type(term.descriptor).__name__} + {type(term.model).__name__}"
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(
            f"dtype: the term {kinds} fails in {str(dtype).removeprefix('torch.')} ({type(exc).__name__}: {message});"
            " use dtype float64 with this potential"
        ) from exc
    for part, value in (("descriptor", features), ("model", energies)):
        if value.dtype != dtype:
            kind = type(getattr(term, part)).__name__
            raise ConfigError(
                f"dtype: the {part} {kind} does not compute in {str(dtype).removeprefix('torch.')} (it returned"
                f" {str(value.dtype).removeprefix('torch.')}); use dtype float64 with this potential"
            )
