"""Any ASE calculator as a reference, named by import path: VASP, Quantum ESPRESSO, CP2K, ..."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from ase.calculators.calculator import Calculator

from pesmith.errors import ReferenceSetupError
from pesmith.reference import package_version

from .base import CalculatorReference


def import_calculator(path: str) -> type:
    """The class at ``"package.module.Class"`` or ``"package.module:Class"``."""
    module_name, _, name = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ReferenceSetupError(f"ase: calculator {path!r} is not an import path; write e.g. 'ase.calculators.vasp.Vasp'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReferenceSetupError(f"ase: cannot import module {module_name!r} of calculator {path!r}: {exc}") from exc
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ReferenceSetupError(f"ase: module {module_name!r} has no calculator class {name!r} (calculator {path!r})")
    return cls


def unknown_keywords(cls: type, keywords: Mapping[str, Any]) -> tuple[list[str], list[str]] | None:
    """``(unknown, valid)`` keywords of ``cls``, or ``None`` when ``cls`` does not declare them.

    The valid keywords are the constructor's named arguments plus ``default_parameters``; a
    constructor with ``**kwargs`` and no ``default_parameters`` accepts anything.
    """
    parameters = inspect.signature(cls.__init__).parameters
    named = [n for n, p in parameters.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    declared = dict(getattr(cls, "default_parameters", None) or {})
    if takes_kwargs and not declared:
        return None
    valid = sorted(set(named) | set(declared))
    return [key for key in keywords if key not in valid], valid


class AseReference(CalculatorReference):
    """Any ASE calculator by import path and keyword arguments (no code needed).

    Parameters
    ----------
    calculator
        Import path of the calculator class, e.g. ``ase.calculators.vasp.Vasp``.
    parameters
        Keyword arguments of the calculator, in its own units (VASP ``encut`` in eV, ...).
    periodic
        The method needs a full 3D cell (plane waves); labeling checks the structures first.
    check_keywords
        Reject keywords that the calculator does not declare (constructor arguments and
        ``default_parameters``); switch off for calculators that validate their own keywords.
    """

    def __init__(
        self,
        calculator: str,
        parameters: Mapping[str, Any] | None = None,
        periodic: bool = False,
        check_keywords: bool = True,
    ):
        self.calculator = calculator
        self.parameters = dict(parameters or {})
        self.periodic = bool(periodic)
        self.check_keywords = bool(check_keywords)
        self._cls = import_calculator(calculator)
        if not issubclass(self._cls, Calculator):
            raise ReferenceSetupError(f"ase: {calculator!r} is not an ASE Calculator subclass")
        checked = unknown_keywords(self._cls, self.parameters) if check_keywords else None
        if checked and checked[0]:
            raise ReferenceSetupError(
                f"ase: {calculator} has no keyword {', '.join(map(repr, checked[0]))}; valid: {', '.join(checked[1])}"
                " (set check_keywords: false if the calculator validates its own keywords)"
            )

    def make_calculator(self) -> Calculator:
        return self._cls(**self.parameters)

    def get_config(self) -> dict[str, Any]:
        return {
            "calculator": self.calculator,
            "parameters": self.parameters,
            "periodic": self.periodic,
            "check_keywords": self.check_keywords,
        }

    def code_version(self) -> str:
        return package_version(self._cls.__module__)
