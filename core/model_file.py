"""One self-describing model file: format version, config, species, reference energies,
normalisation, feature range and weights, as plain tensors and JSON (no pickle).

A one-term potential is written in format version 1 (``descriptor``, ``model`` and
``n_features`` in the header, ``model_state`` in the payload), as before sums of terms existed;
a sum of terms in version 2 (``terms``: one such header entry per term, ``model_states``: one
state per term). Both are read.

Written atomically (temporary file + rename); read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from .atomic_io import atomic_path
from .errors import ModelFileError, PesmithError
from .descriptor import Descriptor
from .model import Model
from .potential import Potential
from .terms import Term
from .registry import Registry, default_registry

FORMAT = "pesmith-model"
FORMAT_VERSION = 2  # 2: a sum of terms ("terms" in the header, "model_states"); a one-term potential is still written as 1


def save_potential(
    potential: Potential, path: str | Path, metadata: dict[str, Any] | None = None, registry: Registry | None = None
) -> Path:
    """Write ``potential`` to ``path`` atomically; ``metadata`` (JSON types) is stored beside it."""
    path = Path(path)
    registry = registry or default_registry()
    terms = [_term_header(registry, term) for term in potential.terms]
    header: dict[str, Any] = terms[0] if len(terms) == 1 else {"terms": terms}
    header |= {"species": list(potential.species), "reference_energies_eV": potential.reference}
    if potential.core_outer:  # a potential without the ZBL core is written as before it existed
        header["core_outer_A"] = potential.core_outer
    header["metadata"] = metadata or {}
    payload = {
        "format": FORMAT,
        "format_version": 1 if len(terms) == 1 else FORMAT_VERSION,
        "header_json": json.dumps(header),
        "feature_min": potential.feature_min.detach().cpu(),
        "feature_max": potential.feature_max.detach().cpu(),
    }
    states = [{k: v.detach().cpu() for k, v in term.model.state_dict().items()} for term in potential.terms]
    if len(states) == 1:
        payload["model_state"] = states[0]
    else:
        payload["model_states"] = states
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a model file, after checking its format and version."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"model file {path} is a directory; give the .pt file `pesmith train` wrote")
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's own message advises loading it anyway: not relayed
        raise ModelFileError(
            f"{path} is not a pesmith model file: it holds Python objects other than tensors and plain data"
            " (an arbitrary pickle, or not a torch file at all), and pesmith never loads such files because"
            " unpickling can run code; use a model file written by `pesmith train`"
        ) from exc
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a readable pesmith model file: it is cut short or damaged ({type(exc).__name__});"
            " model files are written whole by `pesmith train`, so copy it again from where it was made or"
            " retrain with `pesmith train`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a pesmith model file (no '{FORMAT}' format tag)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {version}, newer than this pesmith reads ({FORMAT_VERSION});"
            " upgrade pesmith"
        )
    try:
        header = json.loads(payload["header_json"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt header ({exc}); retrain with `pesmith train`") from exc
    return header, payload


def load_potential(path: str | Path, registry: Registry | None = None) -> tuple[Potential, dict[str, Any]]:
    """Rebuild the :class:`Potential` stored in ``path``; also return the header."""
    registry = registry or default_registry()
    header, payload = read_header(path)
    try:
        if "terms" in header:
            terms = [_build_term(registry, term, header["species"], state) for term, state in zip(header["terms"], payload["model_states"], strict=True)]
        else:
            terms = [_build_term(registry, header, header["species"], payload["model_state"])]
        potential = Potential(terms=terms, reference=header["reference_energies_eV"])
        potential.feature_min.copy_(payload["feature_min"])
        potential.feature_max.copy_(payload["feature_max"])
        potential.set_core(header.get("core_outer_A", {}))  # files before the core have none
    except PesmithError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise ModelFileError(f"{path}: cannot rebuild the model ({type(exc).__name__}: {reason})") from exc
    potential.eval()
    return potential, header


def _term_header(registry: Registry, term: Term) -> dict[str, Any]:
    """The descriptor and model configs (with their ``kind``) and ``n_features`` of one term."""
    return {
        "descriptor": {"kind": _kind_name(registry, term.descriptor), **term.descriptor.get_config()},
        "model": {"kind": _kind_name(registry, term.model), **term.model.get_config()},
        "n_features": term.descriptor.n_features,
    }


def _build_term(registry: Registry, term: dict[str, Any], species: list[str], state: dict[str, torch.Tensor]) -> tuple[Descriptor, Model]:
    """The fitted (descriptor, model) of one term's header entry and model state."""
    descriptor_config, model_config = dict(term["descriptor"]), dict(term["model"])
    descriptor = registry.get("descriptor", descriptor_config.pop("kind"))(**descriptor_config)
    model = registry.get("model", model_config.pop("kind"))(species=species, n_features=term["n_features"], **model_config)
    model.load_fitted_state(state)
    return descriptor, model


def _kind_name(registry: Registry, obj: object) -> str:
    name = registry.name_of(type(obj))
    if name is not None:
        return name
    raise ModelFileError(f"{type(obj).__qualname__} is not a registered plugin; register it to save models using it")
