"""Built-in descriptor plugins, registered by name: the registry imports a module (and torch
with it) only when its class is first used."""

from __future__ import annotations

from typing import Callable

from pesmith import hookimpl


@hookimpl
def pesmith_register_descriptors(register: Callable[..., None]) -> None:
    register("acsf", "pesmith.plugins.descriptors.acsf:ACSF",
             "Behler's atom-centered symmetry functions: radial G2, angular G4 and G5.")
    register("chebyshev", "pesmith.plugins.descriptors.chebyshev:Chebyshev",
             "Chebyshev expansion of the radial and angular distribution functions (aenet's descriptor).")
    register("soap", "pesmith.plugins.descriptors.soap:SOAP",
             'SOAP power spectrum with the orthonormal GTO radial basis (DScribe\'s ``rbf="gto"``).')
    register("distance_2b", "pesmith.plugins.descriptors.distance_2b:Distance2b",
             "GAP's 2-body term: half sums of smooth-cutoff Gaussians of the pair distances (Å), per neighbor element.")
