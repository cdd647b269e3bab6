"""The work queue that thread-based backends' workers share (not a backend itself).

A worker that takes ``STOP`` puts it back, so every worker on the queue stops, and exits.
Queues made by ``stoppable_queue`` all receive ``STOP`` when the interpreter starts shutting
down (before non-daemon threads are joined), and when their owner is garbage-collected.

Worker threads are daemon threads, so a task that never returns cannot hold the program
open after Ctrl-C. A pool registers its threads with ``join_at_exit``: at a normal exit
they are joined after STOP (queued work finishes, as with concurrent.futures); a pool that
was interrupted (``abandon``) is not waited for.
"""

from __future__ import annotations

import queue
import sys
import threading
import weakref
from concurrent.futures import Future, InvalidStateError
from typing import Any

STOP = None

_live_queues: weakref.WeakSet = weakref.WeakSet()
# Threads joined at interpreter exit (after STOP): those of pools never interrupted.
_joined_at_exit: weakref.WeakSet = weakref.WeakSet()


class WorkQueue(queue.SimpleQueue):
    """A SimpleQueue that can sit in a WeakSet (SimpleQueue itself has no __weakref__)."""


def stoppable_queue(owner: object) -> WorkQueue:
    """A new queue that gets STOP at interpreter exit or when ``owner`` is collected."""
    work = WorkQueue()
    _live_queues.add(work)
    weakref.finalize(owner, work.put, STOP)
    return work


def join_at_exit(thread: threading.Thread) -> None:
    """Wait for ``thread`` at interpreter exit (unless ``abandon``-ed first)."""
    _joined_at_exit.add(thread)


def abandon(threads: list[threading.Thread]) -> None:
    """Interrupted: let these (daemon) threads die with the program instead of joining them."""
    for thread in threads:
        _joined_at_exit.discard(thread)


def settle(future: Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    """Complete ``future`` unless an interrupt already failed it (then drop the outcome)."""
    try:
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
    except InvalidStateError:
        pass


def exiting_after_interrupt() -> bool:
    """True at interpreter exit when the program is ending on an uncaught KeyboardInterrupt
    (then nothing may wait for busy work: the user pressed Ctrl-C)."""
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _stop_all_at_exit() -> None:
    for work in list(_live_queues):
        work.put(STOP)
    if exiting_after_interrupt():
        return
    me = threading.current_thread()
    for thread in list(_joined_at_exit):
        if thread is not me:
            thread.join()


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:  # CPython 3.9+: runs before non-daemon threads are joined,
    _register_atexit(_stop_all_at_exit)  # so sub-interpreters are destroyed before finalization
