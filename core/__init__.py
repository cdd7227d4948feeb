"""pesmith: machine-learned interatomic potentials for battery materials.

Public API::

    import pesmith
    calc = pesmith.load_calculator("si_nn.pt")   # an ASE Calculator
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    CalculationFailed,
    ConfigError,
    DataError,
    LabelingFailed,
    ModelFileError,
    NotFittedError,
    PesmithError,
    PluginError,
    ReferenceSetupError,
    SimulationFailed,
)
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .calculator import PesmithCalculator

__version__ = "0.1.0"

__all__ = [
    "CalculationFailed",
    "ConfigError",
    "DataError",
    "LabelingFailed",
    "ModelFileError",
    "NotFittedError",
    "PesmithError",
    "PluginError",
    "ReferenceSetupError",
    "SimulationFailed",
    "hookimpl",
    "load_calculator",
    "__version__",
]


def load_calculator(path: str, skin: float = 1.0, dtype: str = "float64") -> "PesmithCalculator":
    """Load a model file written by ``pesmith train`` as an ASE Calculator; ``skin`` (Å, its
    Verlet neighbor list's) and ``dtype`` (``"float64"`` or ``"float32"``) as in
    :class:`pesmith.calculator.PesmithCalculator`."""
    from .calculator import PesmithCalculator

    return PesmithCalculator.from_file(path, skin=skin, dtype=dtype)
