"""The search's built-in baseline: plain melt-quench sampling at equal reference cost.

At every composition the search visits, ``n`` random cells of the same composition and size
(:func:`pesmith.simulate.packing.random_cell`, at the volume interpolated between the hull's
crystals) are melt-quenched and relaxed with the model (:func:`pesmith.search.anneal.anneal`)
and then relaxed with the reference, ``n`` being the number of reference relaxations the search
spent there. What the search finds beyond the lowest of these is what the GA and its anneals
add (Artrith, Urban & Ceder 2018 validated their GA phase diagram against MD sampling the same
way). Baseline labels are kept out of ``reference.db``: the search's models never train on them.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from pydantic import Field

from pesmith.simulate.md import MeltQuenchSettings
from pesmith.simulate.packing import random_cell

from .anneal import SEED_KEY, QuenchSettings


class BaselineSettings(QuenchSettings):
    """Melt-quench sampling beside the search (``enabled: true``): per composition, as many
    reference relaxations as the search spent there, of random cells melt-quenched and relaxed
    with the model."""

    enabled: bool = Field(False, description="sample the baseline at every composition of the path")
    melt_quench: MeltQuenchSettings = MeltQuenchSettings(melt_K=2000.0, melt_ps=0.2, quench_ps=0.4, final_K=300.0, timestep_fs=2.0, interval=50)
    volume_per_atom: float | None = Field(None, gt=5, lt=60, description="Å^3; default: interpolated between the hull's Li and Si crystals")
    draws: int = Field(2, ge=1, le=20, description="melt-quenches per reference relaxation at most: a model run that fails is replaced by the next")


def sample_cells(counts: dict[str, int], volume_per_atom: float, n: int, rng: np.random.Generator) -> list[Atoms]:
    """``n`` random cells of ``counts`` atoms at ``volume_per_atom`` (Å^3), each with its own
    seed in ``info`` for the mapped melt-quench."""
    cells = []
    for _ in range(n):
        atoms = random_cell(counts, volume_per_atom, rng)
        atoms.info[SEED_KEY] = int(rng.integers(2**62))
        cells.append(atoms)
    return cells
