"""Built-in model plugins, registered by name: the registry imports a module (and torch with it)
only when its class is first used."""

from __future__ import annotations

from typing import Callable

from pesmith import hookimpl


@hookimpl
def pesmith_register_models(register: Callable[..., None]) -> None:
    register("committee", "pesmith.plugins.models.committee:Committee",
             "Committee of Behler-Parrinello networks: E = mean over members, with energy and force spread.")
    register("gap", "pesmith.plugins.models.gap:GAPModel",
             "Sparse Gaussian-process regression of atomic energies (GAP), eV, with an energy uncertainty.")
    register("linear", "pesmith.plugins.models.linear:LinearModel",
             "Linear in the features per element: E_i = w_Z . (G_i - mean_Z) / scale_Z + b_Z, eV;")
    register("nn", "pesmith.plugins.models.nn:BehlerParrinello",
             "Behler-Parrinello network: E = sum_i NN_{Z_i}((G_i - mean_Z) / std_Z), eV.")
