"""The pesmith error hierarchy.

Every error a user can cause derives from :class:`PesmithError`. Its message says what was
wrong, where (file, key, structure index) and what to do; the CLI prints it as one line and
exits with code 2.
"""

from __future__ import annotations


class PesmithError(Exception):
    """Base class of every error pesmith raises on bad input or bad setup."""


class ConfigError(PesmithError):
    """A configuration file or a hyper-parameter is invalid."""


class PluginError(PesmithError):
    """A plugin is unknown, fails to import, or two plugins claim one name."""


class DataError(PesmithError):
    """A structure file or its labels (energy, forces, stress) are missing or invalid."""


class ModelFileError(PesmithError):
    """A model file is missing, corrupt, foreign or written by a newer pesmith."""


class NotFittedError(PesmithError):
    """A model was used before :meth:`fit` was called."""


class ReferenceSetupError(PesmithError):
    """A reference calculator cannot be set up (bad parameters, missing program)."""


class CalculationFailed(PesmithError):
    """A calculation failed for one structure while it ran (not a setup error): callers record
    it as a failed label or an invalid candidate, never as a crash of the run."""


class LabelingFailed(CalculationFailed):
    """A reference calculation failed for one structure (no SCF convergence, crash, time-out)."""


class SimulationFailed(CalculationFailed):
    """A simulation of one structure failed: an MD that diverged or stopped early, a relaxation
    that did not converge or whose calculator failed."""
