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
    register("soap_quip", "pesmith.plugins.descriptors.soap_quip:SOAPQuip",
             "SOAP power spectrum equal to QUIP's ``soap`` descriptor (default ``EQUISPACED_GAUSS`` basis).")
    register("distance_2b", "pesmith.plugins.descriptors.distance_2b:Distance2b",
             "GAP's 2-body term: half sums of smooth-cutoff Gaussians of the pair distances (Å), per neighbor element.")
    register("angle_3b", "pesmith.plugins.descriptors.angle_3b:Angle3b",
             "GAP's 3-body term: sums over neighbor pairs of a Gaussian product basis in (r_ij + r_ik, (r_ij - r_ik)^2, r_jk), per neighbor-element pair.")
    register("bispectrum", "pesmith.plugins.descriptors.bispectrum:Bispectrum",
             "SNAP's bispectrum components, equal to LAMMPS ``compute sna/atom``.")
    register("selected", "pesmith.plugins.descriptors.selected:Selected",
             "A subset of another descriptor's features, in the listed order.")
