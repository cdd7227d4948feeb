"""pesmith.analysis: trajectories in, arrays out.

- :mod:`pesmith.analysis.rdf`: partial radial distribution functions g_ab(r) and coordination
  numbers (integral to the first minimum after the first peak);
- :mod:`pesmith.analysis.diffusion`: mean squared displacements per species, diffusion
  coefficients with an error bar, Arrhenius fits;
- :mod:`pesmith.analysis.vibrations`: velocity autocorrelation -> vibrational density of states;
- :mod:`pesmith.analysis.kmc`: rejection-free kinetic Monte Carlo of hops on a site network;
- :mod:`pesmith.analysis.sites`: sites of a mobile species (Li) from an MD trajectory, with the
  hops seen between them (the nodes of an amorphous kMC network).

Layers: numpy, scipy and ASE only; of pesmith it imports nothing but :mod:`pesmith.errors`
(never torch, ``pesmith.plugins``, ``pesmith.search`` or ``pesmith.simulate``). Units: Å, fs,
eV, K unless a key name says otherwise.
"""
