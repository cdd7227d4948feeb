"""The search's checkpoint: one JSON file, replaced atomically after every generation and every
confirmed candidate, so a killed run resumes where it stood.

It holds the phase and step, the GA state of the current step (population, every evaluation,
log), the NumPy generator's state (the only random source of the search; each training run is
seeded from the config), the model file and its hash, and the per-step records. It also records
a hash of the config so that ``--resume`` refuses a changed config. Its content is a
:class:`pesmith.search.state.SearchState` (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pesmith.atomic import write_text_atomic
from pesmith.errors import ConfigError

from .state import SearchState

VERSION = 2
READABLE = (1, 2)  # version 1 (the untyped dict) has the same keys, fewer of them per entry


def config_hash(config_json: dict[str, Any]) -> str:
    """sha256 of a config (JSON with sorted keys), without the keys that may change on resume."""
    stable = {k: v for k, v in config_json.items() if k not in ("workers", "progress")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


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
