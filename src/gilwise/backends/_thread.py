"""The thread backend: a pool of OS threads named ``gilwise-thread-N``.

Right for I/O-bound work and for native code that releases the GIL; wrong for pure-Python
CPU work while the GIL is on (the threads take turns). Threads start on demand, one per
task until ``max_workers`` exist, and are reused; none is created per task once the pool is
full. A per-task timeout cannot stop a thread: the Executor stops waiting instead.

At interpreter exit a pool that was never shut down finishes its queued tasks and lets its
threads end (like concurrent.futures.ThreadPoolExecutor), so forgetting ``shutdown`` does
not hang the exit.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Optional

from ._base import Backend
from ._workqueue import STOP as _STOP
from ._workqueue import WorkQueue as _WorkQueue
from ._workqueue import stoppable_queue

_thread_numbers = itertools.count()


def _worker(work: _WorkQueue, idle: threading.Semaphore) -> None:
    # Holds only the queue, never the backend, so an unreferenced backend can be collected.
    while True:
        item = work.get()
        if item is _STOP:
            work.put(_STOP)
            return
        future, fn, args, kwargs = item
        del item
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
            del exc
        else:
            future.set_result(result)
            del result
        del future, fn, args, kwargs
        idle.release()


class ThreadBackend(Backend):
    """A reusable pool of up to ``max_workers`` threads. ``submit`` is thread safe."""

    name: ClassVar[str] = "thread"

    def __init__(self, max_workers: Optional[int] = None, **options: Any) -> None:
        super().__init__(max_workers, **options)
        self._work: _WorkQueue = stoppable_queue(self)
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def default_workers(cls) -> int:
        from ..runtime import current

        return min(32, current().cores + 4)

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a thread backend after shutdown")
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=_worker,
            args=(self._work, self._idle),
            name=f"gilwise-thread-{next(_thread_numbers)}",
        )
        thread.start()
        self._threads.append(thread)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._work.put(_STOP)
            threads = list(self._threads)
        if wait:
            me = threading.current_thread()
            for thread in threads:
                if thread is not me:
                    thread.join()

    @property
    def thread_names(self) -> list[str]:
        return [thread.name for thread in self._threads]
