"""The options of :class:`pesmith.calculator.PesmithCalculator` as a config section, e.g.
``calculator: {skin: 1.0, dtype: float32}`` beside an ``md:`` section (no torch import here, so
config schemas and the command line can use it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["float64", "float32"]
DEFAULT_SKIN = 1.0  # Å, the margin of the calculator's Verlet neighbor list


class CalculatorSettings(BaseModel):
    """How a model file is evaluated: the Verlet list's ``skin`` (Å) and the ``dtype`` of the
    descriptors and models (float32 is opt-in; results are float64 either way)."""

    model_config = ConfigDict(extra="forbid")

    skin: float = Field(DEFAULT_SKIN, ge=0, description="Å; pairs kept within cutoff + skin, searched again after a move of skin / 2 (0: every call)")
    dtype: Precision = Field("float64", description="float32: descriptors and models in float32 (energies ~1e-7 eV/atom apart on the tests' Si NN)")
