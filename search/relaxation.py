"""Relaxations of the search: GA fitness with the model, confirmation with the reference
(both with :func:`pesmith.simulate.relax.relax`).

Both are functions of one structure that the search maps over workers
(:func:`pesmith.parallel.parallel_map`), so they are module-level and take picklable
arguments. They never raise for a bad candidate: a crash, a non-converged relaxation or a time
limit comes back as a result with a ``reason``; only the caller (rank 0) writes files.
"""

from __future__ import annotations

import os
from functools import lru_cache

from ase import Atoms
from ase.calculators.calculator import Calculator

from pesmith.reference import Reference
from pesmith.simulate.relax import Relaxed, RelaxSettings, relax, relaxed_or_reason
from pesmith.structures import has_full_cell


def model_calculator(model_path: str, threads: int) -> Calculator:
    """The pesmith calculator of a model file, loaded once per process and file version (worker
    processes outlive a map, and a resumed step may write its model file again)."""
    stat = os.stat(model_path)
    return _loaded_calculator(model_path, stat.st_mtime_ns, stat.st_size, threads)


@lru_cache(maxsize=2)
def _loaded_calculator(model_path: str, mtime_ns: int, size: int, threads: int) -> Calculator:
    import torch

    from pesmith import load_calculator

    torch.set_num_threads(threads)
    return load_calculator(model_path)


def relax_with_model(model_path: str, settings: RelaxSettings, threads: int, atoms: Atoms) -> Relaxed:
    """GA fitness: relax ``atoms`` with the model of ``model_path``; failures as a reason."""

    def compute(structure: Atoms) -> Relaxed:
        return relax(structure, model_calculator(model_path, threads), settings)

    return relaxed_or_reason(lambda: model_calculator(model_path, threads), compute, atoms, settings.time_limit)


def relax_with_reference(reference: Reference, settings: RelaxSettings, frame_interval: int, atoms: Atoms) -> Relaxed:
    """Confirmation: relax ``atoms`` with the reference, keeping labeled frames every
    ``frame_interval`` steps when the reference is an ASE calculator (else the final structure only)."""
    return relaxed_or_reason(
        reference.prepare, lambda structure: _reference_relax(reference, settings, frame_interval, structure), atoms, settings.time_limit
    )


def _reference_relax(reference: Reference, settings: RelaxSettings, frame_interval: int, atoms: Atoms) -> Relaxed:
    if reference.has_calculator():
        return relax(atoms, reference.make_calculator(), settings, frame_interval)
    if settings.relax == "none":
        energy, forces, stress = reference.label(atoms)
        return Relaxed(atoms=atoms.copy(), energy=energy, forces=forces, stress=stress)
    relaxed = reference.relax(atoms, fmax=settings.fmax, steps=settings.steps, cell=settings.relax == "cell")
    stress = relaxed.get_stress(voigt=True) if has_full_cell(relaxed) else None
    final = Atoms(relaxed.numbers, positions=relaxed.positions, cell=relaxed.cell, pbc=relaxed.pbc)
    return Relaxed(atoms=final, energy=float(relaxed.get_potential_energy()), forces=relaxed.get_forces(), stress=stress)
