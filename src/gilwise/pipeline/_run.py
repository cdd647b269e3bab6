"""One run of a pipeline: the source thread, the stages' threads, the channels between them.

A Run is started by iterating a Pipeline (or ``Pipeline.run``) and closed by the consumer
when it finishes, breaks out, or fails; ``close`` stops and joins every thread and shuts
every backend down, so nothing outlives the run. After Ctrl-C, ``close(interrupt=True)``
stops running calls where the backend can and waits for nothing busy. The first failure
wins: it stops the run and the consumer re-raises it.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Optional, Union

from .. import backends
from ..backends._workqueue import exiting_after_interrupt
from ..errors import StageError
from ._channel import END, POLL_S, Channel, Failed
from ._policy import DeadLetter
from ._stage import BatchRunner, StageRunner, StageSpec
from ._stats import RunStats

Runner = Union[StageRunner, BatchRunner]

# After Ctrl-C, how long close() gives the pipeline's threads to notice before abandoning them.
INTERRUPT_JOIN_S = 0.3

_live_runs: weakref.WeakSet = weakref.WeakSet()


def _interrupt_runs_at_exit() -> None:
    """At interpreter exit after an uncaught Ctrl-C, no run waits for busy work."""
    if exiting_after_interrupt():
        for run in list(_live_runs):
            run.close(interrupt=True)


def _prepare_process_workers(runners: list) -> None:
    """Before any stage thread starts: let the worker service fork its zygote from this
    (still single-threaded) program if a stage may run on processes (see
    backends.prepare_process_workers); with threads running it would spawn instead."""
    for runner in runners:
        if runner.spec.kind != "batch" and backends.prepare_process_workers(
            getattr(runner.spec, "backend", ""), runner.spec.backend_options
        ):
            return


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_interrupt_runs_at_exit)


class Run:
    """The threads and channels of one pass of a source through the stages."""

    def __init__(self, source: Any, specs: tuple[StageSpec, ...], queue_size: int) -> None:
        self.stop = threading.Event()
        self.measure_lock = threading.Lock()
        self._lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self._dead_letters: list[DeadLetter] = []
        self.source_items = 0
        self.delivered_items = 0
        self.started_at = time.perf_counter()
        self.finished_at: Optional[float] = None
        self._closed = False
        self.completed = False  # the consumer saw the end of the stream
        channels = [Channel(queue_size, self.stop) for _ in range(len(specs) + 1)]
        self._channels = channels
        self.runners: list[Runner] = [
            (BatchRunner if spec.kind == "batch" else StageRunner)(
                spec, self, channels[index], channels[index + 1]
            )
            for index, spec in enumerate(specs)
        ]
        self.outbox = channels[-1]
        self._source = source
        self._inbox = channels[0]
        self._feeder = threading.Thread(
            target=self._feed, name="gilwise-pipeline-source", daemon=True
        )
        _live_runs.add(self)

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the named backends (errors raise here) and start every thread."""
        try:
            _prepare_process_workers(self.runners)
            for runner in self.runners:
                runner.prepare()
        except BaseException:
            self.close()
            raise
        self.started_at = time.perf_counter()
        for runner in self.runners:
            runner.start()
        self._feeder.start()

    def fail(self, error: BaseException) -> None:
        """Record the run's first failure and stop every thread."""
        with self._lock:
            if self.error is None:
                self.error = error
        self.stop.set()

    def cut_upstream(self, inbox: Channel, error: BaseException) -> None:
        """A stage failed: record why, stop it and every stage and source before it."""
        with self._lock:
            if self.error is None:
                self.error = error
        for channel in self._channels:
            channel.cut()
            if channel is inbox:
                break

    def add_dead_letter(self, letter: DeadLetter) -> None:
        with self._lock:
            self._dead_letters.append(letter)

    @property
    def dead_letters(self) -> tuple[DeadLetter, ...]:
        with self._lock:
            return tuple(self._dead_letters)

    def close(self, *, interrupt: bool = False) -> None:
        """Stop, join every thread, shut every backend down. Idempotent; blocks until done.

        ``interrupt`` (Ctrl-C): stop the backends' running calls where they can (process
        workers are killed), give the threads ``INTERRUPT_JOIN_S`` to notice, and abandon
        the ones still busy in a user's call (daemon threads) instead of waiting.
        """
        if self._closed:
            return
        self._closed = True
        self.stop.set()
        if interrupt:
            for runner in self.runners:
                runner.interrupt()
            deadline_s = time.monotonic() + INTERRUPT_JOIN_S
            for thread in self._threads():
                thread.join(max(0.0, deadline_s - time.monotonic()))
            self.finished_at = time.perf_counter()
            return
        for thread in self._threads():
            thread.join()
        for runner in self.runners:
            runner.shutdown()
        self.finished_at = time.perf_counter()

    def _threads(self) -> list[threading.Thread]:
        threads = [self._feeder] if self._feeder.ident is not None else []
        for runner in self.runners:
            threads.extend(thread for thread in runner.threads if thread.ident is not None)
        return threads

    def stats(self) -> RunStats:
        """The run's statistics now (while running) or at its end."""
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        error = self.error
        return RunStats(
            stages=tuple(runner.counters.snapshot() for runner in self.runners),
            wall_s=end - self.started_at,
            source_items=self.source_items,
            delivered_items=self.delivered_items,
            dead_letters=len(self._dead_letters),
            finished=self.completed,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )

    # -- the source ----------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            if hasattr(self._source, "__iter__") or not hasattr(self._source, "__aiter__"):
                self._feed_sync()
            else:
                # Imported here: asyncio (~20-40 ms) is for async sources only, and every
                # script that runs a pipeline would pay it.
                import asyncio

                asyncio.run(self._feed_async())
        except BaseException as exc:
            error = StageError(
                f"the pipeline's source raised {type(exc).__name__}: {exc} after "
                f"{self.source_items} items (the traceback is above)",
                stage="source",
            )
            error.__cause__ = exc
            with self._lock:
                if self.error is None:
                    self.error = error
            self._inbox.put(Failed(error))

    def _feed_sync(self) -> None:
        iterator = iter(self._source)
        try:
            for item in iterator:
                if not self._inbox.put(item):
                    return
                self.source_items += 1
            self._inbox.put(END)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _feed_async(self) -> None:
        import asyncio

        iterator = self._source.__aiter__()
        try:
            while True:
                step = asyncio.ensure_future(iterator.__anext__())
                while not step.done():
                    await asyncio.wait({step}, timeout=POLL_S)
                    if self.stop.is_set() and not step.done():
                        step.cancel()
                        await asyncio.gather(step, return_exceptions=True)
                        return
                try:
                    item = step.result()
                except StopAsyncIteration:
                    self._inbox.put(END)
                    return
                # Blocking this loop is fine: it serves only the source.
                if not self._inbox.put(item):
                    return
                self.source_items += 1
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
