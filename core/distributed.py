"""Data-parallel training over processes with ``torch.distributed`` (gloo): the process group of
a ``pesmith train`` run and the sums the Adam loop adds up over it.

A run is data-parallel when ``torchrun`` started it (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT`` in the environment) or ``mpiexec -n K`` did, without
``python -m mpi4py.futures`` (see :func:`pesmith.parallel.plain_mpi_launch`), with K > 1. Under
``mpiexec`` the rank and the size come from MPI and rank 0 picks a free TCP port on 127.0.0.1
(:func:`pesmith.parallel.mpi_rendezvous`; every rank on this machine).

Every rank featurizes a block of the structures and receives the others' blocks
(:func:`balanced_blocks`, :func:`broadcast_blocks`), so it holds the whole feature set. The
minibatches come in the same order on every rank (one seed); each rank computes the loss of
its :func:`shard` of a minibatch, and the gradients
(:func:`all_reduce_gradients`) and error sums (:func:`all_reduce_sums`) are summed over the
ranks before the step, so the step is the one-process step up to the order of the additions.
Only rank 0 writes files, prints and logs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError, DataError, PesmithError
from .parallel import mpi_rendezvous, plain_mpi_launch, share_cores, threads_per_worker

BACKEND = "gloo"
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# the keys of pesmith.loss.error_sums: sums of squared errors and the counts they average over
SUM_KEYS = ("energy", "n_energy", "force", "n_force", "stress", "n_stress")
T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run: ``rank`` in ``0 .. size - 1``."""

    rank: int
    size: int

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the one that writes files, prints and logs."""
        return self.rank == 0


def current_ranks() -> Ranks | None:
    """The ranks of the initialised process group, or ``None`` in a one-process run."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Ranks(dist.get_rank(), dist.get_world_size())


def launched_ranks() -> tuple[Ranks, str] | None:
    """The ranks a launcher started this process among, with the ``init_method`` of the process
    group, or ``None`` for one process. ``torchrun``'s variables are read first; for a plain
    ``mpiexec`` launch, MPI is asked (mpi4py), and rank 0 chooses the port.

    Raises
    ------
    ConfigError
        ``mpiexec`` started several ranks but mpi4py is not installed.
    """
    if all(os.environ.get(variable) for variable in TORCHRUN_VARIABLES):
        size = int(os.environ["WORLD_SIZE"])
        return (Ranks(int(os.environ["RANK"]), size), "env://") if size > 1 else None
    launch = plain_mpi_launch()
    if launch is None:
        return None
    try:
        rank, size, port = mpi_rendezvous()
    except ImportError:
        raise ConfigError(
            f"mpiexec started {launch[0]} ranks, and training over ranks needs mpi4py to set them up: pip install mpi4py,"
            " or start the run with torchrun"
        ) from None
    return Ranks(rank, size), f"tcp://127.0.0.1:{port}"


@contextmanager
def process_group() -> Iterator[Ranks | None]:
    """Within the block, the gloo process group of the ranks a launcher started
    (:func:`launched_ranks`), destroyed at the end; ``None`` for one process. Each rank runs
    ``cpu_count // size`` threads (at least 1: :func:`pesmith.parallel.share_cores`), so
    processes x threads do not exceed the cores. A group initialised before is used as it is.
    """
    existing = current_ranks()
    if existing is not None:
        yield existing
        return
    launched = launched_ranks()
    if launched is None:
        yield None
        return
    ranks, init_method = launched
    dist.init_process_group(BACKEND, init_method=init_method, rank=ranks.rank, world_size=ranks.size)
    share_cores(ranks.size)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def rank_threads(requested: int, ranks: Ranks | None) -> int:
    """``requested`` torch threads, at most this rank's share of the cores under ``ranks``."""
    return requested if ranks is None else min(requested, threads_per_worker(ranks.size))


def shard(rows: torch.Tensor, ranks: Ranks | None) -> torch.Tensor:
    """This rank's share of ``rows`` (a minibatch's structure positions, ``(n,)``): every
    ``size``-th from position ``rank``, so the shards differ by at most one structure."""
    return rows if ranks is None else rows[ranks.rank :: ranks.size]


def check_shareable(n_structures: int, ranks: Ranks | None, source: str) -> None:
    """Every rank needs a training structure of its own.

    Raises
    ------
    DataError
        ``ranks`` has more ranks than ``n_structures``; ``source`` names the data.
    """
    if ranks is not None and ranks.size > n_structures:
        raise DataError(
            f"{ranks.size} ranks cannot share {n_structures} training structure(s) of {source}: each rank needs at least one;"
            f" use fewer ranks (at most {n_structures}, e.g. mpiexec -n {n_structures})"
        )


def all_reduce_sums(sums: dict[str, float], ranks: Ranks | None) -> dict[str, float]:
    """Error sums (see :func:`pesmith.loss.error_sums`: squared errors in (eV/atom)^2,
    (eV/Å)^2, (eV/Å^3)^2 and their counts) summed over the ranks; a term no rank has is left
    out, as in one process. Without ``ranks``, ``sums`` itself."""
    if ranks is None:
        return sums
    values = torch.tensor([float(sums.get(key, 0.0)) for key in SUM_KEYS], dtype=torch.float64)  # (6,)
    dist.all_reduce(values)
    total = dict(zip(SUM_KEYS, values.tolist()))
    reduced: dict[str, float] = {}
    for term in ("energy", "force", "stress"):
        count = round(total[f"n_{term}"])
        if count or term == "energy":
            reduced[term], reduced[f"n_{term}"] = total[term], count
    return reduced


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum each parameter's gradient over the ranks, in place, in one all-reduce. A parameter
    that no rank has a gradient for keeps none, so the optimizer skips it as in one process."""
    parameters = list(parameters)
    flat = [p.grad.reshape(-1).to(torch.float64) if p.grad is not None else torch.zeros(p.numel(), dtype=torch.float64) for p in parameters]
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float64)  # (n_parameters,)
    buffer = torch.cat(flat + [present])
    dist.all_reduce(buffer)
    present = buffer[-len(parameters) :]
    offset = 0
    for index, parameter in enumerate(parameters):
        size = parameter.numel()
        if present[index] > 0:
            parameter.grad = buffer[offset : offset + size].view_as(parameter).to(parameter.dtype).clone()
        offset += size


def balanced_blocks(weights: Sequence[int], parts: int) -> list[range]:
    """``parts`` consecutive ranges of the positions of ``weights`` (e.g. edges per structure)
    with about equal sums; some are empty when there are fewer items than parts."""
    cumulative = np.cumsum(np.asarray(weights, dtype=np.int64))
    total = int(cumulative[-1]) if len(cumulative) else 0
    bounds = [0] + [int(np.searchsorted(cumulative, total * k / parts, side="right")) for k in range(1, parts)] + [len(weights)]
    return [range(bounds[k], max(bounds[k], bounds[k + 1])) for k in range(parts)]


def run_on_every_rank(fn: Callable[[], T], ranks: Ranks) -> T:
    """``fn()`` on this rank; if it raised a :class:`~pesmith.errors.PesmithError` on any rank,
    the first such error (by rank) is raised on every rank, so no rank waits for one that failed
    and rank 0 can report it."""
    result, error = None, None
    try:
        result = fn()
    except PesmithError as exc:
        error = exc
    errors: list[PesmithError | None] = [None] * ranks.size
    dist.all_gather_object(errors, error)
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]
    return result


def broadcast_blocks(mine: torch.Tensor, shapes: Sequence[tuple[int, ...]], ranks: Ranks) -> list[torch.Tensor]:
    """Every rank's block of one array, in rank order: this rank's ``mine`` and, from each other
    rank r, a tensor of ``shapes[r]`` (known to all ranks) with ``mine``'s dtype."""
    blocks = []
    for rank, shape in enumerate(shapes):
        block = mine if rank == ranks.rank else torch.empty(shape, dtype=mine.dtype)
        if block.numel():
            dist.broadcast(block, src=rank)
        blocks.append(block)
    return blocks
