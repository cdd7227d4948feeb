"""GFN1-xTB tight binding through tblite's ASE calculator, periodic (Γ-point).

References
----------
S. Grimme, C. Bannwarth, P. Shushkov, "A robust and accurate tight-binding quantum chemical
method for structures, vibrational frequencies, and noncovalent interactions of large molecular
systems parametrized for all spd-block elements (Z = 1–86)", J. Chem. Theory Comput. 13, 1989
(2017), doi:10.1021/acs.jctc.7b00118. tblite: https://github.com/tblite/tblite
"""

from __future__ import annotations

from typing import Any

from ase.calculators.calculator import Calculator

from pesmith.errors import ReferenceSetupError
from pesmith.reference import package_version

from .base import CalculatorReference

METHODS = ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")


class XTB(CalculatorReference):
    """GFN1-xTB (tblite), periodic, Γ point; electronic temperature in K. Li and Si cells only (docs/references.md).

    The SCF of the Li–Si compounds (Li12Si7, Li13Si4, Li15Si4) did not converge with any setting
    tried; such structures become failed labels.

    Parameters
    ----------
    method
        One of GFN1-xTB (default), GFN2-xTB, IPEA1-xTB.
    electronic_temperature
        Fermi smearing temperature, K.
    accuracy
        tblite's numerical accuracy factor (smaller is tighter).
    max_iterations
        SCF iterations before the structure counts as failed.
    mixer_damping
        Broyden mixer damping (smaller is more cautious).
    """

    periodic = True

    def __init__(
        self,
        method: str = "GFN1-xTB",
        electronic_temperature: float = 1000.0,
        accuracy: float = 1.0,
        max_iterations: int = 250,
        mixer_damping: float = 0.4,
    ):
        if method not in METHODS:
            raise ReferenceSetupError(f"xtb: unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if electronic_temperature <= 0 or accuracy <= 0 or max_iterations < 1 or not 0 < mixer_damping <= 1:
            raise ReferenceSetupError(
                "xtb: electronic_temperature (K) and accuracy must be positive, max_iterations >= 1 and"
                f" mixer_damping in (0, 1]; got {electronic_temperature}, {accuracy}, {max_iterations}, {mixer_damping}"
            )
        try:
            import tblite.ase  # noqa: F401
        except ImportError as exc:
            raise ReferenceSetupError(f"xtb needs tblite: pip install 'pesmith[xtb]' ({exc})") from exc
        self.method = method
        self.electronic_temperature = float(electronic_temperature)
        self.accuracy = float(accuracy)
        self.max_iterations = int(max_iterations)
        self.mixer_damping = float(mixer_damping)

    def make_calculator(self) -> Calculator:
        from tblite.ase import TBLite

        return TBLite(verbosity=0, **self.get_config())

    def get_config(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "electronic_temperature": self.electronic_temperature,
            "accuracy": self.accuracy,
            "max_iterations": self.max_iterations,
            "mixer_damping": self.mixer_damping,
        }

    def code_version(self) -> str:
        return package_version("tblite")
