"""Choose and run: a concurrent.futures Executor that picks the right backend per function.

``Executor(backend="auto")`` measures the first real calls of each function (their results go
to the caller; no call runs twice), asks ``verdict.decide_for_task`` what kind of work it is,
and runs the rest on threads, processes, an event loop or inline accordingly. A fixed
``backend=`` name skips the measuring. ``map`` is lazy and bounded: an endless input works
and only about ``buffersize`` tasks (or chunks) are in flight.

How a task moves: ``submit`` puts it on the Executor's own queue (future PENDING, so
``cancel`` works); the Executor hands it to a backend only when that backend has a free
worker, and marks it RUNNING then; the backend's outcome settles the caller's future
(after retries). So future states, cancellation, retries and timeouts behave the same on
every backend.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import queue
import sys
import threading
import time
import traceback
from collections import deque
from concurrent import futures as cf
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, Union

from . import backends as _backends
from . import runtime as _runtime
from ._measure import (
    AMBIGUOUS_OVERLAP,
    CallSample,
    DriftWatch,
    FunctionProbe,
    MeasuredCall,
    MeasuredCoroutine,
    waiting_so_far,
)
from .backends._asyncio import is_coroutine_function
from .errors import NotPicklableError, RemoteTraceback, TaskTimeoutError
from .verdict import PROCESS_CHUNK_TARGET_S, Decision, TaskMeasurement, decide_for_task

# Backends that ship work to other processes or machines: chunks must be worth a round trip.
_REMOTE_BACKENDS = frozenset({"process", "interpreter", "dask"})
# A chunk on a local backend (inline, thread) should last about this long: long enough to
# make the per-task bookkeeping negligible, short enough to keep results streaming.
LOCAL_CHUNK_TARGET_S = 0.002
MAX_CHUNKSIZE = 4096
# How often one function is re-measured after its call durations drifted.
MAX_RECHECKS = 3
# Threads the auto Executor measures first calls on (created on demand, reused).
_MEASURE_THREADS = 64
# When to look at first calls still running, to start queued I/O-bound calls early.
PEEK_DELAYS_S = (0.004, 0.012, 0.04, 0.1)
# A pair of busy calls is judged while running only after this long (less is noise).
EARLY_CPU_AFTER_S = 0.035
# ... and only when its overlap (cores busy) is outside this range: clearly turns or parallel.
EARLY_CLEAR_OVERLAP = (1.1, 1.75)

_task_numbers = itertools.count()


# --- tasks and lanes --------------------------------------------------------------------


class _Task:
    """One unit handed to a backend: a call, or a chunk of calls (``items`` > 1)."""

    __slots__ = (
        "args",
        "attempts",
        "fn",
        "future",
        "handed_at_s",
        "items",
        "key",
        "kwargs",
        "started",
    )

    def __init__(
        self,
        future: cf.Future,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        key: Any,
        items: int = 1,
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.key = key
        self.items = items
        self.attempts = 0
        self.started = False
        self.handed_at_s = 0.0


class _Lane:
    """One backend instance and how many of its workers the Executor keeps busy."""

    __slots__ = ("backend", "capacity", "in_flight", "name")

    def __init__(self, name: str, backend: _backends.Backend) -> None:
        self.name = name
        self.backend = backend
        self.capacity = backend.max_workers
        self.in_flight = 0


class _Plan:
    """Per function (auto mode): its queue, what was measured, the decision, drift watch."""

    def __init__(self, key: Any, label: str, is_coroutine: bool) -> None:
        self.key = key
        self.label = label
        self.queue: deque[_Task] = deque()
        self.probe = FunctionProbe(is_coroutine)
        self.measuring = 0
        self.decision: Optional[Decision] = None
        self.lane: Optional[_Lane] = None
        self.drift: Optional[DriftWatch] = None
        self.rechecks = 0
        self.early = False  # the decision came from a peek at calls still running
        self.listeners: list[Callable[[], None]] = []  # map windows waiting for a decision
        self.notes: list[str] = []
        self.per_call_s: Optional[float] = None


@dataclass(eq=False)
class _Measure:
    """A measured hand-over: the wrapper that timed the call, and its pair partner if any."""

    call: Union[MeasuredCall, MeasuredCoroutine]
    partner: Optional[_Measure] = None
    done: bool = False


class _Failure:
    """One failed call inside a chunk: the exception and the worker's formatted traceback."""

    __slots__ = ("exception", "traceback_text")

    def __init__(self, exception: BaseException, traceback_text: str) -> None:
        self.exception = exception
        self.traceback_text = traceback_text

    def __reduce__(self) -> Any:
        return (_Failure, (self.exception, self.traceback_text))

    def reraise(self) -> Any:
        exc = self.exception
        if exc.__traceback__ is None and exc.__cause__ is None:  # came from another process
            exc.__cause__ = RemoteTraceback(self.traceback_text)
        raise exc


def _run_chunk(fn: Callable[..., Any], items: list, retries: int, spread: bool) -> tuple:
    """Run fn over a chunk in a worker: ``(values, failure)``, retrying a failing call in place.

    ``spread``: items are argument tuples (``fn(*item)``), else single arguments. At the first
    call that still fails after its retries, stop (a loop would stop there too): ``failure``
    is a _Failure and ``values`` holds the results before it.
    """
    values: list = []
    append = values.append
    try:  # the fast path: no per-call bookkeeping
        if spread:
            for args in items:
                append(fn(*args))
        else:
            for item in items:
                append(fn(item))
        return values, None
    except Exception as exc:
        failure = _Failure(exc, traceback.format_exc())
    start = len(values)
    for index in range(start, len(items)):
        item = items[index]
        # The call that just failed has used one attempt already.
        attempts = retries if index == start else retries + 1
        outcome: Optional[_Failure] = failure if index == start else None
        for _ in range(attempts):
            try:
                append(fn(*item) if spread else fn(item))
                outcome = None
                break
            except Exception as exc:
                outcome = _Failure(exc, traceback.format_exc())
        if outcome is not None:
            return values, outcome
    return values, None


def _run_coroutine(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an ``async def`` function to completion on a fresh event loop (non-asyncio backends)."""
    import asyncio

    return asyncio.run(fn(*args, **kwargs))


def _label(fn: Callable[..., Any]) -> str:
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    module = getattr(target, "__module__", None) or ""
    name = str(getattr(target, "__qualname__", None) or type(target).__qualname__)
    return f"{module}.{name}" if module and module != "builtins" else name


def _key(fn: Callable[..., Any]) -> Any:
    """Calls that share this key are assumed to behave alike (same code, e.g. one lambda line)."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # bound methods are new objects per access
    code = getattr(target, "__code__", None)
    if code is not None:
        return code
    try:
        hash(target)
    except TypeError:
        return type(target)
    return target


# --- the executor -----------------------------------------------------------------------


class Executor(cf.Executor):
    """A concurrent.futures.Executor over gilwise's backends, with ``backend="auto"``.

    ``backend``: "auto" (measure each function's first calls, then choose), or one of
    "inline", "thread", "process", "asyncio", "interpreter", "dask". ``max_workers``: the
    pool size (auto: an upper bound for every pool it creates). ``retries``: how many times
    a task that raised is run again before its exception is delivered (timeouts and
    cancellations are not retried). ``timeout``: seconds per task; a task running longer
    fails with TaskTimeoutError (a process worker is killed and replaced, a coroutine is
    cancelled, a thread cannot be stopped: its result is discarded when it finishes).
    ``scale_out``: a dask scheduler address (or a distributed.Client) that auto uses for
    GIL-bound work instead of local processes. ``backend_options`` go to the backend.

    Thread safe. Use as a context manager, or call ``shutdown``.
    """

    def __init__(
        self,
        backend: str = "auto",
        max_workers: Optional[int] = None,
        *,
        retries: int = 0,
        timeout: Optional[float] = None,
        scale_out: Any = None,
        **backend_options: Any,
    ) -> None:
        if backend != "auto":
            _backends.backend_class(backend)  # ValueError naming the valid backends
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers!r}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.backend_name = backend
        self.max_workers = max_workers
        self.retries = int(retries)
        self.timeout_s = timeout
        self.scale_out = scale_out
        self._backend_options = backend_options
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._unfinished = 0
        self._shutdown = False
        self._closed = False
        self._pumping = False
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._plans: dict[Any, _Plan] = {}
        self._ready: dict[Any, _Plan] = {}  # plans with queued tasks, in arrival order
        self._timer_thread: Optional[_Timers] = None
        self._fixed: Optional[_Plan] = None
        self._fixed_lane: Optional[_Lane] = None
        if backend != "auto":
            self._fixed_lane = self._lane(backend, max_workers, options=backend_options)
            self._fixed = _Plan(None, backend, False)
            self._fixed.lane = self._fixed_lane

    # --- public API ---------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Schedule ``fn(*args, **kwargs)``; return its Future (PENDING until a worker is free).

        Raises RuntimeError after shutdown, and at once the backend's error for a task it
        cannot run (e.g. NotPicklableError for a process backend).
        """
        if self._fixed_lane is not None:
            if self._fixed_lane.name != "asyncio" and is_coroutine_function(fn):
                fn, args = _run_coroutine, (fn, *args)  # its own event loop in the worker
            self._fixed_lane.backend.validate(fn, args, kwargs)
        return self._enqueue(fn, args, kwargs, _key(fn) if self._fixed is None else None, fn)

    async def submit_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``await`` the result of ``fn(*args, **kwargs)`` from async code (any backend)."""
        import asyncio

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: Union[int, str] = "auto",
        buffersize: Union[int, str, None] = "auto",
    ) -> Iterator[Any]:
        """Like ``builtins.map`` run concurrently; results in input order.

        Lazy and bounded: inputs are read only as results are consumed, with at most
        ``buffersize`` tasks in flight ("auto": twice the workers; None: read all input
        now, as concurrent.futures does). ``chunksize`` batches calls into one task ("auto":
        sized from measured call durations so tiny calls are cheap; with chunks, ``retries``
        re-run a failing call inside its chunk). ``timeout``: seconds from this call; a
        result not ready by then raises TimeoutError. The first failing call's exception is
        raised when its result is reached. Closing the iterator cancels what has not started.
        """
        return self._map(fn, iterables, timeout, chunksize, buffersize, ordered=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel queued ones; with ``wait``, finish the rest.

        Idempotent. Without ``wait`` the queued tasks still run and the pools close when
        they are done. After a waiting shutdown no thread or process of this Executor lives.
        """
        with self._lock:
            self._shutdown = True
            cancelled: list[_Task] = []
            if cancel_futures:
                plans = [self._fixed] if self._fixed is not None else list(self._plans.values())
                for plan in plans:
                    # A retry waiting for a worker has started already: it runs on.
                    cancelled.extend(task for task in plan.queue if not task.started)
                    plan.queue = deque(task for task in plan.queue if task.started)
                    if not plan.queue:
                        self._ready.pop(plan.key, None)
        for task in cancelled:
            task.future.cancel()
        with self._lock:
            self._unfinished -= len(cancelled)
            idle = self._unfinished == 0
        if idle:
            self._close(wait=wait)
            return
        if wait:
            try:
                with self._settled:
                    while self._unfinished:
                        self._settled.wait()
            except KeyboardInterrupt:  # Ctrl-C while waiting: drop the queue, free the pools
                if not cancel_futures:
                    self.shutdown(wait=False, cancel_futures=True)
                self._close(wait=False)
                raise
            self._close(wait=True)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        # Ctrl-C inside the block: drop what has not started, finish what has, free workers.
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.shutdown(wait=True, cancel_futures=interrupted)
        return False

    @property
    def decisions(self) -> dict[str, Decision]:
        """The latest Decision per function label (auto mode; empty for a fixed backend)."""
        with self._lock:
            return {plan.label: plan.decision for plan in self._plans.values() if plan.decision}

    def explain(self, fn: Callable[..., Any]) -> str:
        """A readable account of what was measured about ``fn`` and which backend it got, why."""
        if self._fixed is not None:
            return (
                f"{_label(fn)}: backend fixed to {self.backend_name!r} by the caller; nothing "
                f"was measured. Use Executor(backend='auto') to let gilwise choose."
            )
        with self._lock:
            plan = self._plans.get(_key(fn))
            if plan is None or plan.decision is None:
                state = "measuring its first calls" if plan is not None else "never submitted"
                return (
                    f"{_label(fn)}: no decision yet ({state}). The first calls submitted are "
                    f"measured, then the rest run on the chosen backend."
                )
            return _explain(plan)

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "running"
        return f"<gilwise.Executor backend={self.backend_name!r} {state}>"

    # --- queueing and dispatch ----------------------------------------------------------

    def _enqueue(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        key: Any,
        label_fn: Callable[..., Any],
        items: int = 1,
        *,
        pump: bool = True,
    ) -> cf.Future:
        future: cf.Future = cf.Future()
        task = _Task(future, fn, args, kwargs, key, items)
        with self._lock:
            if self._shutdown:
                raise RuntimeError(
                    "cannot schedule new tasks after shutdown; create a new gilwise.Executor"
                )
            plan = self._fixed
            if plan is None:
                plan = self._plans.get(key)
                if plan is None:
                    plan = _Plan(key, _label(label_fn), is_coroutine_function(label_fn))
                    self._plans[key] = plan
            plan.queue.append(task)
            self._ready[plan.key] = plan
            self._unfinished += 1
        if pump:
            self._pump()
        return future

    def _pump(self) -> None:
        """Hand queued tasks to backends with free workers. One thread pumps at a time."""
        with self._lock:
            if self._pumping:
                return
            self._pumping = True
        batch: list[tuple[_Task, _Lane, Optional[_Measure]]] = []
        handed = 0
        try:
            while True:
                with self._lock:
                    batch = self._take_ready()
                    handed = 0
                    if not batch:
                        self._pumping = False
                        return
                for task, lane, measure in batch:
                    handed += 1
                    self._hand_over(task, lane, measure)
        except BaseException:  # e.g. Ctrl-C inside an inline task: requeue the rest, re-raise
            with self._lock:
                self._pumping = False
                for task, lane, measure in reversed(batch[handed:]):
                    lane.in_flight -= 1
                    owner = self._fixed if self._fixed is not None else self._plans[task.key]
                    if measure is not None:
                        owner.measuring -= 1
                    owner.queue.appendleft(task)
                    self._ready[owner.key] = owner
            raise

    def _take_ready(self) -> list[tuple[_Task, _Lane, Optional[_Measure]]]:
        """Under the lock: pop every task that may start now, marking it RUNNING."""
        batch: list[tuple[_Task, _Lane, Optional[_Measure]]] = []
        for plan in list(self._ready.values()):
            if plan.lane is not None:
                lane = plan.lane
                while plan.queue and lane.in_flight < lane.capacity:
                    task = plan.queue.popleft()
                    if self._start(task):
                        lane.in_flight += 1
                        batch.append((task, lane, None))
            elif plan.measuring == 0:
                self._take_for_measuring(plan, batch)
            if not plan.queue:
                del self._ready[plan.key]
        return batch

    def _start(self, task: _Task) -> bool:
        if task.started:
            return True
        if task.future.set_running_or_notify_cancel():
            task.started = True
            return True
        self._unfinished -= 1  # cancelled while queued
        if self._unfinished == 0:
            self._settled.notify_all()
        return False

    def _take_for_measuring(self, plan: _Plan, batch: list) -> None:
        step = plan.probe.next_step()
        pairs_allowed = self.max_workers is None or self.max_workers >= 2
        wanted = 2 if step == "pair" and pairs_allowed and len(plan.queue) >= 2 else 1
        started: list[_Task] = []
        while plan.queue and len(started) < wanted:
            task = plan.queue.popleft()
            if self._start(task):
                started.append(task)
        if not started:
            return
        lane = self._measure_lane(plan.probe.is_coroutine)
        if plan.probe.is_coroutine:
            measures = [_Measure(MeasuredCoroutine(task.fn)) for task in started]
        elif len(started) == 2:
            barrier = threading.Barrier(2)
            measures = [_Measure(MeasuredCall(task.fn, barrier)) for task in started]
            measures[0].partner, measures[1].partner = measures[1], measures[0]
        else:
            measures = [_Measure(MeasuredCall(started[0].fn))]
        for task, measure in zip(started, measures):
            plan.measuring += 1
            lane.in_flight += 1
            batch.append((task, lane, measure))
        if not plan.probe.is_coroutine and plan.queue and not self._closed:
            # Others are waiting: if these calls turn out to be mostly waiting, say so early.
            calls = [measure.call for measure in measures]
            now_s = time.monotonic()
            for delay_s in PEEK_DELAYS_S:
                self._timers().add(
                    now_s + delay_s, functools.partial(self._peek, plan, plan.probe, calls)
                )

    def _hand_over(self, task: _Task, lane: _Lane, measure: Optional[_Measure]) -> None:
        fn = task.fn if measure is None else measure.call
        timeout_s = None if self.timeout_s is None else self.timeout_s * task.items
        task.handed_at_s = time.perf_counter()
        try:
            backend_future = lane.backend.submit(fn, task.args, task.kwargs, timeout_s=timeout_s)
        except NotPicklableError as exc:
            if self._fixed is None and lane.name != "thread":
                self._reroute_to_threads(task, lane, measure, exc)
                return
            self._finish_hand_over_failure(task, lane, measure, exc)
            return
        except BaseException as exc:
            self._finish_hand_over_failure(task, lane, measure, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if timeout_s is not None and not lane.backend.enforces_timeout:
            self._watch(task, timeout_s)
        backend_future.add_done_callback(
            functools.partial(self._on_backend_done, task, lane, measure)
        )

    def _finish_hand_over_failure(
        self, task: _Task, lane: _Lane, measure: Optional[_Measure], exc: BaseException
    ) -> None:
        with self._lock:
            lane.in_flight -= 1
            if measure is not None:
                self._plans[task.key].measuring -= 1
        self._settle(task, exc=exc)

    def _reroute_to_threads(
        self, task: _Task, lane: _Lane, measure: Optional[_Measure], exc: NotPicklableError
    ) -> None:
        with self._lock:
            lane.in_flight -= 1
            plan = self._plans[task.key]
            workers = lane.capacity
            thread_lane = self._lane("thread", workers)
            note = f"{lane.name} could not take it ({exc}); it runs on threads instead"
            if note not in plan.notes:
                plan.notes.append(note)
            plan.lane = thread_lane
            if plan.decision is not None:
                plan.decision = replace(plan.decision, backend="thread")
            plan.queue.appendleft(task)
            self._ready[plan.key] = plan

    def _on_backend_done(
        self, task: _Task, lane: _Lane, measure: Optional[_Measure], backend_future: cf.Future
    ) -> None:
        duration_s = time.perf_counter() - task.handed_at_s
        try:
            exc = backend_future.exception()
        except cf.CancelledError as cancelled:
            exc = cancelled
        with self._lock:
            lane.in_flight -= 1
            plan = self._plans.get(task.key)
            if plan is not None:
                if measure is not None:
                    self._record_measure(plan, measure, task.items)
                elif plan.decision is not None:
                    self._observe(plan, duration_s / task.items, task.items)
            elif self._fixed is not None:
                self._observe(self._fixed, duration_s / task.items, task.items)
            retry = (
                exc is not None
                and task.attempts < self.retries
                and isinstance(exc, Exception)
                and not isinstance(exc, (TaskTimeoutError, cf.CancelledError))
                and not task.future.done()
            )
            if retry:
                task.attempts += 1
                owner = plan if plan is not None else self._fixed
                assert owner is not None
                owner.queue.appendleft(task)
                self._ready[owner.key] = owner
        if not retry:
            if exc is None:
                self._settle(task, result=backend_future.result())
            else:
                self._settle(task, exc=exc)
        del backend_future
        # Whoever queues a task pumps (or leaves it to the thread pumping now), so an empty
        # ready set needs no pump here; a non-empty one may fit into the worker just freed.
        if self._ready:
            self._pump()

    def _settle(
        self, task: _Task, *, result: Any = None, exc: Optional[BaseException] = None
    ) -> None:
        future = task.future
        try:
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
        except cf.InvalidStateError:  # already settled by its timeout
            return
        with self._lock:
            self._unfinished -= 1
            done = self._unfinished == 0
            if done:
                self._settled.notify_all()
            close_now = done and self._shutdown and not self._closed
        if close_now:
            self._close(wait=False)

    # --- measuring and deciding (auto) --------------------------------------------------

    def _record_measure(self, plan: _Plan, measure: _Measure, items: int) -> None:
        """Under the lock: file a finished measured call; decide once enough is known."""
        plan.measuring -= 1
        measure.done = True
        sample = measure.call.sample
        partner = measure.partner
        if items > 1 and sample is not None:  # a chunk queued before a re-measure
            sample = CallSample(
                sample.wall_s / items, sample.cpu_s / items, sample.started_s, sample.ended_s
            )
            partner = None
        if partner is not None:
            if partner.done and sample is not None and partner.call.sample is not None:
                plan.probe.add_pair(partner.call.sample, sample)
        elif sample is not None:
            plan.probe.add_single(sample)
        if plan.measuring == 0 and (plan.decision is None or plan.early) and plan.probe.calls:
            if plan.early:  # decided from a peek: now decide from the finished calls
                plan.early = False
                self._decide_again(plan)
            elif plan.probe.next_step() is None or plan.probe.calls >= 6:
                self._decide(plan)
            if plan.queue:
                self._ready[plan.key] = plan

    def _peek(self, plan: _Plan, probe: FunctionProbe, calls: list) -> None:
        """Timer thread: decide "I/O-bound" while the first calls are still waiting."""
        with self._lock:
            if plan.decision is not None or plan.probe is not probe or self._closed:
                return
            peeks = [call.peek() for call in calls]
            if not peeks or any(sample is None for sample in peeks):
                return
            so_far: Optional[TaskMeasurement]
            if waiting_so_far(calls):
                so_far = TaskMeasurement(
                    wall_s=min(sample.wall_s for sample in peeks),
                    cpu_s=sum(sample.cpu_s for sample in peeks) / len(peeks),
                    calls=0,
                )
                what = "I/O-bound (they were waiting)"
            else:
                so_far = _busy_pair_so_far(peeks)
                if so_far is None:
                    return
                what = f"CPU-bound (two calls on two threads kept {so_far.overlap:.2f} "
                what += "cores busy)"
            self._decide(plan, so_far)
            plan.early = True
            plan.drift = None  # a lower bound of the call time: watch drift after the redo
            plan.notes.append(
                f"judged {what} {so_far.wall_s * 1000:.1f} ms into its first calls, so queued "
                f"calls started before those returned; decided again once they did"
            )
        self._pump()

    def _decide(self, plan: _Plan, measured: Optional[TaskMeasurement] = None) -> None:
        facts = _runtime.current()
        measured = measured or plan.probe.measurement()
        decision = decide_for_task(measured, facts, max_workers=self.max_workers)
        if plan.probe.is_coroutine and decision.backend != "asyncio":
            decision = replace(
                decision,
                backend="asyncio",
                workers=max(decision.workers, facts.cores),
                reason=decision.reason + " It is a coroutine function, so it runs on the "
                "event loop all the same.",
            )
        if decision.backend == "process" and self.scale_out is not None:
            decision = replace(
                decision,
                backend="dask",  # type: ignore[arg-type]
                reason=decision.reason + " Scaled out to the dask cluster given as scale_out.",
            )
        try:
            lane = self._lane(decision.backend, decision.workers)
        except (ImportError, RuntimeError, ValueError, TypeError, OSError) as exc:
            # UnsupportedError (a RuntimeError), NoClusterError (a ValueError), a missing
            # module or a refused connection: the work still runs, and explain() says why.
            decision = replace(
                decision,
                backend="thread",
                reason=decision.reason + f" The {decision.backend} backend is unavailable "
                f"here ({exc}), so threads run it.",
            )
            lane = self._lane("thread", decision.workers)
        plan.decision = decision
        plan.lane = lane
        plan.per_call_s = decision.measured.wall_s
        listeners, plan.listeners = plan.listeners, []
        for listener in listeners:
            listener()
        # A function whose calls keep changing would be re-measured forever: stop watching.
        if plan.rechecks < MAX_RECHECKS:
            plan.drift = DriftWatch(decision.measured.wall_s)

    def _decide_again(self, plan: _Plan) -> None:
        """Under the lock: the calls judged early have finished; confirm or correct."""
        full = plan.probe.measurement()
        overlap = full.overlap
        early = plan.decision
        if (
            early is not None
            and early.kind != "io-bound"
            and overlap is not None
            and AMBIGUOUS_OVERLAP[0] <= overlap < AMBIGUOUS_OVERLAP[1]
        ):
            # The whole pair is less clear than the part judged early (a busy machine blurs
            # it): keep the clear judgement, learn the real call time.
            plan.per_call_s = full.wall_s
            if plan.rechecks < MAX_RECHECKS:
                plan.drift = DriftWatch(full.wall_s)
            return
        self._decide(plan)

    def _observe(self, plan: _Plan, per_call_s: float, items: int = 1) -> None:
        """Under the lock: track per-call durations; re-measure a function that drifted."""
        previous = plan.per_call_s
        if previous is None or items >= 8:
            # A chunk's average is already smooth, and a single call's duration carries the
            # hand-over cost: trust chunks at once so chunk sizes converge in a few steps.
            plan.per_call_s = per_call_s
        else:
            plan.per_call_s = 0.8 * previous + 0.2 * per_call_s
        if plan.drift is not None and plan.drift.observe(per_call_s):
            plan.rechecks += 1
            plan.notes.append(
                f"re-measured after calls took {per_call_s * 1000:.2f} ms against "
                f"{plan.drift.reference_s * 1000:.2f} ms measured before"
            )
            plan.decision = None
            plan.lane = None
            plan.drift = None
            plan.early = False
            plan.probe = FunctionProbe(plan.probe.is_coroutine)

    def _measure_lane(self, is_coroutine: bool) -> _Lane:
        if is_coroutine:
            return self._lane("asyncio", None)
        return self._lane("thread", _MEASURE_THREADS, key=("measure", 0))

    def _lane(
        self,
        name: str,
        workers: Optional[int],
        *,
        options: Optional[dict] = None,
        key: Optional[tuple[str, int]] = None,
    ) -> _Lane:
        """The lane (a backend instance) for ``name`` with ``workers``, created on first use."""
        if workers is not None and self.max_workers is not None and key is None:
            workers = min(workers, self.max_workers)
        lane_key = key or (name, workers or 0)
        lane = self._lanes.get(lane_key)
        if lane is None:
            if options is None:
                options = dict(self._backend_options)
                if name == "dask" and self.scale_out is not None:
                    scale_key = "address" if isinstance(self.scale_out, str) else "client"
                    options.setdefault(scale_key, self.scale_out)
            backend = _backends.create(name, workers, **options)
            lane = _Lane(name, backend)
            self._lanes[lane_key] = lane
        return lane

    # --- timeouts and closing -----------------------------------------------------------

    def _timers(self) -> _Timers:
        """Under the lock: the timer thread, started on first use."""
        if self._timer_thread is None:
            self._timer_thread = _Timers()
        return self._timer_thread

    def _watch(self, task: _Task, timeout_s: float) -> None:
        with self._lock:
            timers = self._timers()
        timers.add(time.monotonic() + timeout_s, functools.partial(self._expire, task, timeout_s))

    def _expire(self, task: _Task, timeout_s: float) -> None:
        if task.future.done():
            return
        self._settle(
            task,
            exc=TaskTimeoutError(
                f"task {_label(task.fn)} did not finish within its timeout of {timeout_s} s; its "
                f"thread cannot be stopped and its result will be discarded. Raise timeout=, or "
                f"use backend='process' to have slow tasks killed."
            ),
        )

    def _close(self, wait: bool) -> None:
        with self._lock:
            if self._closed:
                lanes: list[_Lane] = []
            else:
                self._closed = True
                lanes = list(self._lanes.values())
            timers, self._timer_thread = self._timer_thread, None
        if timers is not None:
            timers.stop(wait=wait)
        for lane in lanes:
            lane.backend.shutdown(wait=wait)
        if wait:  # a pool closed without waiting (by its last task) may still be ending
            for lane in self._lanes.values():
                lane.backend.shutdown(wait=True)

    # --- map ----------------------------------------------------------------------------

    def _chunksize_for(self, key: Any, requested: Union[int, str]) -> int:
        if requested != "auto":
            return int(requested)
        with self._lock:
            plan = self._fixed if self._fixed is not None else self._plans.get(key)
            if plan is None or plan.lane is None or plan.per_call_s is None:
                return 1
            lane_name, per_call_s = plan.lane.name, plan.per_call_s
            if plan.probe.is_coroutine or lane_name == "asyncio":
                return 1
        if plan.decision is not None and plan.decision.chunksize > 1:
            per_call_s = min(per_call_s, plan.decision.measured.wall_s)
        target_s = PROCESS_CHUNK_TARGET_S if lane_name in _REMOTE_BACKENDS else LOCAL_CHUNK_TARGET_S
        if lane_name == "thread" and per_call_s >= LOCAL_CHUNK_TARGET_S / 4:
            return 1  # threads balance long calls better one by one
        return max(1, min(MAX_CHUNKSIZE, math.ceil(target_s / max(per_call_s, 1e-7))))

    def _buffer_limit(self, key: Any) -> int:
        with self._lock:
            plan = self._fixed if self._fixed is not None else self._plans.get(key)
            lane = plan.lane if plan is not None else None
            workers = lane.capacity if lane is not None else 2
        return max(4, 2 * workers)

    def _map(
        self,
        fn: Callable[..., Any],
        iterables: tuple,
        timeout: Optional[float],
        chunksize: Union[int, str],
        buffersize: Union[int, str, None],
        *,
        ordered: bool,
    ) -> Iterator[Any]:
        if chunksize != "auto" and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"chunksize must be 'auto' or an int >= 1, got {chunksize!r}")
        if buffersize not in ("auto", None) and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError(f"buffersize must be 'auto', None or an int >= 1, got {buffersize!r}")
        end_s = None if timeout is None else time.monotonic() + timeout
        spread = len(iterables) != 1
        inputs = zip(*iterables) if spread else iter(iterables[0])
        key = _key(fn) if self._fixed is None else None
        call = fn
        if is_coroutine_function(fn):
            chunksize = 1  # a chunk runs its calls synchronously; coroutines need the loop
            if self._fixed_lane is not None and self._fixed_lane.name != "asyncio":
                call = functools.partial(_run_coroutine, fn)
        window: deque[tuple[cf.Future, bool]] = deque()
        arrivals: Optional[queue.SimpleQueue] = None if ordered else queue.SimpleQueue()

        def submit_one() -> bool:
            size = self._chunksize_for(key, chunksize)
            batch = list(itertools.islice(inputs, size))
            if not batch:
                return False
            if len(batch) == 1:
                args = batch[0] if spread else (batch[0],)
                if self._fixed_lane is not None:
                    self._fixed_lane.backend.validate(call, args, {})
                future = self._enqueue(call, args, {}, key, fn, pump=False)
                entry = (future, False)
            else:
                future = self._enqueue(
                    _run_chunk,
                    (fn, batch, self.retries, spread),
                    {},
                    key,
                    fn,
                    items=len(batch),
                    pump=False,
                )
                entry = (future, True)
            window.append(entry)
            if arrivals is not None:
                future.add_done_callback(functools.partial(_put_entry, arrivals, entry))
            return True

        def refill() -> None:
            # Queue the whole refill, then dispatch: the first calls of a new function then
            # arrive together and can be measured as a pair.
            try:
                while buffersize is None or len(window) < (
                    self._buffer_limit(key) if isinstance(buffersize, str) else buffersize
                ):
                    if not submit_one():
                        return
            finally:
                self._pump()

        refill()  # like concurrent.futures: the first tasks are submitted by the call itself
        return self._results(window, refill, end_s, arrivals, key)

    def _listen_for_decision(self, key: Any, listener: Callable[[], None]) -> bool:
        """Call ``listener`` once ``key``'s function is decided; True if it already is."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is None or plan.decision is not None:
                return True
            plan.listeners.append(listener)
            return False

    def _await_or_refill(
        self, future: cf.Future, key: Any, refill: Callable[[], None], end_s: Optional[float]
    ) -> None:
        """Wait for ``future``; if the function gets decided meanwhile, refill the window.

        Before a decision map keeps few calls in flight; once one is made (possibly while
        the first calls still run) the window grows at once instead of after a result.
        """
        wake = threading.Event()
        future.add_done_callback(lambda _future: wake.set())
        while not future.done():
            if self._listen_for_decision(key, wake.set):
                return
            remaining = None if end_s is None else max(0.0, end_s - time.monotonic())
            if not wake.wait(remaining):
                return  # timed out: the caller's result() raises
            wake.clear()
            refill()

    def _results(
        self,
        window: deque,
        refill: Callable[[], None],
        end_s: Optional[float],
        arrivals: Optional[queue.SimpleQueue],
        key: Any,
    ) -> Iterator[Any]:
        listening = False
        try:
            while window:
                remaining = None if end_s is None else max(0.0, end_s - time.monotonic())
                if arrivals is None:
                    future, is_chunk = window[0]
                    if not future.done() and self._fixed is None:
                        self._await_or_refill(future, key, refill, end_s)
                    value = future.result(remaining)
                    window.popleft()
                else:
                    if not listening and self._fixed is None:
                        wake = functools.partial(arrivals.put, None)
                        listening = not self._listen_for_decision(key, wake)
                    try:
                        entry = arrivals.get(timeout=remaining)
                    except queue.Empty:
                        raise cf.TimeoutError() from None
                    if entry is None:  # a decision: more may be in flight now
                        listening = False
                        refill()
                        continue
                    future, is_chunk = entry
                    window.remove(entry)
                    value = future.result()
                del future
                refill()
                if is_chunk:
                    values, failure = value
                    yield from values
                    if failure is not None:
                        failure.reraise()
                else:
                    yield value
                del value
        finally:
            for future, _ in window:
                future.cancel()


def _busy_pair_so_far(peeks: list) -> Optional[TaskMeasurement]:
    """A pair still running that clearly overlaps or clearly takes turns, else None."""
    if len(peeks) != 2:
        return None
    elapsed_s = min(sample.wall_s for sample in peeks)
    if elapsed_s < EARLY_CPU_AFTER_S:
        return None
    wanted_share = sum(s.cpu_s + s.runqueue_s for s in peeks) / (2 * elapsed_s)
    if wanted_share < 0.45:  # partly waiting: let the calls finish before judging
        return None
    overlap = sum(s.cpu_s / max(elapsed_s - s.runqueue_s, s.cpu_s, 1e-9) for s in peeks)
    if EARLY_CLEAR_OVERLAP[0] <= overlap < EARLY_CLEAR_OVERLAP[1]:
        return None
    return TaskMeasurement(
        wall_s=elapsed_s,
        cpu_s=elapsed_s,
        pair_wall_s=elapsed_s,
        pair_cpu_s=overlap * elapsed_s,
        calls=0,
    )


def _put_entry(arrivals: queue.SimpleQueue, entry: tuple, _future: cf.Future) -> None:
    arrivals.put(entry)


def _explain(plan: _Plan) -> str:
    decision = plan.decision
    assert decision is not None
    measured = decision.measured
    lines = [
        f"{plan.label}: {decision.kind} -> {decision.backend} "
        f"({decision.workers} worker{'s' if decision.workers != 1 else ''}"
        f"{f', chunks of {decision.chunksize}' if decision.chunksize > 1 else ''}), "
        f"expected {decision.expected_speedup:.2f}x"
    ]
    lines.append(
        f"  measured {measured.calls} real call{'s' if measured.calls != 1 else ''}: one call "
        f"{measured.wall_s * 1000:.3f} ms wall, {measured.cpu_s * 1000:.3f} ms CPU "
        f"({measured.cpu_share:.0%} CPU)"
    )
    if measured.overlap is not None:
        lines.append(
            f"  two calls together on two threads kept {measured.overlap:.2f} cores busy "
            f"(2.0: they overlap; 1.0: they take turns on the GIL)"
        )
    lines.append(f"  why: {decision.reason}")
    lines.extend(f"  note: {note}" for note in plan.notes)
    return "\n".join(lines)


class _Timers:
    """One thread that runs callbacks at deadlines: task timeouts, peeks at measured calls."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="gilwise-timers", daemon=True)
        self._thread.start()

    def add(self, deadline_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the timer thread at ``deadline_s`` (time.monotonic)."""
        with self._cond:
            heapq.heappush(self._heap, (deadline_s, next(_task_numbers), callback))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait_s = None if not self._heap else self._heap[0][0] - time.monotonic()
                    self._cond.wait(wait_s)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._heap)
            callback()

    def stop(self, wait: bool) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()


# --- one-liners -------------------------------------------------------------------------


def map(
    fn: Callable[..., Any],
    iterable: Iterable[Any],
    backend: str = "auto",
    workers: Optional[int] = None,
    ordered: bool = True,
    progress: Optional[bool] = None,
) -> Iterator[Any]:
    """Stream ``fn(item)`` for each item, run concurrently on the right backend (a generator).

    Reads the input lazily (an endless generator is fine) with a bounded number of calls in
    flight. ``ordered=False`` yields results as they complete. ``progress``: a rich progress
    bar on stderr; None shows it only when stderr is a terminal and the run lasts more than
    a couple of seconds. The pool lives as long as the generator: closing it early cancels
    the calls that have not started and frees every worker.
    """
    with Executor(backend, workers) as executor:
        results = executor._map(fn, (iterable,), None, "auto", "auto", ordered=ordered)
        if progress is True or (progress is None and _stderr_is_terminal()):
            results = _with_progress(results, iterable, progress, _label(fn))
        try:
            yield from results
        except GeneratorExit:
            executor.shutdown(wait=True, cancel_futures=True)
            raise


def _with_progress(
    results: Iterator[Any], iterable: Iterable[Any], progress: Optional[bool], label: str
) -> Iterator[Any]:
    total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
    show_after_s = 0.0 if progress else 2.0
    started_s = time.monotonic()
    bar = None
    task_id = None
    done = 0
    try:
        for value in results:
            done += 1
            if bar is None and time.monotonic() - started_s >= show_after_s:
                from rich.progress import Progress

                bar = Progress(transient=False)
                bar.start()
                task_id = bar.add_task(label, total=total, completed=done)
            elif bar is not None and done % 64 == 0:
                bar.update(task_id, completed=done)  # type: ignore[arg-type]
            yield value
    finally:
        if bar is not None:
            bar.update(task_id, completed=done)  # type: ignore[arg-type]
            bar.stop()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def classify(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Decision:
    """Decide what kind of work ``fn(*args, **kwargs)`` is, without a pool.

    Calls fn three times: once alone, then twice at the same moment on two threads (to see
    whether calls overlap or take turns on the GIL); a coroutine function is run three times
    on a private event loop. Blocking; re-raises the first exception a call raised.
    """
    from ._measure import measure_three_calls

    _, measured = measure_three_calls(fn, args, kwargs)
    return decide_for_task(measured, _runtime.current())


__all__ = ["Executor", "classify", "map"]
