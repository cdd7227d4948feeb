"""The fit settings every model shares (the generic part of a config's ``training:`` section).

Each model plugin declares its own settings as a subclass (``Model.settings_schema``): the
Behler-Parrinello network adds the Adam loop's keys (:class:`pesmith.training.AdamSettings`),
the linear model its ridge penalty. A config's ``training:`` section is validated against the
chosen model's schema, so an unknown key is an error that lists that model's keys.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

FeatureStorage = Literal["auto", "memory", "disk", "recompute"]


class FitSettings(BaseModel):
    """Loss weights, memory budget and feature storage, common to every model."""

    model_config = ConfigDict(extra="forbid")

    # keys a term of a potential of several terms may set for itself (``terms[k].training``)
    term_keys: ClassVar[tuple[str, ...]] = ()
    # keys whose values are file paths: a relative one is resolved against the config's folder
    path_keys: ClassVar[tuple[str, ...]] = ()

    force_weight: float = Field(0.1, ge=0, description="weight of the force MSE (eV/Å)^2 in the loss")
    stress_weight: float = Field(
        0.0, ge=0, description="weight of the stress MSE (eV/Å^3)^2 in the loss, over periodic structures with stress labels"
    )
    memory_gb: float | None = Field(
        None, gt=0, description="peak memory budget of featurization and fitting, GB (default: half the available memory)"
    )
    feature_storage: FeatureStorage = Field(
        "auto",
        description="where feature derivatives live during the fit: memory (float64), disk (float32 cache beside"
        " the output, read per minibatch), recompute (every minibatch); auto picks memory when it fits the budget,"
        " else disk when the cache takes at most half the free disk space, else recompute",
    )
    core_repulsion: bool = Field(
        True, description="add a ZBL core below each element pair's shortest distance in the training data (pesmith.repulsion)"
    )
    seed: int = Field(0, description="seed of initialisation and minibatch order")
    threads: int | None = Field(
        None, ge=1, description="torch threads for the whole run (default: torch's choice for featurization, 1 for the fit loop)"
    )
    progress: bool = Field(True, description="show progress bars")

    @property
    def needs_jacobian(self) -> bool:
        """Whether the loss has force or stress terms, which need feature derivatives."""
        return self.force_weight > 0 or self.stress_weight > 0
