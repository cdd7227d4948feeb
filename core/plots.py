"""Figures without a display: pyplot on matplotlib's Agg backend, and a figure written as a PNG
file through a temporary file (a kill leaves the old file or none, never half a PNG).

matplotlib is imported when a figure is made, not with pesmith.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from .atomic_io import atomic_path

DPI = 120  # dots per inch of every PNG pesmith writes


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` as a PNG at :data:`DPI`, atomically, and
    close it; return ``path``."""
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=DPI, format="png")
    pyplot().close(fig)
    return path
