"""An ASE calculator that misbehaves on chosen structures, for labeling robustness tests.

Importable as ``flaky_calculators.FlakyMorse`` when ``tests/`` is on the path (pytest puts it
there; subprocesses get it through PYTHONPATH).
"""

from __future__ import annotations

import os
import time

from ase.calculators.calculator import CalculationFailed

from pesmith.plugins.references.morse import MorseCalculator
from pesmith.reference_db import structure_hash


class FlakyMorse(MorseCalculator):
    """Morse energies, but raises on ``fail_formula``, sleeps ``sleep_s`` (s) on ``slow_formula``
    and ``delay_s`` (s) on every structure; with ``record`` (a file path) each calculation
    appends the structure's hash to that file."""

    default_parameters = {
        **MorseCalculator.default_parameters,
        "fail_formula": None,
        "slow_formula": None,
        "sleep_s": 0.0,
        "delay_s": 0.0,
        "record": None,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        formula = atoms.get_chemical_formula()
        if self.parameters.record:
            with open(self.parameters.record, "a") as record:  # one short line: an atomic append
                record.write(structure_hash(atoms) + "\n")
        time.sleep(self.parameters.delay_s)
        if formula == self.parameters.fail_formula:
            raise CalculationFailed(f"SCF did not converge for {formula} (deliberate)")
        if formula == self.parameters.slow_formula:
            time.sleep(self.parameters.sleep_s)
        super().calculate(atoms, properties, system_changes)


class DyingMorse(MorseCalculator):
    """Morse energies, but the process exits abruptly (like a segfault) on ``die_formula``."""

    default_parameters = {**MorseCalculator.default_parameters, "die_formula": None}

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if atoms.get_chemical_formula() == self.parameters.die_formula:
            os._exit(11)
        super().calculate(atoms, properties, system_changes)
