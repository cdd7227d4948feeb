"""pesmith.simulate: the one home of simulations with any ASE calculator.

- :mod:`pesmith.simulate.relax`: relaxations (positions, or cell with a stress criterion) and the
  wrapper that turns a failed relaxation into a reason;
- :mod:`pesmith.simulate.md`: Langevin MD on a temperature schedule (a melt-quench is one);
- :mod:`pesmith.simulate.dynamics`: MD runs (NVE, Langevin, Bussi) with trajectory, log and resume;
- :mod:`pesmith.simulate.neb`: climbing-image NEB with a resumable band file;
- :mod:`pesmith.simulate.vacancy`: vacancy formation energies E_f = E[defect] - E[bulk] + mu;
- :mod:`pesmith.simulate.packing`: random periodic packings;
- :mod:`pesmith.simulate.frames`: a structure and its computed energy, forces and stress as one
  frame to write.

Layers: the search, generate and the built-in references call it; it imports only ``pesmith``
(core), never ``pesmith.plugins`` or ``pesmith.search``.
"""
