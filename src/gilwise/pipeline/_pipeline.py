"""gilwise.Pipeline: a stream of items through stages, each on the concurrency model it needs."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Iterator, Sized
from typing import Any, Callable, Generic, Optional, TypeVar, Union, overload

from .. import _params, backends
from . import _progress
from ._channel import END, STOPPED, TIMEOUT, Failed
from ._policy import DeadLetter, ErrorPolicy, check_policy
from ._run import Run
from ._stage import StageSpec
from ._stats import RunStats

# The item type flowing out of a pipeline, and of the stage being added (for type checkers).
T = TypeVar("T")
R = TypeVar("R")

DEFAULT_QUEUE_SIZE = 64
# The async consumer polls the output between these bounds while it is empty.
_ASYNC_POLL_MIN_S = 0.0005
_ASYNC_POLL_MAX_S = 0.02


class Pipeline(Generic[T]):
    """A lazy, bounded stream: ``Pipeline(source).map(fetch).map(parse).filter(keep)``.

    Each stage runs its function on its own backend ("auto" measures the first items and asks
    gilwise's verdict: threads for I/O, processes for pure-Python CPU, inline for tiny calls).
    Stages are joined by queues of ``queue_size`` items, so a stream of any length, infinite
    included, runs in bounded memory: the source is never more than ``queue_size`` per queue
    (one per stage, plus the consumer's) plus ``max(2 * workers * chunksize, 3)`` per stage,
    plus one, items ahead of the consumer. Nothing runs until the pipeline is consumed: by ``for``,
    ``async for`` or ``run()``; each consumption is a new run over the source.

    Building methods return a new Pipeline and leave this one unchanged. A run's statistics
    and dead letters are on ``stats`` and ``dead_letters`` (of the last run started).
    A stage failing under ``on_error="raise"`` stops the run and the consumer gets
    ``gilwise.StageError`` (``.stage``, ``.item``, the original exception as ``__cause__``).

    Leaving the loop (``break``, an exception) stops every stage, waits for the calls
    already running, and shuts every pool down. Ctrl-C while the pipeline is consumed
    (``run()``, or waiting for the next output) interrupts instead: process workers are
    killed, calls on threads or inline are abandoned (their threads are daemon threads), and
    KeyboardInterrupt reaches the caller without waiting for them. A synchronous source
    blocked inside its ``next()`` cannot be interrupted: leaving normally waits for it to
    yield (async sources are cancelled).
    """

    def __init__(
        self,
        source: Union[Iterable[T], AsyncIterable[T]],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if not (hasattr(source, "__iter__") or hasattr(source, "__aiter__")):
            raise TypeError(
                f"Pipeline needs an iterable or async iterable source, got "
                f"{type(source).__name__}; wrap a single value in a list"
            )
        _params.count(queue_size, "queue_size", minimum=1)
        self._source = source
        self._queue_size = queue_size
        self._stages: tuple[StageSpec, ...] = ()
        self._run: Optional[Run] = None

    # -- building ------------------------------------------------------------------------

    @overload
    def map(
        self,
        fn: Callable[[T], Awaitable[R]],
        backend: str = "auto",
        workers: Optional[int] = None,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        *,
        name: Optional[str] = None,
        chunksize: Optional[int] = None,
        **backend_options: Any,
    ) -> Pipeline[R]: ...

    @overload
    def map(
        self,
        fn: Callable[[T], R],
        backend: str = "auto",
        workers: Optional[int] = None,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        *,
        name: Optional[str] = None,
        chunksize: Optional[int] = None,
        **backend_options: Any,
    ) -> Pipeline[R]: ...

    def map(
        self,
        fn: Callable[[T], Any],
        backend: str = "auto",
        workers: Optional[int] = None,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        *,
        name: Optional[str] = None,
        chunksize: Optional[int] = None,
        **backend_options: Any,
    ) -> Pipeline[Any]:
        """Add a stage that emits ``fn(item)`` for each item.

        ``backend``: "auto" (measure the first items, then threads, processes or inline) or a
        backend name ("thread", "process", "inline", "asyncio", "interpreter", "dask").
        ``workers``: pool size (default: what auto decides, or the backend's default).
        ``ordered``: emit in input order (default) or as items finish (more throughput).
        ``on_error``: "raise" (default), "skip", "collect" (see ``dead_letters``) or a
        ``Retry``. ``name``: the stage's name in stats and errors (default: fn's name).
        ``chunksize``: items sent to a worker per task (default: 1, or what auto decides
        for a process stage so each round trip carries about 50 ms of work).
        Other keyword arguments go to the backend.
        """
        return self._add(
            "map", fn, backend, workers, ordered, on_error, name, chunksize, backend_options
        )

    def filter(
        self,
        pred: Callable[[T], object],
        backend: str = "auto",
        workers: Optional[int] = None,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        *,
        name: Optional[str] = None,
        chunksize: Optional[int] = None,
        **backend_options: Any,
    ) -> Pipeline[T]:
        """Add a stage that keeps the items for which ``pred(item)`` is true."""
        return self._add(
            "filter", pred, backend, workers, ordered, on_error, name, chunksize, backend_options
        )

    def flat_map(
        self,
        fn: Callable[[T], Iterable[R]],
        backend: str = "auto",
        workers: Optional[int] = None,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        *,
        name: Optional[str] = None,
        chunksize: Optional[int] = None,
        **backend_options: Any,
    ) -> Pipeline[R]:
        """Add a stage that emits every item of the iterable ``fn(item)`` (built in the worker)."""
        return self._add(
            "flat_map", fn, backend, workers, ordered, on_error, name, chunksize, backend_options
        )

    def batch(
        self, size: int, timeout_s: Optional[float] = None, *, name: Optional[str] = None
    ) -> Pipeline[list[T]]:
        """Add a stage that emits lists of ``size`` items; with ``timeout_s``, a shorter list
        once its first item has waited that long. The last list may be shorter."""
        _params.count(size, "batch size", minimum=1)
        _params.seconds(timeout_s, "batch timeout_s")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        spec = StageSpec(
            name=self._unique_name(name or "batch"),
            kind="batch",
            batch_size=size,
            batch_timeout_s=timeout_s,
        )
        return self._with(spec)

    def _add(
        self,
        kind: str,
        fn: Any,
        backend: str,
        workers: Optional[int],
        ordered: bool,
        on_error: Any,
        name: Optional[str],
        chunksize: Optional[int],
        backend_options: dict[str, Any],
    ) -> Pipeline[Any]:
        if not callable(fn):
            raise TypeError(f"{kind}() needs a callable, got {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"{kind}() got the coroutine function {fn.__name__!r}; stages run plain "
                f"functions. Call it with asyncio.run inside a plain function, or feed the "
                f"pipeline from an async iterable instead"
            )
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a backend name (a str), got {backend!r}")
        if backend != "auto":
            backends.backend_class(backend)  # ValueError: unknown backend, naming the valid ones
        _params.workers(workers, "workers")
        _params.sized(chunksize, "chunksize", (None,))
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True or False, got {ordered!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        # An option the stage's backend (auto: both pools it may open) does not know.
        for known in (backend,) if backend != "auto" else ("thread", "process"):
            backends.backend_class(known).check_options(backend_options)
        default = getattr(fn, "__name__", "") or kind
        if default == "<lambda>":
            default = kind
        spec = StageSpec(
            name=self._unique_name(name or default),
            kind=kind,
            fn=fn,
            backend=backend,
            workers=workers,
            ordered=bool(ordered),
            on_error=check_policy(on_error),
            backend_options=dict(backend_options),
            chunksize=chunksize,
        )
        return self._with(spec)

    def _unique_name(self, name: str) -> str:
        taken = {stage.name for stage in self._stages}
        if name not in taken:
            return name
        number = 2
        while f"{name}#{number}" in taken:
            number += 1
        return f"{name}#{number}"

    def _with(self, spec: StageSpec) -> Pipeline[Any]:
        new: Pipeline[Any] = Pipeline(self._source, queue_size=self._queue_size)
        new._stages = (*self._stages, spec)
        return new

    # -- consuming -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        """Run the pipeline and yield its outputs; ``break`` stops every stage cleanly."""
        run = self._start()
        try:
            while True:
                value = run.outbox.get()
                if value is END:
                    run.completed = True
                    return
                if value is STOPPED or isinstance(value, Failed):
                    self._raise_failure(run, value)
                    return
                run.delivered_items += 1
                yield value
        except KeyboardInterrupt:
            run.close(interrupt=True)
            raise
        finally:
            run.close()

    async def __aiter__(self) -> AsyncIterator[T]:
        """Like ``__iter__`` for ``async for``: waiting for an output never blocks the loop."""
        import asyncio  # already loaded by the caller's event loop; a plain run never needs it

        run = self._start()
        try:
            pause_s = _ASYNC_POLL_MIN_S
            while True:
                value = run.outbox.get_nowait()
                if value is TIMEOUT:
                    await asyncio.sleep(pause_s)
                    pause_s = min(pause_s * 2, _ASYNC_POLL_MAX_S)
                    continue
                pause_s = _ASYNC_POLL_MIN_S
                if value is END:
                    run.completed = True
                    return
                if value is STOPPED or isinstance(value, Failed):
                    self._raise_failure(run, value)
                    return
                run.delivered_items += 1
                yield value
        except (KeyboardInterrupt, asyncio.CancelledError):
            run.close(interrupt=True)
            raise
        finally:
            run.close()

    def run(self, *, progress: Any = False) -> RunStats:
        """Consume the whole stream, discarding outputs; return the run's statistics.

        ``progress=True``: a live table of the stages on stderr when it is a terminal
        (nothing is drawn otherwise). A callable: called as ``progress(done, total)`` after
        each output (``total``: the source's length if it has one, else None; a filter or
        flat_map stage makes outputs differ from inputs). Raises like iteration does.
        """
        if not (isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                f"progress must be True, False or a callable taking (done, total); got {progress!r}"
            )
        previous = self._run
        outputs = iter(self)  # the run starts with the first item asked for

        def live_stats() -> RunStats:
            run = self._run
            if run is None or run is previous:
                return RunStats((), 0.0, 0, 0, 0, False)
            return run.stats()

        report = None if isinstance(progress, bool) else progress
        display = _progress.live(live_stats) if progress is True else None
        try:
            if report is not None:
                total = len(self._source) if isinstance(self._source, Sized) else None
                report(0, total)
                for done, _ in enumerate(outputs, 1):
                    report(done, total)
            elif display is None:
                for _ in outputs:
                    pass
            else:
                with display:
                    for _ in outputs:
                        pass
        except KeyboardInterrupt:
            if self._run is not None and self._run is not previous:
                self._run.close(interrupt=True)
            raise
        finally:
            close = getattr(outputs, "close", None)
            if close is not None:
                close()
        assert self._run is not None
        return self._run.stats()

    def _start(self) -> Run:
        run = Run(self._source, self._stages, self._queue_size)
        self._run = run
        run.start()
        return run

    @staticmethod
    def _raise_failure(run: Run, value: Any) -> None:
        error = value.error if isinstance(value, Failed) else run.error
        if error is not None:
            raise error

    # -- results -------------------------------------------------------------------------

    @property
    def stats(self) -> Optional[RunStats]:
        """Statistics of the last run started (live while it runs), or None before any."""
        return None if self._run is None else self._run.stats()

    @property
    def dead_letters(self) -> tuple[DeadLetter, ...]:
        """Items given up on by stages with ``on_error="collect"`` (last run), so far."""
        return () if self._run is None else self._run.dead_letters

    def __repr__(self) -> str:
        stages = " -> ".join(f"{s.kind}({s.name})" for s in self._stages) or "no stages"
        return f"<Pipeline {stages}>"
