"""Atomic file writes: write to a temporary file beside the target, then rename over it, so a
killed run never leaves a half-written file under the real name; and a file put back as it was
when the step that rewrote it fails."""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success rename it to ``path``.

    The temporary file is removed whether or not the block succeeds.
    """
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` as indented, strict JSON (a float that is not finite, such as an
    error bar from too few points, as null) through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(_finite(value), indent=2, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


@contextmanager
def restored_on_failure(path: Path) -> Iterator[None]:
    """If the block raises (Ctrl-C included), ``path`` is put back as it was before the block:
    removed if it did not exist, else its previous content restored."""
    backup = path.with_name(path.name + ".previous")
    existed = path.exists()
    if existed:
        os.replace(path, backup)
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        if existed:
            os.replace(backup, path)
        raise
    if existed:
        backup.unlink()
