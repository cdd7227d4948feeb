"""One self-describing model file: format version, config, species, reference energies,
normalisation, feature range and weights, as plain tensors and JSON (no pickle).

A one-term potential is written in format version 1 (``descriptor``, ``model`` and
``n_features`` in the header, ``model_state`` in the payload), as before sums of terms existed;
a sum of terms in version 2 (``terms``: one such header entry per term, ``model_states``: one
state per term). A potential with a baseline (delta learning, :mod:`pesmith.baseline`) is written
in version 3: ``baseline`` in the header holds a pair baseline's parameters, a reference
baseline's plugin kind and options (rebuilt from the registry on reading), or, for a model
baseline, its kind and source, and ``baseline_payload`` the whole payload of the baseline's own
model file, so the file does not depend on the baseline's file. All three are read.

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
from .baseline import Baseline, ModelBaseline, PairBaseline, ReferenceBaseline
from .errors import ModelFileError, PesmithError
from .descriptor import Descriptor
from .model import Model
from .potential import Potential
from .terms import Term
from .registry import Registry, default_registry

FORMAT = "pesmith-model"
FORMAT_VERSION = 3  # 2: a sum of terms ("terms" in the header, "model_states"); 3: a baseline; otherwise still written as 1 or 2


def save_potential(
    potential: Potential, path: str | Path, metadata: dict[str, Any] | None = None, registry: Registry | None = None
) -> Path:
    """Write ``potential`` to ``path`` atomically; ``metadata`` (JSON types) is stored beside it."""
    path = Path(path)
    payload = potential_payload(potential, metadata, registry or default_registry())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def potential_payload(potential: Potential, metadata: dict[str, Any] | None, registry: Registry) -> dict[str, Any]:
    """What a model file holds (tensors, strings and plain data): the format tag and version,
    the JSON header, the feature range and the model state(s), and a model baseline's payload."""
    terms = [_term_header(registry, term) for term in potential.terms]
    header: dict[str, Any] = terms[0] if len(terms) == 1 else {"terms": terms}
    header |= {"species": list(potential.species), "reference_energies_eV": potential.reference}
    if potential.core_outer:  # a potential without the ZBL core is written as before it existed
        header["core_outer_A"] = potential.core_outer
    if potential.baseline is not None:
        header["baseline"] = _baseline_header(potential.baseline)
    header["metadata"] = metadata or {}
    payload = {
        "format": FORMAT,
        "format_version": 3 if potential.baseline is not None else 1 if len(terms) == 1 else 2,
        "header_json": json.dumps(header),
        "feature_min": potential.feature_min.detach().cpu(),
        "feature_max": potential.feature_max.detach().cpu(),
    }
    states = [{k: v.detach().cpu() for k, v in term.model.state_dict().items()} for term in potential.terms]
    if len(states) == 1:
        payload["model_state"] = states[0]
    else:
        payload["model_states"] = states
    if isinstance(potential.baseline, ModelBaseline):
        payload["baseline_payload"] = potential_payload(potential.baseline.potential, {}, registry)
    return payload


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
    return payload_header(payload, path), payload


def payload_header(payload: Any, path: str | Path) -> dict[str, Any]:
    """The header of a model file's ``payload`` (read from ``path``), after checking its format
    and version."""
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
    return header


def load_potential(path: str | Path, registry: Registry | None = None) -> tuple[Potential, dict[str, Any]]:
    """Rebuild the :class:`Potential` stored in ``path``; also return the header."""
    registry = registry or default_registry()
    header, payload = read_header(path)
    return rebuild_potential(header, payload, registry, path), header


def rebuild_potential(header: dict[str, Any], payload: dict[str, Any], registry: Registry, path: str | Path) -> Potential:
    """The :class:`Potential` (in eval mode) of a model file's ``header`` and ``payload``;
    ``path`` names the file in errors."""
    try:
        if "terms" in header:
            terms = [_build_term(registry, term, header["species"], state) for term, state in zip(header["terms"], payload["model_states"], strict=True)]
        else:
            terms = [_build_term(registry, header, header["species"], payload["model_state"])]
        baseline = _build_baseline(header["baseline"], payload, registry, path) if "baseline" in header else None
        potential = Potential(terms=terms, reference=header["reference_energies_eV"], baseline=baseline)
        potential.feature_min.copy_(payload["feature_min"])
        potential.feature_max.copy_(payload["feature_max"])
        potential.set_core(header.get("core_outer_A", {}))  # files before the core have none
    except PesmithError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise ModelFileError(f"{path}: cannot rebuild the model ({type(exc).__name__}: {reason})") from exc
    potential.eval()
    return potential


def _baseline_header(baseline: Baseline) -> dict[str, Any]:
    """The header entry of a baseline: a pair baseline's parameters, a model baseline's kind
    and source (its state is in the payload)."""
    if isinstance(baseline, PairBaseline):
        return {"kind": baseline.kind, "pairs": baseline.pairs, "switch_width": baseline.switch_width}
    if isinstance(baseline, ModelBaseline):
        return {"kind": baseline.kind, "source": baseline.source}
    if isinstance(baseline, ReferenceBaseline):
        return {"kind": baseline.kind, "reference": baseline.settings}
    raise ModelFileError(f"a baseline of type {type(baseline).__qualname__} cannot be saved; use a pair or model baseline")


def _build_baseline(entry: dict[str, Any], payload: dict[str, Any], registry: Registry, path: str | Path) -> Baseline:
    """The baseline of a header entry (and, for a model baseline, the embedded payload)."""
    if entry["kind"] == PairBaseline.kind:
        return PairBaseline(entry["pairs"], entry["switch_width"])
    if entry["kind"] == ModelBaseline.kind:
        inner = payload["baseline_payload"]
        where = f"{path} (its baseline model)"
        return ModelBaseline(rebuild_potential(payload_header(inner, where), inner, registry, where), entry["source"])
    if entry["kind"] == ReferenceBaseline.kind:
        options = dict(entry["reference"])
        kind = options.pop("kind")
        try:
            reference = registry.get("reference", kind)(**options)
        except (PesmithError, TypeError) as exc:  # a plugin not installed, options it no longer takes, a setup problem
            raise ModelFileError(f"{path}: its baseline, reference {kind!r} with {options}, cannot be set up: {exc}") from None
        return ReferenceBaseline(reference, entry["reference"])
    raise ModelFileError(f"{path}: unknown baseline kind {entry['kind']!r}; upgrade pesmith")


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
