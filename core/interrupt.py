"""Ctrl-C (SIGINT) handled in two steps: the first interrupts, later ones wait, so a second
Ctrl-C cannot cut short the saving of what the first one stopped."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass
class HeldSignals:
    """How many SIGINTs arrived inside the block; under :func:`interrupt_once`, whether the
    first one still raises (set ``raising = False`` once the work worth interrupting is done)."""

    count: int = 0
    raising: bool = True


@contextmanager
def interrupt_once() -> Iterator[HeldSignals]:
    """Raise :class:`KeyboardInterrupt` on the first SIGINT inside the block only (and only while
    ``raising``); later ones are counted, so the code that handles the first runs to its end.

    Acts only where Ctrl-C would raise anyway (Python's default handler, main thread); where
    SIGINT is ignored or handled otherwise the block runs unchanged.
    """
    with _first_sigint_raises(KeyboardInterrupt) as held:
        yield held


@contextmanager
def deferred_interrupt() -> Iterator[HeldSignals]:
    """Run the block with SIGINT counted instead of raising :class:`KeyboardInterrupt`.

    The previous handler is restored afterwards and the signals are not raised again: the
    caller reads ``count`` and decides. Outside the main thread the block runs unprotected
    (Python delivers signals to the main thread only).
    """
    held = HeldSignals()

    def record(signum: int, frame: object) -> None:
        held.count += 1

    with _sigint_handler(record, only_over_default=False):
        yield held


@contextmanager
def _sigint_handler(handler: Callable[[int, object], None], only_over_default: bool) -> Iterator[None]:
    """``handler`` for SIGINT during the block, the previous one restored after it."""
    if threading.current_thread() is not threading.main_thread() or (
        only_over_default and signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class RunInterrupted(BaseException):
    """Ctrl-C during a run that continues from its checkpoint (``pesmith search``).

    Not a :class:`KeyboardInterrupt`: a step inside the run that handles Ctrl-C its own way (a
    fit keeps its best epoch and returns) must not take it for its own and let the run go on.
    """


@contextmanager
def interrupt_run() -> Iterator[HeldSignals]:
    """Raise :class:`RunInterrupted` on the first SIGINT inside the block, wherever the run is;
    later ones are counted, so the code handling the first (inside the block) runs to its end.

    Acts only where Ctrl-C would raise anyway (Python's default handler, main thread). Inner
    :func:`interrupt_once` blocks then leave SIGINT to this one; an inner
    :func:`deferred_interrupt` (a file being saved) holds it until the file is whole.
    """
    with _first_sigint_raises(RunInterrupted) as held:
        yield held


@contextmanager
def _first_sigint_raises(exception: type[BaseException]) -> Iterator[HeldSignals]:
    """The first SIGINT inside the block raises ``exception`` (while ``held.raising``); all are
    counted. Only over Python's default handler, in the main thread."""
    held = HeldSignals()

    def first_raises(signum: int, frame: object) -> None:
        held.count += 1
        if held.count == 1 and held.raising:
            raise exception

    with _sigint_handler(first_raises, only_over_default=True):
        yield held
