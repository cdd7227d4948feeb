"""Export a pesmith potential to LAMMPS's ML-IAP package, which runs it natively under MPI:
``pair_style mliap model nn|linear MODEL descriptor sna DESCRIPTOR``.

What LAMMPS can run: one term, the ``bispectrum`` descriptor (LAMMPS computes the same SNAP
components itself from the ``sna`` descriptor file) and either the ``nn`` model with ``tanh``
hidden layers (ML-IAP's ``model nn``: per element the feature shift and scale, then each layer's
nodes, bias first) or the ``linear`` model (``model linear``: per element the constant, then one
coefficient per component, the SNAP form). The per-element reference energies go into the last
bias (the constant). Anything else (other descriptors, activations LAMMPS lacks, several terms, a
baseline, pesmith's short-range core) is refused with the reason.

File formats: LAMMPS's ``doc/src/pair_mliap.rst`` and ``src/ML-IAP/mliap_model_nn.cpp``,
``mliap_model.cpp`` (``MLIAPModelSimple::read_coeffs``), ``mliap_descriptor_snap.cpp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from .atomic_io import write_text_atomic
from .errors import ConfigError
from .potential import Potential
from .registry import Registry

LAMMPS_ACTIVATIONS = {"tanh": "tanh"}  # pesmith nn activation -> ML-IAP name (ML-IAP has linear, sigmoid, tanh, relu)
VALUES_PER_LINE = 10  # ML-IAP's nn reader takes at most 30 numbers on a line
MODEL_FILE, DESCRIPTOR_FILE, INPUT_FILE = "pesmith.mliap.model", "pesmith.mliap.descriptor", "pesmith.mliap.in"


class ExportError(ConfigError):
    """A model LAMMPS cannot run as it is; the message says why and what to train instead."""


@dataclass(frozen=True)
class LammpsExport:
    """The files written by :func:`export_lammps` and the commands that load them."""

    model: Path
    descriptor: Path
    snippet: Path
    commands: str  # pair_style and pair_coeff lines, with the files' absolute paths


def check_exportable(potential: Potential, registry: Registry, source: str = "the model") -> str:
    """Return the ML-IAP model kind (``nn`` or ``linear``) of ``potential``, whose plugins
    ``registry`` names.

    Raises
    ------
    ExportError
        Several terms, a baseline, pesmith's short-range core, a descriptor other than
        ``bispectrum``, or a model ML-IAP does not run (another kind or activation).
    """
    if len(potential.terms) != 1:
        raise ExportError(f"{source} has {len(potential.terms)} terms; LAMMPS's ML-IAP runs one descriptor and one model")
    if potential.baseline is not None:
        raise ExportError(f"{source} has a baseline ({potential.baseline.kind}); LAMMPS's ML-IAP runs the learned term only: train without a baseline")
    if potential.core_outer:
        raise ExportError(
            f"{source} has pesmith's short-range core (training.core_repulsion), which LAMMPS's ML-IAP lacks;"
            " train with training.core_repulsion: false"
        )
    descriptor, model = potential.descriptor, potential.model
    descriptor_kind, model_kind = registry.name_of(type(descriptor)), registry.name_of(type(model))
    if descriptor_kind != "bispectrum":
        raise ExportError(
            f"{source} uses the {descriptor_kind or type(descriptor).__name__} descriptor; LAMMPS's ML-IAP computes the"
            " SNAP bispectrum itself: train on descriptor kind bispectrum"
        )
    if model_kind == "linear":
        return "linear"
    if model_kind == "nn":
        if model.activation not in LAMMPS_ACTIVATIONS:
            raise ExportError(
                f"{source} uses activation {model.activation}, which LAMMPS's ML-IAP nn lacks (it has linear, sigmoid,"
                " tanh, relu); train with model.activation: tanh"
            )
        return "nn"
    raise ExportError(f"{source} uses the {model_kind or type(model).__name__} model; LAMMPS's ML-IAP runs nn (tanh) and linear models")


def export_lammps(potential: Potential, folder: Path, registry: Registry, source: str = "the model") -> LammpsExport:
    """Write the ML-IAP model and descriptor files of ``potential`` and an input snippet
    (``pair_style``, ``pair_coeff``; for ``include`` in a LAMMPS input in ``units metal``) into
    ``folder``; see :func:`check_exportable`."""
    kind = check_exportable(potential, registry, source)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor_path, model_path, snippet_path = (folder / name for name in (DESCRIPTOR_FILE, MODEL_FILE, INPUT_FILE))
    write_text_atomic(descriptor_path, descriptor_text(potential))
    write_text_atomic(model_path, nn_text(potential) if kind == "nn" else linear_text(potential))
    species = " ".join(potential.species)
    commands = (
        f"pair_style mliap model {kind} {model_path.resolve()} descriptor sna {descriptor_path.resolve()}\n"
        f"pair_coeff * * {species}\n"
    )
    write_text_atomic(
        snippet_path,
        f"# pesmith model {source} for LAMMPS's ML-IAP: include this after the box is defined, in units metal,\n"
        f"# with atom types 1..{len(potential.species)} = {species}\n{commands}",
    )
    return LammpsExport(model_path, descriptor_path, snippet_path, commands)


def descriptor_text(potential: Potential) -> str:
    """The ``sna`` descriptor file of a potential on the ``bispectrum`` descriptor."""
    d = potential.descriptor
    return "".join([
        "# SNAP bispectrum of a pesmith model (pesmith descriptor kind bispectrum)\n",
        f"rcutfac {d.rcutfac!r}\ntwojmax {d.twojmax}\nnelems {len(d.species)}\nelems {' '.join(d.species)}\n",
        f"radelems {' '.join(repr(d.radii[s]) for s in d.species)}\nwelems {' '.join(repr(d.weights[s]) for s in d.species)}\n",
        f"rfac0 {d.rfac0!r}\nrmin0 {d.rmin0!r}\nswitchflag {int(d.switch)}\nbzeroflag {int(d.bzero)}\n",
    ])


def nn_text(potential: Potential) -> str:
    """ML-IAP's ``model nn`` file of a potential on the ``nn`` model (tanh hidden layers)."""
    model = potential.model
    layers = [layer for layer in model.networks[model.species[0]] if isinstance(layer, torch.nn.Linear)]
    n_params = sum(layer.weight.numel() + layer.bias.numel() for layer in layers)
    activation = LAMMPS_ACTIVATIONS[model.activation]
    architecture = " ".join([f"{activation} {size}" for size in model.hidden] + ["linear 1"])
    lines = [f"# pesmith nn model (Behler-Parrinello), {model.n_features} bispectrum components\n",
             f"{len(model.species)} {n_params}\n", f"NET {model.n_features} {len(layers)} {architecture}\n"]
    for index, symbol in enumerate(model.species):
        values = []
        for k, layer in enumerate(model.networks[symbol]):
            if not isinstance(layer, torch.nn.Linear):
                continue
            bias = layer.bias.detach().clone()
            if k == len(model.networks[symbol]) - 1:
                bias += potential.reference[symbol]  # E_i = NN(x) + e0(Z)
            values += torch.cat([bias[:, None], layer.weight.detach()], 1).reshape(-1).tolist()  # node by node, bias first
        lines.append(f"# {symbol}: feature shift, feature scale, then weights\n")
        lines += _rows(model.feature_mean[index].tolist())
        lines += _rows(model.feature_scale[index].tolist())
        lines += _rows(values)
    return "".join(lines)


def linear_text(potential: Potential) -> str:
    """ML-IAP's ``model linear`` file (one number per line: the constant, then one coefficient
    per component, per element) of a potential on the ``linear`` model."""
    model = potential.model
    lines = [f"# pesmith linear model (SNAP form), {model.n_features} bispectrum components\n",
             f"{len(model.species)} {model.n_features + 1}\n"]
    for index, symbol in enumerate(model.species):
        weights = model.weights[index] / model.feature_scale[index]  # per raw component, eV
        constant = model.bias[index] - (weights * model.feature_mean[index]).sum() + potential.reference[symbol]
        lines += [f"{float(constant)!r}\n"] + [f"{float(w)!r}\n" for w in weights]
    return "".join(lines)


def _rows(values: Iterable[float]) -> list[str]:
    values = list(values)
    return [" ".join(repr(float(v)) for v in values[i : i + VALUES_PER_LINE]) + "\n" for i in range(0, len(values), VALUES_PER_LINE)]
