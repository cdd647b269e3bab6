"""The thread backend: a pool of OS threads named ``gilwise-thread-N``.

Right for I/O-bound work and for native code that releases the GIL; wrong for pure-Python
CPU work while the GIL is on (the threads take turns). Threads start on demand, one per
task until ``max_workers`` exist, and are reused; none is created per task once the pool is
full. A per-task timeout cannot stop a thread: the Executor stops waiting instead.

``submit_batch`` puts a whole batch on the queue as one item: one thread runs its calls in
order and completes each call's future as it finishes.

At interpreter exit a pool that was never shut down finishes its queued tasks and lets its
threads end (like concurrent.futures.ThreadPoolExecutor), so forgetting ``shutdown`` does
not hang the exit. ``shutdown(interrupt=True)`` (Ctrl-C) cannot stop a running thread: it
fails every unfinished future with TaskInterruptedError at once and abandons the threads
(daemon threads, never joined, their late results dropped).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Optional

from ..errors import TaskInterruptedError
from ._base import Backend
from ._workqueue import STOP as _STOP
from ._workqueue import WorkQueue as _WorkQueue
from ._workqueue import abandon, join_at_exit, settle, stoppable_queue

_thread_numbers = itertools.count()


def _worker(work: _WorkQueue, idle: threading.Semaphore, initializer: Any, initargs: tuple) -> None:
    # Holds only the queue, never the backend, so an unreferenced backend can be collected.
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # like concurrent.futures: the pool is broken
            _fail_queue(work, exc)
            return
    while True:
        item = work.get()
        if item is _STOP:
            work.put(_STOP)
            return
        fn, calls, futures = item
        del item
        for (args, kwargs), future in zip(calls, futures):
            if future.done():  # failed by an interrupt before it started
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                settle(future, exc=exc)
                del exc
            else:
                settle(future, result=result)
                del result
        del fn, calls, futures, args, kwargs, future
        idle.release()


def _fail_queue(work: _WorkQueue, cause: BaseException) -> None:
    while True:
        try:
            item = work.get_nowait()
        except Exception:
            return
        if item is _STOP:
            work.put(_STOP)
            return
        for future in item[2]:
            error = RuntimeError(f"the thread pool's initializer failed: {cause!r}")
            error.__cause__ = cause
            settle(future, exc=error)


class ThreadBackend(Backend):
    """A reusable pool of up to ``max_workers`` threads. ``submit`` is thread safe.

    Options: ``initializer`` (called once in each new thread with ``initargs``).
    """

    name: ClassVar[str] = "thread"
    option_names: ClassVar[tuple[str, ...]] = ("initializer", "initargs")

    def __init__(
        self,
        max_workers: Optional[int] = None,
        *,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: tuple = (),
        **options: Any,
    ) -> None:
        super().__init__(max_workers, **options)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._work: _WorkQueue = stoppable_queue(self)
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        self._interrupted = False
        # Unfinished futures, kept only so an interrupt can fail them (weak: no leak).
        self._unfinished: set[Future] = set()

    @classmethod
    def default_workers(cls) -> int:
        from .._runtime import current

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
        self._put(fn, [(args, kwargs)], [future])
        return future

    def submit_batch(
        self,
        fn: Callable[..., Any],
        calls: list[tuple[tuple, dict]],
        *,
        timeout_s: Optional[float] = None,
    ) -> list[Future]:
        futures: list[Future] = [Future() for _ in calls]
        if futures:
            self._put(fn, list(calls), futures)
        return futures

    def _put(self, fn: Callable[..., Any], calls: list, futures: list[Future]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a thread backend after shutdown")
            unfinished = self._unfinished
            unfinished.update(futures)
            for future in futures:
                future.add_done_callback(unfinished.discard)
            self._work.put((fn, calls, futures))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=_worker,
            args=(self._work, self._idle, self._initializer, self._initargs),
            name=f"gilwise-thread-{next(_thread_numbers)}",
            daemon=True,
        )
        thread.start()
        join_at_exit(thread)
        self._threads.append(thread)

    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._work.put(_STOP)
            threads = list(self._threads)
            unfinished = list(self._unfinished) if interrupt else []
            self._interrupted = self._interrupted or interrupt
        if interrupt:
            abandon(threads)
            for future in unfinished:
                settle(
                    future,
                    exc=TaskInterruptedError(
                        "interrupted: the task had not finished when the thread pool was "
                        "shut down with interrupt=True (a thread cannot be stopped; its "
                        "result, if any, is discarded)"
                    ),
                )
            return
        if wait:
            me = threading.current_thread()
            for thread in threads:
                if thread is not me:
                    thread.join()

    @property
    def thread_names(self) -> list[str]:
        return [thread.name for thread in self._threads]
