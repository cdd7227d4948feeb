"""Map a function over items on local worker processes or MPI ranks.

One code path for labeling and the search. Results always come back to the calling process
(rank 0 under MPI), which alone writes files and databases. Under
``mpiexec -n N python -m mpi4py.futures -m pesmith ...`` the N - 1 other ranks are the workers
(:class:`mpi4py.futures.MPIPoolExecutor`); otherwise ``workers`` local processes
(:class:`concurrent.futures.ProcessPoolExecutor`); ``workers=1`` runs in-process.

Local workers start from a ``forkserver``, not by forking the caller: the caller may already run
torch or OpenMP threads (training, MD), and a forked copy of such a process can deadlock. What is
mapped is therefore pickled: a module-level function, or a :func:`functools.partial` of one with
picklable arguments (a reference object, a time limit). The children get the caller's
``sys.path``. The forkserver starts once per process and preloads the module of the first
function mapped (torch and pesmith imported once, about 3 s on 2 cores, instead of once per
worker and pool: measured 0.07 s for a later pool of 2 instead of 5-8 s).

Each local worker runs ``cpu_count // workers`` torch, OpenMP and BLAS threads (:func:`share_cores`).
Without the BLAS limit a search started without ``OMP_NUM_THREADS=1`` ran two OpenBLAS threads
in each of 2 workers on 2 cores: 6 model anneals of 15-atom cells took 45 s instead of 15 s.
The local pool is kept from one map to the next (one per worker count, until the process
exits or a worker dies), so what a worker loaded and cached for one map (a model file's
calculator, a reference's network) serves the next: the search maps once per GA generation.

Local workers ignore SIGINT (Ctrl-C reaches the whole foreground process group; the caller
decides, and ends them with :func:`stop_local_workers`), and exit when the caller is gone, however
it ended (``kill -9`` included): each holds the read end of a pipe whose only write end is the
caller's, and a thread in the worker ends its process when that pipe reports end of file.

Inside a worker, :func:`call_with_time_limit` runs one calculation in a forked child that is
killed when its time limit passes (a calculation inside a C or Fortran library cannot be
interrupted in-thread).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Callable, Iterable, Iterator, NamedTuple, TypeVar

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .errors import LabelingFailed

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
T = TypeVar("T")
R = TypeVar("R")


def mpi_workers() -> int:
    """Number of MPI worker ranks when running under ``python -m mpi4py.futures``, else 0.

    mpi4py is imported only when ``mpi4py.futures`` is already loaded, so a plain run never
    initialises MPI.
    """
    if "mpi4py.futures" not in sys.modules:
        return 0
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size() - 1


# Set by MPI launchers in each rank they start: (world size, rank) variables of Open MPI, MPICH's
# and Intel MPI's Hydra (PMI), MVAPICH.
LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
    ("PMI_SIZE", "PMI_RANK"),
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),
)


def plain_mpi_launch() -> tuple[int, int] | None:
    """``(size, rank)`` when this process is one of several MPI ranks started without
    ``python -m mpi4py.futures`` (``mpiexec -n 3 pesmith ...``: every rank would run the whole
    command), else ``None``. Read from the launcher's environment; mpi4py is not imported."""
    if "mpi4py.futures" in sys.modules:
        return None
    for size_variable, rank_variable in LAUNCHER_VARIABLES:
        try:
            size = int(os.environ.get(size_variable, ""))
        except ValueError:
            continue
        if size > 1:
            try:
                rank = int(os.environ.get(rank_variable, "0"))
            except ValueError:
                rank = 0
            return size, rank
    return None


def mpi_rendezvous() -> tuple[int, int, int]:
    """``(rank, size, port)`` of this process among the MPI ranks of a plain ``mpiexec`` launch:
    rank 0 asks the system for a free TCP port on 127.0.0.1 and sends it to every rank, where
    the ranks of ``torch.distributed`` meet (:func:`pesmith.distributed.process_group`).
    Imports mpi4py, which initialises MPI.

    Raises
    ------
    ImportError
        mpi4py is not installed.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    port = None
    if comm.Get_rank() == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    return comm.Get_rank(), comm.Get_size(), comm.bcast(port, root=0)


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int = 1,
    progress: bool = False,
    description: str = "",
) -> Iterator[tuple[int, R]]:
    """Yield ``(index, fn(items[index]))`` as each call finishes (completion order).

    Parameters
    ----------
    fn
        A picklable function of one item; its exceptions propagate to the caller, so a caller
        that must survive failures catches them inside ``fn``.
    workers
        Local processes when not under MPI (``1``: run in this process, in order).
    progress
        Show a tqdm progress bar on stderr.
    """
    items = list(items)
    bar = tqdm(total=len(items), desc=description, disable=not progress, unit="item")
    with bar:
        if mpi_workers() > 0:
            from mpi4py.futures import MPIPoolExecutor

            with MPIPoolExecutor() as executor:
                yield from _completed(executor, fn, items, bar)
        elif workers <= 1 or len(items) <= 1:
            for index, item in enumerate(items):
                yield index, fn(item)
                bar.update()
        else:
            try:
                yield from _completed(_local_pool(fn, workers), fn, items, bar)
            except BrokenProcessPool:
                _drop_pool(workers)  # the next map starts a new one
                raise


def _completed(executor: Executor, fn: Callable, items: list, bar: tqdm) -> Iterator[tuple[int, object]]:
    futures = {executor.submit(fn, item): index for index, item in enumerate(items)}
    try:
        for future in as_completed(futures):
            bar.update()
            yield futures[future], future.result()
    finally:
        for future in futures:
            future.cancel()


class _Pool(NamedTuple):
    executor: ProcessPoolExecutor
    caller_alive: Connection  # write end of the workers' liveness pipe: closed, the workers exit


_POOLS: dict[int, _Pool] = {}


def _local_pool(fn: Callable, workers: int) -> ProcessPoolExecutor:
    """The kept pool of ``workers`` forkserver processes (started on first use)."""
    if workers not in _POOLS:
        context = _forkserver(fn)
        watched, caller_alive = context.Pipe(duplex=False)
        executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(workers, watched)
        )
        _POOLS[workers] = _Pool(executor, caller_alive)
    return _POOLS[workers].executor


def _drop_pool(workers: int) -> None:
    """Forget the pool of ``workers`` and end its processes without waiting for their tasks."""
    pool = _POOLS.pop(workers)
    pool.caller_alive.close()  # the workers exit on their own (see _exit_with_caller)
    pool.executor.shutdown(wait=False, cancel_futures=True)


def stop_local_workers() -> None:
    """End every kept local worker process now, running tasks included (after Ctrl-C: what they
    were computing is lost, and a resumed run computes it again). A later map starts a new pool."""
    for workers in list(_POOLS):
        _drop_pool(workers)


def _start_worker(workers: int, caller_alive: Connection) -> None:
    """Initializer of a local worker: SIGINT ignored (the caller handles Ctrl-C), its share of
    the cores (:func:`share_cores`), and an exit as soon as the caller is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    share_cores(workers)
    threading.Thread(target=_exit_with_caller, args=(caller_alive,), name="pesmith-caller-watch", daemon=True).start()


def _exit_with_caller(caller_alive: Connection) -> None:
    """Block until the caller's end of the pipe is closed (it stopped the pool, or died), then
    end this worker process at once."""
    try:
        caller_alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)


def threads_per_worker(workers: int) -> int:
    """``cpu_count // workers``, at least 1: the threads each of ``workers`` processes may run."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def share_cores(workers: int) -> None:
    """Give this worker process its share of the cores (:func:`threads_per_worker`) for torch,
    OpenMP and BLAS, so that processes x threads never exceed the cores and every task of a map runs with
    the same thread count (a float32 sum over 2 threads need not equal the sum over 1, and which
    worker runs which task is up to the pool)."""
    threads = threads_per_worker(workers)
    for variable in THREAD_VARIABLES:  # read by OpenMP and BLAS runtimes loaded after this
        os.environ[variable] = str(threads)
    threadpool_limits(limits=threads)  # and those already loaded: numpy's OpenBLAS, imported by the forkserver, sized itself to every core
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _forkserver(fn: Callable) -> multiprocessing.context.BaseContext:
    """The forkserver context, asked to preload ``fn``'s module (effective until the server starts)."""
    context = multiprocessing.get_context("forkserver")
    module = getattr(fn, "func", fn).__module__
    if module and module != "__main__":
        context.set_forkserver_preload([module])
    return context


def call_with_time_limit(fn: Callable[[T], R], argument: T, seconds: float) -> R:
    """``fn(argument)`` in a forked child process, killed after ``seconds``.

    This fork is deliberate. It runs in a map worker (a forkserver child of
    :func:`pesmith.parallel.parallel_map`, or an MPI rank), which only imported modules and
    ran :meth:`Reference.prepare`, no torch or OpenMP computation, so there is no thread pool
    to copy in a broken state. The child inherits what ``prepare`` loaded, and starting it costs
    about 56 ms (fork: 79 ms per 8-atom morse label vs 23 ms in-process). A forkserver or spawn
    child re-imports torch and pesmith for every structure: 5.1 s and 6.6 s each, measured on 2
    shared cores. With ``workers=1`` the fork comes from the calling process itself.

    Raises
    ------
    LabelingFailed
        On time-out, or when the child dies without an answer (e.g. a segfault).
    Exception
        Whatever ``fn`` raised, re-raised in the caller (its traceback as text in the message).
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(fn, argument, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(seconds):
            child.kill()
            raise LabelingFailed(f"time limit of {seconds:g} s exceeded")
        try:
            ok, value = receiver.recv()
        except EOFError:
            child.join()
            raise LabelingFailed(f"the labeling process died (exit code {child.exitcode})") from None
    finally:
        receiver.close()
        child.join()
    if not ok:
        raise value
    return value


def _run_and_send(fn: Callable, argument, sender) -> None:
    try:
        sender.send((True, fn(argument)))
    except Exception as exc:
        try:
            sender.send((False, exc))
        except Exception:  # an exception that does not pickle: send its text
            sender.send((False, LabelingFailed(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")))
    finally:
        sender.close()
