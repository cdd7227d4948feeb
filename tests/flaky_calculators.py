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


GATE_WAIT_S = 300.0  # longest a held calculation waits for its gate file before it goes on anyway


class FlakyMorse(MorseCalculator):
    """Morse energies, but raises on ``fail_formula``, sleeps ``sleep_s`` (s) on ``slow_formula``
    and ``delay_s`` (s) on every structure; with ``record`` (a file path) each calculation
    appends the structure's hash to that file. With ``record``, ``hold_after`` (n) and ``gate``
    (a file path), a calculation recorded after the first n waits until ``gate`` exists (at most
    :data:`GATE_WAIT_S`): a test then knows that exactly n structures were computed."""

    default_parameters = {
        **MorseCalculator.default_parameters,
        "fail_formula": None,
        "slow_formula": None,
        "sleep_s": 0.0,
        "delay_s": 0.0,
        "record": None,
        "hold_after": None,
        "gate": None,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        formula = atoms.get_chemical_formula()
        if self.parameters.record:
            line = structure_hash(atoms) + "\n"
            with open(self.parameters.record, "a") as record:  # one short line: an atomic append
                record.write(line)
            if self.parameters.hold_after is not None:
                with open(self.parameters.record) as record:
                    position = record.readlines().index(line) + 1
                if position > self.parameters.hold_after:
                    wait_for_file(self.parameters.gate, GATE_WAIT_S)
        time.sleep(self.parameters.delay_s)
        if formula == self.parameters.fail_formula:
            raise CalculationFailed(f"SCF did not converge for {formula} (deliberate)")
        if formula == self.parameters.slow_formula:
            time.sleep(self.parameters.sleep_s)
        super().calculate(atoms, properties, system_changes)


def wait_for_file(path: str, timeout_s: float) -> None:
    """Return once ``path`` exists, or after ``timeout_s`` (s)."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


class DyingMorse(MorseCalculator):
    """Morse energies, but the process exits abruptly (like a segfault) on ``die_formula``."""

    default_parameters = {**MorseCalculator.default_parameters, "die_formula": None}

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if atoms.get_chemical_formula() == self.parameters.die_formula:
            os._exit(11)
        super().calculate(atoms, properties, system_changes)
