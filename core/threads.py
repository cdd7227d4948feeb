"""Thread counts that degrade gracefully when the cores are shared.

Measured on 2 cores (one Adam epoch of a 30 x 30 network on 60 mlearn Si structures, beside one
CPU-bound process): 2 spinning OpenMP threads 0.27-0.64 s, 2 threads with
``OMP_WAIT_POLICY=PASSIVE`` 0.11-0.21 s, 1 thread 0.16-0.19 s. Small torch operations gain
nothing from a second thread but lose a lot when its spin-waiting competes with another
process, so the fit loop runs on one thread unless ``training.threads`` says otherwise, and the
command line asks OpenMP to sleep instead of spin (set ``OMP_WAIT_POLICY`` yourself to override).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

FIT_LOOP_THREADS = 1


def prefer_passive_waiting() -> None:
    """Ask OpenMP threads to sleep while idle, unless the user chose a policy. Effective only
    before torch is first imported (the OpenMP runtime reads it once)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (``None``: leave them), then restore."""
    import torch

    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
