"""The search's checkpoint: one JSON file, replaced atomically after every generation and every
confirmed candidate, so a killed run resumes where it stood.

It holds the phase and step, the GA state of the current step (population, every evaluation,
log), the NumPy generator's state (the only random source of the search; each training run is
seeded from the config), the model file and its hash, and the per-step records. It also records
a hash of the config and the config itself: ``--resume`` (:func:`resume`) continues with a changed
config when the change cannot invalidate the work already done (a relaxation setting fixed after
every relaxation failed, a step added to the path) and refuses it otherwise (the reference, the
seed, a trained potential, a step already begun). Its content is a
:class:`pesmith.search.state.SearchState` (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pesmith.atomic_io import write_text_atomic
from pesmith.errors import ConfigError

from .state import SearchState

VERSION = 2
READABLE = (1, 2)  # version 1 (the untyped dict) has the same keys, fewer of them per entry


FREE = ("workers", "progress")  # keys that may change on any resume, unnamed
ALWAYS_FROZEN = ("seed", "reference", "initial")  # they shaped the work from the first phase on


def stable_config(config_json: dict[str, Any]) -> dict[str, Any]:
    """The config without the keys that may change on any resume (as JSON round-trips it)."""
    return json.loads(json.dumps({k: v for k, v in config_json.items() if k not in FREE}, default=str))


def config_hash(config_json: dict[str, Any]) -> str:
    """sha256 of a config (JSON with sorted keys), without the keys that may change on resume."""
    return hashlib.sha256(json.dumps(stable_config(config_json), sort_keys=True, default=str).encode()).hexdigest()


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configs (``path`` by step: ``path[2]``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            key
            for name in sorted(set(old) | set(new))
            for key in changed_keys(old.get(name), new.get(name), f"{prefix}.{name}" if prefix else name)
        ]
    if prefix == "path" and isinstance(old, list) and isinstance(new, list):
        return [f"path[{i}]" for i in range(max(len(old), len(new))) if old[i:i + 1] != new[i:i + 1]]
    return [] if old == new else [prefix]


def shaped_finished_work(key: str, state: SearchState) -> bool:
    """Whether the config key ``key`` shaped work the checkpoint holds as done, so that a run
    continued with another value would mix two searches.

    Relaxation settings (``confirm``, ``fitness``) and the GA's do not: a finished relaxation's
    labels stay labels, and they govern only the relaxations still to run (a step's GA in
    progress is restarted, see :func:`pesmith.search.loop.Search.run`).
    """
    section = key.split(".")[0].split("[")[0]
    if section in ALWAYS_FROZEN:
        return True
    if section in ("potential", "holdout", "holdout_truth"):
        return bool(state.models)
    if section == "hull":
        return state.phase != "initial"
    if section == "start":
        return state.start is not None
    if section == "baseline":  # its samples so far were drawn with these settings
        return bool(state.baseline_done) or bool(state.confirm and state.confirm.baseline)
    if section == "path":
        index = int(key[len("path["):-1])
        if state.phase in ("hull", "done"):  # the path has ended
            return True
        return index == 0 and state.start is not None or 0 < index <= len(state.steps)
    return False


def resume(path: Path, config_json: dict[str, Any], config_path: Path | str) -> tuple[SearchState, list[str]]:
    """The checkpoint's state for ``--resume`` with the config ``config_json``, and the keys that
    changed since it was written (none: the same config). The state takes on the new config.

    Raises
    ------
    ConfigError
        If there is no readable checkpoint, or a changed key shaped work already done
        (:func:`shaped_finished_work`).
    """
    state = load(path, None)
    current = stable_config(config_json)
    new_hash = config_hash(config_json)
    if state.config_hash == new_hash:
        state.config = current  # an older checkpoint learns its config
        return state, []
    if state.config is None:
        raise ConfigError(
            f"{config_path}: the config changed since {path} was written, which does not record the config it was"
            " written with; resume with the same config, or set another output folder to start anew"
        )
    changed = changed_keys(state.config, current)
    frozen = [key for key in changed if shaped_finished_work(key, state)]
    if frozen:
        raise ConfigError(
            f"{config_path}: {', '.join(frozen)} changed since {path} was written and shaped the work already done"
            f" (phase {state.phase}); undo the change to resume, or set another output folder to start anew"
        )
    state.config_hash, state.config = new_hash, current
    return state, changed


def file_hash(path: Path) -> str:
    """``"sha256:"`` and the first 16 hex digits of the sha256 of a file's bytes, e.g. a model
    file (the prefix keeps ase.db from refusing a digest of digits only as a number)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def save(path: Path, state: SearchState) -> None:
    """Write the state atomically (a kill leaves the previous checkpoint)."""
    write_text_atomic(path, json.dumps({"version": VERSION, **state.to_json()}, indent=1))


def load(path: Path, expected_config_hash: str | None) -> SearchState:
    """Read a checkpoint written by :func:`save` for the same config (any config with
    ``expected_config_hash=None``, e.g. for ``--status``).

    Raises
    ------
    ConfigError
        If there is none, it is unreadable, or the config changed since.
    """
    if not path.is_file():
        raise ConfigError(f"no checkpoint {path} to resume from; run without --resume to start")
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"checkpoint {path} is not readable ({exc}); start a new run in another output folder") from exc
    if state.get("version") not in READABLE:
        raise ConfigError(f"checkpoint {path} has version {state.get('version')}, this pesmith reads {', '.join(map(str, READABLE))}")
    if expected_config_hash is not None and state.get("config_hash") != expected_config_hash:
        raise ConfigError(
            f"the config changed since {path} was written; resume with the same config, or start anew in another output folder"
        )
    return SearchState.from_json(state)
