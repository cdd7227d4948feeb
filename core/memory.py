"""The memory budget of a fit: how large featurization chunks may be and where derivatives live.

Bytes are counted from array sizes, not measured at run time. The one measured constant is
:data:`WORK_FACTOR`: the peak resident memory of ``Descriptor.features_and_jacobian`` on a
chunk, divided by the size of the float64 Jacobian it returns (1,260 mlearn Li/Si atoms, 1
thread: ACSF 2.3, SOAP 2.3, Chebyshev 3.5; rounded up to 4).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .errors import ConfigError
from .fit_settings import FitSettings

GB = 1e9
WORK_FACTOR = 4.0
FLOAT64, FLOAT32 = 8, 4
MAX_CHUNK_BYTES = 1.5 * GB  # larger chunks are not faster, only bigger
DISK_SHARE = 0.5  # a disk cache may take at most this share of the free space (other jobs write too)
LIGHT_BYTES_PER_ATOM = 200  # numbers, offsets, forces, structure index (int64 / float64)
LIGHT_BYTES_PER_EDGE = 48  # edge index (2 x int64) and edge vector (3 x float64)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / GB if sys.platform == "darwin" else peak * 1024 / GB  # bytes on macOS, KiB elsewhere


def available_memory_bytes() -> int:
    """Memory the kernel reports as available (``MemAvailable``), else the physical memory, bytes."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_gb() -> float:
    """Half the available memory, GB: room for the fit and for what else runs on the machine."""
    return 0.5 * available_memory_bytes() / GB


@dataclass
class FeaturePlan:
    """How a fit stores features and derivatives, decided from sizes before featurization."""

    storage: str  # "memory", "disk", "recompute" or "none" (no force or stress term)
    memory_gb: float  # the budget, GB
    chunk_edges: int  # most edges per featurization chunk and per minibatch part
    n_structures: int
    n_atoms: int
    n_edges: int
    n_features: int
    jacobian_gb: float  # the whole set's derivatives in float64, GB
    resident_gb: float  # features and labels kept in memory for the whole fit, GB

    def as_dict(self) -> dict:
        return asdict(self)


def plan_features(
    edges_per_structure: Sequence[int],
    atoms_per_structure: Sequence[int],
    n_features: int,
    settings: FitSettings,
    cache_dir: Path | None,
    where: str = "the training data",
) -> FeaturePlan:
    """Choose chunk size and derivative storage for structures of the given sizes.

    Raises
    ------
    ConfigError
        When ``settings.memory_gb`` cannot hold the features of the whole set plus one chunk
        of the largest structure; the message gives the smallest budget that works.
    """
    budget = (settings.memory_gb or default_memory_gb()) * GB
    n_atoms, n_edges = int(sum(atoms_per_structure)), int(sum(edges_per_structure))
    row_bytes = n_features * 3 * FLOAT64  # one edge's derivatives
    resident = n_atoms * (n_features * FLOAT64 + LIGHT_BYTES_PER_ATOM) + n_edges * LIGHT_BYTES_PER_EDGE
    jacobian64 = n_edges * row_bytes
    largest = max(edges_per_structure, default=0)
    needs_jacobian = settings.needs_jacobian
    minimum = resident + (WORK_FACTOR * largest * row_bytes if needs_jacobian else 0)
    if minimum > budget:
        raise ConfigError(
            f"training.memory_gb = {budget / GB:.3g} is too small for {where}: its features take"
            f" {resident / GB:.3g} GB and its largest structure's derivatives {WORK_FACTOR * largest * row_bytes / GB:.3g} GB"
            f" while computed; set memory_gb to at least {_round_up(minimum / GB)}"
        )
    storage = settings.feature_storage
    if not needs_jacobian:
        storage = "none"
    elif storage == "auto":
        if resident + jacobian64 + WORK_FACTOR * largest * row_bytes <= budget:
            storage = "memory"
        elif cache_dir is not None and n_edges * n_features * 3 * FLOAT32 <= DISK_SHARE * _disk_free(cache_dir):
            storage = "disk"
        else:
            storage = "recompute"
    elif storage == "disk" and cache_dir is None:
        raise ConfigError("training.feature_storage = disk needs a folder for the cache (the model's output folder)")
    left = budget - resident - (jacobian64 if storage == "memory" else 0)
    if storage == "memory" and left < WORK_FACTOR * largest * row_bytes:
        raise ConfigError(
            f"training.feature_storage = memory needs {_round_up((resident + jacobian64 + WORK_FACTOR * largest * row_bytes) / GB)} GB"
            f" for {where} (memory_gb is {budget / GB:.3g}); raise memory_gb or use feature_storage: auto"
        )
    chunk_bytes = min(left, MAX_CHUNK_BYTES) / WORK_FACTOR
    chunk_edges = max(int(chunk_bytes // row_bytes), largest, 1)
    return FeaturePlan(
        storage=storage,
        memory_gb=budget / GB,
        chunk_edges=chunk_edges,
        n_structures=len(edges_per_structure),
        n_atoms=n_atoms,
        n_edges=n_edges,
        n_features=n_features,
        jacobian_gb=jacobian64 / GB,
        resident_gb=resident / GB,
    )


def _disk_free(folder: Path) -> int:
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _round_up(gb: float) -> str:
    return f"{max(gb * 1.05, 0.01):.2g}"
