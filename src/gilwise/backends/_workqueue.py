"""The work queue that thread-based backends' workers share (not a backend itself).

A worker that takes ``STOP`` puts it back, so every worker on the queue stops, and exits.
Queues made by ``stoppable_queue`` all receive ``STOP`` when the interpreter starts shutting
down (before non-daemon threads are joined), and when their owner is garbage-collected.
"""

from __future__ import annotations

import queue
import threading
import weakref

STOP = None

_live_queues: weakref.WeakSet = weakref.WeakSet()


class WorkQueue(queue.SimpleQueue):
    """A SimpleQueue that can sit in a WeakSet (SimpleQueue itself has no __weakref__)."""


def stoppable_queue(owner: object) -> WorkQueue:
    """A new queue that gets STOP at interpreter exit or when ``owner`` is collected."""
    work = WorkQueue()
    _live_queues.add(work)
    weakref.finalize(owner, work.put, STOP)
    return work


def _stop_all_at_exit() -> None:
    for work in list(_live_queues):
        work.put(STOP)


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:  # CPython 3.9+: runs before non-daemon threads are joined,
    _register_atexit(_stop_all_at_exit)  # so sub-interpreters are destroyed before finalization
