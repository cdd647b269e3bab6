"""The Executor: a concurrent.futures.Executor that dispatches each task to a backend.

How a task moves: ``submit`` puts it on its function's queue (future PENDING, so ``cancel``
works); the Executor hands it to a backend only when that backend has a free worker, and
marks it RUNNING then; the backend's outcome settles the caller's future (after retries).
So future states, cancellation, retries and timeouts behave the same on every backend.

With ``backend="auto"`` each function's first calls are handed over wrapped for measuring
(on threads, or the event loop for coroutines) and the measuring driver (gilwise._measuring,
shared with pipeline stages) has its Chooser (gilwise._chooser) decide where the rest run.
``map`` lives in _map.py; the one-liners in _api.py.

Ctrl-C (KeyboardInterrupt) while the Executor waits, in a ``with`` block, or at interpreter
exit after an uncaught Ctrl-C: ``_interrupt`` cancels what has not started, fails what is
running with TaskInterruptedError and shuts every backend down with ``interrupt=True``
(process workers are killed; threads are abandoned), without waiting.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Awaitable
from concurrent import futures as cf
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Iterator,
    Literal,
    Optional,
    TypeVar,
    Union,
    overload,
)

from .. import _params, _runtime
from .. import backends as _backends
from .._callables import is_coroutine_function
from .._chooser import (
    GIL_RELEASED_CLEAR,
    REMOTE_BACKENDS,
    Chooser,
    Measure,
    key,
    label,
    warm_calls,
)
from .._chunks import submit_chunk
from .._decide import Decision
from .._first_call import FirstCall
from .._first_call import merged as merged_reading
from .._measuring import Measuring
from .._retry import Retry, as_retry
from ..backends._workqueue import exiting_after_interrupt
from ..errors import NotPicklableError, TaskInterruptedError, TaskTimeoutError
from ._tasks import Lane, Plan, Task
from ._timers import Timers

if TYPE_CHECKING:  # for type checkers only: ParamSpec is typing's from 3.10
    from typing_extensions import ParamSpec

    P = ParamSpec("P")
R = TypeVar("R")

# Threads the auto Executor measures first calls on (created on demand, reused while
# functions are measured; they end once none is, see Executor._retire_measuring).
_MEASURE_THREADS = 64
_MEASURE_LANE = ("measure", 0)
_retired_lanes = itertools.count()

_live_executors: weakref.WeakSet = weakref.WeakSet()


def _run_coroutine(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run an ``async def`` function to completion on a fresh event loop (non-asyncio backends)."""
    import asyncio

    return asyncio.run(fn(*args, **kwargs))


def _interrupted_error(what: str) -> TaskInterruptedError:
    return TaskInterruptedError(
        f"{what} was interrupted (Ctrl-C or shutdown(interrupt=True)) before it finished"
    )


class Executor(cf.Executor):
    """A concurrent.futures.Executor over gilwise's backends, with ``backend="auto"``.

    ``backend``: "auto" (measure each function's first calls, then choose), or one of
    "inline", "thread", "process", "asyncio", "interpreter", "dask". ``max_workers``: the
    pool size, an int > 0 (auto: an upper bound for every pool it creates). ``retries``:
    how many times a call that raised is run again before its exception is delivered (an
    int, or a ``gilwise.pipeline.Retry`` for backoff and exception types; timeouts and
    interrupts are not retried). ``timeout``: seconds per task; a task running longer
    fails with TaskTimeoutError (a process worker is killed and replaced, a coroutine is
    cancelled, a thread cannot be stopped: its result is discarded when it finishes).
    ``scale_out``: a dask scheduler address (or a distributed.Client) that auto uses for
    GIL-bound work instead of local processes. ``initializer``/``initargs`` (thread and
    process backends) and other ``backend_options`` go to the backend; an option the
    backend does not know raises TypeError.

    Thread safe. Use as a context manager, or call ``shutdown``.
    """

    def __init__(
        self,
        backend: str = "auto",
        max_workers: Optional[int] = None,
        *,
        retries: Union[int, Retry] = 0,
        timeout: Optional[float] = None,
        scale_out: Any = None,
        **backend_options: Any,
    ) -> None:
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a backend name (a str), got {backend!r}")
        if backend != "auto":
            _backends.backend_class(backend)  # ValueError naming the valid backends
        self.max_workers = _params.workers(max_workers)
        self._retry = as_retry(retries)
        self.retries = self._retry.times
        self.timeout_s = _params.seconds(timeout, "timeout")
        self.backend_name = backend
        self.scale_out = scale_out
        self._backend_options = backend_options
        self._check_options(backend, backend_options)
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._unfinished = 0
        self._shutdown = False
        self._closed = False
        self._interrupted = False
        self._pumping = False
        self._lanes: dict[tuple[str, int], Lane] = {}
        self._plans: dict[Any, Plan] = {}
        self._ready: dict[Any, Plan] = {}  # plans with queued tasks, in arrival order
        self._running: set[Task] = set()  # handed to a backend, not settled
        self._backing_off: set[Task] = set()  # failed, to be retried after a back-off
        self._timer_thread: Optional[Timers] = None
        self._fixed: Optional[Plan] = None
        self._fixed_lane: Optional[Lane] = None
        # auto forks the worker service's zygote at its first task, not here (see _prefork).
        self._prefork_due = backend == "auto"
        if backend == "process":
            _prepare_process_workers(backend, scale_out, backend_options)
        if backend != "auto":
            self._fixed_lane = self._lane(backend, max_workers, options=backend_options)
            self._fixed = self._new_plan(None, Chooser(backend))
            self._fixed.lane = self._fixed_lane
        _live_executors.add(self)

    @staticmethod
    def _check_options(backend: str, options: dict) -> None:
        """TypeError now for an option no backend this Executor may use accepts."""
        if not options:
            return  # nothing to check (and no backend module to import for it)
        if backend != "auto":
            _backends.backend_class(backend).check_options(options)
            return
        # auto gives the options to every pool it opens: each must know them all.
        for name in ("thread", "process"):
            _backends.backend_class(name).check_options(options)

    # --- public API ---------------------------------------------------------------------

    @overload
    def submit(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> cf.Future[R]: ...

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[R]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return its Future (PENDING until a worker is free).

        Raises RuntimeError after shutdown, and at once the backend's error for a task it
        cannot run (e.g. NotPicklableError for a process backend).
        """
        if not callable(fn):
            raise TypeError(f"submit() needs a callable as its first argument, got {fn!r}")
        if self._fixed_lane is not None:
            if self._fixed_lane.name != "asyncio" and is_coroutine_function(fn):
                fn, args = _run_coroutine, (fn, *args)  # its own event loop in the worker
            self._fixed_lane.backend.validate(fn, args, kwargs)
        return self._enqueue(fn, args, kwargs, key(fn) if self._fixed is None else None, fn)

    @overload
    async def submit_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...

    @overload
    async def submit_async(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    async def submit_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``await`` the result of ``fn(*args, **kwargs)`` from async code (any backend)."""
        import asyncio

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    @overload  # type: ignore[override]
    def map(
        self,
        fn: Callable[..., Awaitable[R]],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: Union[int, str] = "auto",
        buffersize: Union[int, str, None] = "auto",
        progress: Any = False,
    ) -> Iterator[R]: ...

    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: Union[int, str] = "auto",
        buffersize: Union[int, str, None] = "auto",
        progress: Any = False,
    ) -> Iterator[R]: ...

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: Union[int, str] = "auto",
        buffersize: Union[int, str, None] = "auto",
        progress: Any = False,
    ) -> Iterator[Any]:
        """Like ``builtins.map`` run concurrently; results in input order.

        Lazy and bounded: inputs are read only as results are consumed, with at most
        ``buffersize`` tasks in flight ("auto": twice the workers, and on worker processes
        tasks that finished while the consumer waits for an earlier one do not count, up
        to four times as many in all; None: read all input now, as concurrent.futures
        does). ``chunksize`` batches calls into one task ("auto": sized from measured call
        durations so tiny calls are cheap); a chunk keeps every
        call's own outcome: results before a failing call are delivered, then its
        exception is raised (a failing call is retried on its own under ``retries``).
        ``timeout``: seconds from this call; a result not ready by then raises TimeoutError.
        Closing the iterator cancels what has not started. ``progress``: True for a rich
        progress bar on stderr, or a callable receiving ``(done, total)`` (total None when
        the input has no length). Under auto, an Executor's first map in a program with one
        thread runs its first call in the caller, inside ``map()`` (its duration says
        whether process workers may pay; its result or exception is the first).
        """
        from ._map import map_results

        return map_results(
            self, fn, iterables, timeout, chunksize, buffersize, ordered=True, progress=progress
        )

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, interrupt: bool = False
    ) -> None:
        """Stop accepting tasks; optionally cancel queued ones; with ``wait``, finish the rest.

        Idempotent. Without ``wait`` the queued tasks still run and the pools close when
        they are done. After a waiting shutdown no thread or process of this Executor lives.
        ``interrupt=True`` (what Ctrl-C does): cancel what has not started, fail what is
        running with TaskInterruptedError, stop process workers, abandon busy threads, and
        return at once.
        """
        if interrupt:
            self._interrupt()
            return
        with self._lock:
            self._shutdown = True
            cancelled = self._take_queued() if cancel_futures else []
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
            except KeyboardInterrupt:  # Ctrl-C while waiting: stop everything now
                self._interrupt()
                raise
            self._close(wait=True)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._interrupt()  # Ctrl-C inside the block: nothing more is waited for
        else:
            self.shutdown(wait=True)
        return False

    @property
    def decisions(self) -> dict[str, Decision]:
        """The latest Decision per function label (auto mode; empty for a fixed backend)."""
        with self._lock:
            return {
                plan.chooser.label: plan.chooser.decision
                for plan in self._plans.values()
                if plan.chooser.decision is not None
            }

    def explain(self, fn: Callable[..., Any]) -> str:
        """A readable account of what was measured about ``fn`` and which backend it got, why."""
        if self._fixed is not None:
            return (
                f"{label(fn)}: backend fixed to {self.backend_name!r} by the caller; nothing "
                f"was measured. Use Executor(backend='auto') to let gilwise choose."
            )
        with self._lock:
            plan = self._plans.get(key(fn))
            if plan is None or plan.chooser.decision is None:
                state = "measuring its first calls" if plan is not None else "never submitted"
                return (
                    f"{label(fn)}: no decision yet ({state}). The first calls submitted are "
                    f"measured, then the rest run on the chosen backend."
                )
            return plan.chooser.explain()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "running"
        return f"<gilwise.Executor backend={self.backend_name!r} {state}>"

    # --- queueing and dispatch ----------------------------------------------------------

    def _plan_for(self, key_: Any, label_fn: Callable[..., Any]) -> Plan:
        """Under the lock: the plan of ``key_`` (the fixed plan for a named backend)."""
        if self._fixed is not None:
            return self._fixed
        plan = self._plans.get(key_)
        if plan is None:
            chooser = Chooser(
                label(label_fn),
                is_coroutine_function(label_fn),
                max_workers=self.max_workers,
                scale_out=self.scale_out,
                memory_key=key_ if self.scale_out is None else None,
            )
            chooser.recall()  # decided by an earlier Executor of this program: no measuring
            plan = self._plans[key_] = self._new_plan(key_, chooser)
        return plan

    def _new_plan(self, key_: Any, chooser: Chooser) -> Plan:
        """A plan with its measuring driver: decisions open lanes of this Executor."""
        plan = Plan(key_, chooser)
        plan.measuring = Measuring(
            chooser,
            self._lock,
            lambda name, workers, _early: self._lane(name, workers),
            functools.partial(self._decided, plan),
            lambda: self._closed,
        )
        return plan

    def _stays_here(self, key_: Any) -> bool:
        """Whether ``key_``'s function takes an earlier Executor's decision that keeps it in
        this process (inline, threads): no zygote to fork for it."""
        with self._lock:
            plan = self._plans.get(key_)
            return (
                plan is not None
                and plan.chooser.recalled is not None
                and not (plan.chooser.remote or plan.chooser.crashed)
            )

    def _recalled(self, key_: Any) -> bool:
        """Whether ``key_``'s function takes an earlier Executor's decision (Chooser.recall):
        then no first call runs in the caller (one sent to processes never runs here)."""
        with self._lock:
            plan = self._plans.get(key_)
            return plan is not None and plan.chooser.recalled is not None

    def _may_prefork(self) -> bool:
        """auto, before its first task: could a fork of this program still become the
        worker service's zygote (one thread, no zygote yet)? Cheap: imports nothing."""
        return (
            self._prefork_due
            and not self._shutdown
            and threading.active_count() == 1
            and not _zygote_up()
        )

    def _prefork(
        self,
        first_call_s: Optional[float] = None,
        calls_left: Optional[int] = None,
        first_cpu_s: Optional[float] = None,
    ) -> None:
        """auto, once, at its first task: let the worker service fork its zygote from this
        program while it has one thread (milliseconds, every import done), unless a first
        call run here (``first_call_s`` of wall time and ``first_cpu_s`` of its thread's CPU,
        with ``calls_left`` more when the input is sized) says processes will not pay. Not
        at Executor(): a fork makes this program copy each page it writes afterwards (~1 ms
        per MB), and the process machinery's import costs ~15 ms, which work that stays here
        (x + 1 over a big list, downloads) must not pay. When the first call says processes
        may pay, the workers a pool would use start now too (they are ready when the
        decision comes, instead of the second one starting after it)."""
        self._prefork_due = False
        workers = 1
        if first_call_s is not None:
            if not _processes_may_pay(first_call_s, calls_left, self.max_workers, first_cpu_s):
                return
            workers = _pool_size(self.max_workers)
        _prepare_process_workers(self.backend_name, self.scale_out, self._backend_options, workers)

    def _first_call_ran(
        self,
        key_: Any,
        label_fn: Callable[..., Any],
        firsts: list[FirstCall],
        calls_left: Optional[int],
        *,
        imported: bool = False,
    ) -> None:
        """auto, before its first task: a map ran its first calls in the caller (``firsts``,
        in order: each one's timing and the GIL probe's reading; several when the probe
        needed more than one to tell, see _chooser.probe_more; ``calls_left`` more when the
        input is sized; ``imported``: the first call imported modules). The Chooser files
        them and decides at once when they are enough (see Chooser.first_call): then, for
        processes, the worker service forks its zygote with the pool's workers first, and
        the map's next calls go straight to them, with no pair measured on threads. Else, as
        before, the zygote is forked when processes may pay (not for calls that clearly
        released the GIL: threads suit them) and a pair is measured."""
        may_prefork = self._may_prefork()
        self._prefork_due = False
        # Calls that raised tell nothing sure: only those before the first failure count.
        good = list(itertools.takewhile(lambda call: call.outcome.exception() is None, firsts))
        measured = prospect = None
        warm = warm_calls(good, imported)
        gil = merged_reading([call.gil for call in warm]) if warm else firsts[-1].gil
        if good:
            with self._lock:
                plan = self._plan_for(key_, label_fn)
                measured = plan.chooser.first_call(
                    good[-1].sample,
                    gil,
                    imported=imported,
                    before=tuple(call.sample for call in good[:-1]),
                )
                prospect = None if measured is None else plan.chooser.prospect(measured)
        if prospect is None:
            if gil is not None and gil.clear and gil.held_share <= GIL_RELEASED_CLEAR:
                return  # native code that releases the GIL: threads, no processes
            if may_prefork:
                sample = (good or firsts)[-1].sample
                self._prefork(sample.idle_machine_wall_s, calls_left, sample.cpu_s)
            return
        if prospect.backend == "process":
            _prepare_process_workers(
                self.backend_name, self.scale_out, self._backend_options, prospect.workers
            )
        with self._lock:
            if not self._closed and plan.chooser.decision is None:
                self._decide(plan, measured)

    def _expect_calls(self, key_: Any, label_fn: Callable[..., Any], calls: int) -> None:
        """A map over a sized input will hand ``calls`` calls of this function: auto keeps
        small work (less than starting process workers would cost) in this process."""
        with self._lock:
            self._plan_for(key_, label_fn).chooser.expect(calls)

    def _enqueue(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        key_: Any,
        label_fn: Callable[..., Any],
        items: int = 1,
        *,
        pump: bool = True,
        tries: int = 0,
    ) -> cf.Future:
        if self._prefork_due and not self._stays_here(key_):
            self._prefork()
        future: cf.Future = cf.Future()
        task = Task(future, fn, args, kwargs, key_, items)
        task.tries = tries
        with self._lock:
            if self._shutdown:
                raise RuntimeError(
                    "cannot schedule new tasks after shutdown; create a new gilwise.Executor"
                )
            plan = self._plan_for(key_, label_fn)
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
        batch: list[tuple[Task, Lane, Optional[Measure]]] = []
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
                    self._running.discard(task)
                    owner = self._owner(task)
                    if measure is not None:
                        owner.measuring.not_started()
                    owner.queue.appendleft(task)
                    self._ready[owner.key] = owner
            raise

    def _owner(self, task: Task) -> Plan:
        return self._fixed if self._fixed is not None else self._plans[task.key]

    def _take_ready(self) -> list[tuple[Task, Lane, Optional[Measure]]]:
        """Under the lock: pop every task that may start now, marking it RUNNING."""
        batch: list[tuple[Task, Lane, Optional[Measure]]] = []
        if self._interrupted:
            return batch
        for plan in list(self._ready.values()):
            if plan.lane is None and plan.chooser.recalled is not None:
                self._decide(plan, plan.chooser.recalled)
            if plan.lane is not None:
                lane = plan.lane
                while plan.queue and lane.in_flight < lane.capacity:
                    task = plan.queue.popleft()
                    if self._start(task):
                        lane.in_flight += 1
                        self._running.add(task)
                        batch.append((task, lane, None))
            elif plan.chooser.measuring == 0:
                self._take_for_measuring(plan, batch)
            if not plan.queue:
                del self._ready[plan.key]
        return batch

    def _start(self, task: Task) -> bool:
        if task.started:
            return True
        if task.future.set_running_or_notify_cancel():
            task.started = True
            return True
        self._unfinished -= 1  # cancelled while queued
        if self._unfinished == 0:
            self._settled.notify_all()
        return False

    def _take_for_measuring(self, plan: Plan, batch: list) -> None:
        measuring = plan.measuring
        wanted = 2 if measuring.next_step() == "pair" and len(plan.queue) >= 2 else 1
        started: list[Task] = []
        while plan.queue and len(started) < wanted:
            task = plan.queue.popleft()
            if self._start(task):
                started.append(task)
        if not started:
            return
        is_coroutine = plan.chooser.is_coroutine
        lane = self._measure_lane(is_coroutine)
        measures = measuring.start([task.fn for task in started])
        for task, measure in zip(started, measures):
            lane.in_flight += 1
            self._running.add(task)
            batch.append((task, lane, measure))
        if not is_coroutine and plan.queue and not self._closed:
            # Others are waiting: if these calls turn out to be mostly waiting, say so early.
            now_s = time.monotonic()
            timers = self._timers()
            measuring.schedule_peeks(
                measures,
                lambda delay_s, peek: timers.add(now_s + delay_s, peek, tag=("peek", plan.key)),
                then=self._pump,
            )

    def _hand_over(self, task: Task, lane: Lane, measure: Optional[Measure]) -> None:
        timeout_s = self.timeout_s
        task.handed_at_s = time.perf_counter()
        task.tries += 1
        try:
            if measure is not None:
                per_task_s = None if timeout_s is None else timeout_s * task.items
                backend_future = lane.backend.submit(
                    measure.call, task.args, task.kwargs, timeout_s=per_task_s
                )
            elif task.items > 1:
                fn, items, spread = task.args
                backend_future = submit_chunk(
                    lane.backend, lane.name in REMOTE_BACKENDS, fn, items, spread, timeout_s
                )
            else:
                backend_future = lane.backend.submit(
                    task.fn, task.args, task.kwargs, timeout_s=timeout_s
                )
        except NotPicklableError as exc:
            crashed = self._fixed is None and self._owner(task).chooser.crashed
            if self._fixed is None and lane.name != "thread" and not crashed:
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
            self._watch(task, timeout_s * task.items)
        backend_future.add_done_callback(
            functools.partial(self._on_backend_done, task, lane, measure)
        )

    def _finish_hand_over_failure(
        self, task: Task, lane: Lane, measure: Optional[Measure], exc: BaseException
    ) -> None:
        with self._lock:
            lane.in_flight -= 1
            self._running.discard(task)
            if measure is not None:
                self._plans[task.key].measuring.not_started()
        self._settle(task, exc=exc)

    def _reroute_to_threads(
        self, task: Task, lane: Lane, measure: Optional[Measure], exc: NotPicklableError
    ) -> None:
        with self._lock:
            lane.in_flight -= 1
            self._running.discard(task)
            plan = self._plans[task.key]
            plan.lane = self._lane("thread", lane.capacity)
            plan.chooser.fall_back_to_threads(str(exc))
            task.tries -= 1
            plan.queue.appendleft(task)
            self._ready[plan.key] = plan

    def _on_backend_done(
        self, task: Task, lane: Lane, measure: Optional[Measure], backend_future: cf.Future
    ) -> None:
        duration_s = time.perf_counter() - task.handed_at_s
        try:
            exc = backend_future.exception()
        except cf.CancelledError as cancelled:
            exc = cancelled
        with self._lock:
            lane.in_flight -= 1
            self._running.discard(task)
            if self._interrupted:
                retry_in_s = None
            else:
                plan = self._owner(task)
                if measure is not None:
                    plan.measuring.finished(measure, ok=exc is None, items=task.items)
                    self._retire_measuring()
                elif (
                    plan.lane is lane  # a task of a lane left behind says nothing of the new one
                    and (plan.chooser.decision is not None or plan is self._fixed)
                    and plan.measuring.ran(duration_s / task.items, task.items)
                ):
                    plan.lane = None  # re-measure: the next calls go to the measure lane
                if self._fixed is None:  # a crashed worker: processes only, from now on
                    if exc is not None:
                        plan.measuring.failed(exc)
                    elif task.items > 1:
                        plan.measuring.chunk_ran(backend_future.result())
                retry_in_s = None
                if exc is not None and task.items == 1 and not task.future.done():
                    retry_in_s = self._retry.delay_before_retry(exc, task.tries)
                if retry_in_s == 0.0:
                    plan.queue.appendleft(task)
                    self._ready[plan.key] = plan
                elif retry_in_s is not None:
                    self._backing_off.add(task)
        if retry_in_s is None:
            if exc is None:
                self._settle(task, result=backend_future.result())
            else:
                self._settle(task, exc=exc)
        elif retry_in_s > 0:
            self._timers_add(retry_in_s, functools.partial(self._requeue, task))
        del backend_future
        # Whoever queues a task pumps (or leaves it to the thread pumping now), so an empty
        # ready set needs no pump here; a non-empty one may fit into the worker just freed.
        if self._ready:
            self._pump()

    def _retry_later(
        self, fn: Callable[..., Any], args: tuple, key_: Any, delay_s: float
    ) -> cf.Future:
        """A failed call of a map's chunk is tried again on its own: a task that has used
        one try (the retry policy counts on), queued after ``delay_s`` (the policy's first
        back-off, as a failed task's retry waits). Raises RuntimeError after shutdown."""
        if delay_s <= 0:
            return self._enqueue(fn, args, {}, key_, fn, tries=1)
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()  # started already, like any retry
        task = Task(future, fn, args, {}, key_)
        task.tries = 1
        task.started = True
        with self._lock:
            if self._shutdown:
                raise RuntimeError(
                    "cannot schedule new tasks after shutdown; create a new gilwise.Executor"
                )
            self._unfinished += 1
            self._backing_off.add(task)
        self._timers_add(delay_s, functools.partial(self._requeue, task))
        return future

    def _requeue(self, task: Task) -> None:
        """Timer thread: a retry's back-off is over."""
        with self._lock:
            self._backing_off.discard(task)
            if self._interrupted or task.future.done():
                return
            plan = self._owner(task)
            plan.queue.appendleft(task)
            self._ready[plan.key] = plan
        self._pump()

    def _settle(
        self, task: Task, *, result: Any = None, exc: Optional[BaseException] = None
    ) -> None:
        future = task.future
        try:
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
        except cf.InvalidStateError:  # already settled by its timeout or an interrupt
            return
        with self._lock:
            self._unfinished -= 1
            done = self._unfinished == 0
            if done:
                self._settled.notify_all()
            close_now = done and self._shutdown and not self._closed
        if close_now:
            self._close(wait=False)

    # --- deciding (auto): the measuring driver decides, this opens the lanes ------------

    def _decide(self, plan: Plan, measured: Any = None, *, early: bool = False) -> None:
        """Under the lock: decide through the plan's measuring driver (see _decided)."""
        plan.measuring.decide(measured, early=early)

    def _decided(self, plan: Plan, decision: Decision, lane: Optional[Lane], early: bool) -> None:
        """Under the lock: the plan's function was decided (``lane``: the lane opened for
        it, None when an early decision was confirmed): move its queue there, wake the map
        windows waiting for the decision."""
        if lane is not None:
            plan.lane = lane
        if plan.queue:
            self._ready[plan.key] = plan
        if self._timer_thread is not None:  # its peeks have nothing left to decide
            self._timer_thread.discard(("peek", plan.key))
        listeners, plan.listeners = plan.listeners, []
        for listener in listeners:
            listener()

    def _inline_timing(self, key_: Any) -> Optional[float]:
        """None if a lazy inline chunk of this function runs its calls untimed; else it
        times each call, and one longer than this (seconds) ends the chunk."""
        with self._lock:
            plan = self._plans.get(key_)
            if plan is None or not plan.chooser.times_inline_calls():
                return None
            return plan.chooser.long_inline_call_s()

    def _ran_inline(
        self, key_: Any, calls: int, wall_s: float, cpu_s: float, queued_s: float, *, timed: bool
    ) -> None:
        """A map window ran a lazy inline chunk (see Chooser.ran_inline): decide again if
        the calls' running mean says so, or re-measure after a lasting change."""
        with self._lock:
            plan = self._plans.get(key_)
            if self._closed or plan is None or plan.lane is None or plan.lane.name != "inline":
                return
            measured = plan.chooser.ran_inline(calls, wall_s, cpu_s, queued_s, timed=timed)
            workers = 0
            if measured is None:
                if plan.chooser.deciding:
                    plan.lane = None  # re-measure: the next calls go to the measure lane
            else:
                workers = self._workers_to_fork(plan, measured)
                if not workers:
                    self._decide(plan, measured)
                    measured = None
        if measured is not None:
            # For processes, from a program that is one thread again (the measuring threads
            # ended): the worker service forks its zygote from it first (milliseconds,
            # every import done) with the pool's workers, as at a first task that may pay.
            _prepare_process_workers(
                self.backend_name, self.scale_out, self._backend_options, workers
            )
            with self._lock:
                if not self._closed and plan.lane is not None and plan.lane.name == "inline":
                    self._decide(plan, measured)
        if self._ready:
            self._pump()

    def _workers_to_fork(self, plan: Plan, measured: Any) -> int:
        """Under the lock: the process workers that deciding from ``measured`` would need
        from a worker service this program (one thread, no zygote yet) can fork now; 0 when
        it would not decide for processes, or cannot fork. (The Chooser's own prospect: the
        decision _decide will take, many small calls sent to processes included.)"""
        if self.scale_out is not None or threading.active_count() != 1 or _zygote_up():
            return 0
        decision = plan.chooser.prospect(measured)
        return decision.workers if decision.backend == "process" else 0

    def _measure_lane(self, is_coroutine: bool) -> Lane:
        if is_coroutine:
            return self._lane("asyncio", None)
        return self._lane("thread", _MEASURE_THREADS, key_=_MEASURE_LANE)

    def _retire_measuring(self) -> None:
        """Under the lock: once every function is decided and none is being measured, let
        the measuring threads end (a new lane starts them again for the next function). The
        program is then back to its own threads: if a later decision (auto's watch on calls
        run inline) sends work to processes, the worker service can fork its zygote from it
        (milliseconds) instead of starting a fresh interpreter. Closing joins them."""
        lane = self._lanes.get(_MEASURE_LANE)
        if lane is None or lane.in_flight:
            return
        if any(
            plan.chooser.measuring or plan.chooser.decision is None for plan in self._plans.values()
        ):
            return
        del self._lanes[_MEASURE_LANE]
        self._lanes[("measure-retired", next(_retired_lanes))] = lane
        lane.backend.shutdown(wait=False)

    def _lane(
        self,
        name: str,
        workers: Optional[int],
        *,
        options: Optional[dict] = None,
        key_: Optional[tuple[str, int]] = None,
    ) -> Lane:
        """The lane (a backend instance) for ``name`` with ``workers``, created on first use."""
        if workers is not None and self.max_workers is not None and key_ is None:
            workers = min(workers, self.max_workers)
        lane_key = key_ or (name, workers or 0)
        lane = self._lanes.get(lane_key)
        if lane is None:
            if options is None:
                options = {} if key_ is not None else dict(self._backend_options)
                if name in ("inline", "asyncio", "interpreter", "dask"):
                    options = {}  # initializer & co. are for the thread and process pools
                if name == "dask" and self.scale_out is not None:
                    scale_key = "address" if isinstance(self.scale_out, str) else "client"
                    options.setdefault(scale_key, self.scale_out)
            backend = _backends.create(name, workers, **options)
            lane = Lane(name, backend)
            self._lanes[lane_key] = lane
        return lane

    # --- timeouts, closing, interrupting ------------------------------------------------

    def _timers(self) -> Timers:
        """Under the lock: the timer thread, started on first use."""
        if self._timer_thread is None:
            self._timer_thread = Timers()
        return self._timer_thread

    def _timers_add(self, delay_s: float, callback: Callable[[], None]) -> None:
        with self._lock:
            timers = self._timers()
        timers.add(time.monotonic() + delay_s, callback)

    def _watch(self, task: Task, timeout_s: float) -> None:
        self._timers_add(timeout_s, functools.partial(self._expire, task, timeout_s))

    def _expire(self, task: Task, timeout_s: float) -> None:
        if task.future.done():
            return
        self._settle(
            task,
            exc=TaskTimeoutError(
                f"task {label(task.fn)} did not finish within its timeout of {timeout_s} s; its "
                f"thread cannot be stopped and its result will be discarded. Raise timeout=, or "
                f"use backend='process' to have slow tasks killed."
            ),
        )

    def _take_queued(self) -> list[Task]:
        """Under the lock: remove and return every queued task that has not started."""
        cancelled: list[Task] = []
        plans = [self._fixed] if self._fixed is not None else list(self._plans.values())
        for plan in plans:
            # A retry waiting for a worker has started already: it stays.
            cancelled.extend(task for task in plan.queue if not task.started)
            plan.queue = type(plan.queue)(task for task in plan.queue if task.started)
            if not plan.queue:
                self._ready.pop(plan.key, None)
        return cancelled

    def _interrupt(self) -> None:
        """Ctrl-C: cancel what has not started, fail what runs, stop every pool; no waiting."""
        with self._lock:
            self._shutdown = True
            self._interrupted = True
            queued = self._take_queued()
            started_queued = [task for plan in self._all_plans() for task in plan.queue]
            for plan in self._all_plans():
                plan.queue.clear()
            self._ready.clear()
            # A retry waiting for its back-off has started too: its timer is stopped below.
            running = list(self._running) + started_queued + list(self._backing_off)
            self._backing_off.clear()
            lanes = list(self._lanes.values())
            self._closed = True
            timers, self._timer_thread = self._timer_thread, None
        # Running tasks first: a queued task's cancellation may let a running one finish.
        for task in running:
            self._settle(task, exc=_interrupted_error(f"task {label(task.fn)}"))
        for task in queued:
            if task.future.cancel():
                self._forget_one()
        if timers is not None:
            timers.stop(wait=False)
        for lane in lanes:
            _shutdown_interrupting(lane.backend)

    def _all_plans(self) -> list[Plan]:
        return [self._fixed] if self._fixed is not None else list(self._plans.values())

    def _forget_one(self) -> None:
        with self._lock:
            self._unfinished -= 1
            if self._unfinished == 0:
                self._settled.notify_all()

    def _close(self, wait: bool) -> None:
        with self._lock:
            if self._closed:
                lanes: list[Lane] = []
            else:
                self._closed = True
                lanes = list(self._lanes.values())
            timers, self._timer_thread = self._timer_thread, None
        if timers is not None:
            timers.stop(wait=wait)
        for lane in lanes:
            lane.backend.shutdown(wait=wait)
        if wait and not self._interrupted:
            # a pool closed without waiting (by its last task) may still be ending
            for lane in list(self._lanes.values()):
                lane.backend.shutdown(wait=True)


# A first call shorter than this is never worth a process (tiny calls run inline): far
# below the chooser's TINY_CALL_S, as a function whose first call takes 0.3 ms may have
# 20 ms calls later.
NO_PREFORK_BELOW_S = 0.00005
# What processes must be able to save on the work left for the zygote to be forked: the
# fork and the process machinery's import (~10 ms), then what the chooser weighs for a worker
# forked from the zygote (its WARM_ZYGOTE_START_S, 30 ms), with a margin for a busy machine
# (40 calls of 1.5 ms forked and ran 2x slower than the loop at load ~1.8).
PREFORK_MIN_SAVING_S = 0.05


# A first call whose thread ran less than this share of its wall time mostly waited (I/O,
# sleep): threads or an event loop suit it, processes do not. Low, so that a CPU-bound call
# on a loaded machine (queued for a core half the time or more) still counts as CPU.
WAITING_CPU_SHARE = 0.25


def _pool_size(max_workers: Any) -> int:
    workers = _runtime.current().cores
    return min(workers, max_workers) if isinstance(max_workers, int) else workers


def _processes_may_pay(
    first_call_s: float,
    calls_left: Optional[int],
    max_workers: Any,
    first_cpu_s: Optional[float] = None,
) -> bool:
    """From one call's duration (wall and, if known, its thread's CPU) and the calls left,
    if known: may processes save more than starting them costs?"""
    if first_call_s < NO_PREFORK_BELOW_S:
        return False
    if first_cpu_s is not None and first_cpu_s < WAITING_CPU_SHARE * first_call_s:
        return False  # it mostly waited
    if calls_left is None:
        return True
    workers = _pool_size(max_workers)
    saved_s = calls_left * first_call_s * (1.0 - 1.0 / max(1, workers))
    return saved_s > PREFORK_MIN_SAVING_S


def _zygote_up() -> bool:
    """Is this program's worker service's zygote already there? (False without importing
    the process machinery when nothing has imported it.)"""
    service = sys.modules.get("gilwise.backends._service")
    return service is not None and service.current() is not None


def _prepare_process_workers(backend: str, scale_out: Any, options: dict, workers: int = 1) -> None:
    """See backends.prepare_process_workers (shared with the pipeline's stages)."""
    _backends.prepare_process_workers(backend, options, scale_out=scale_out, workers=workers)


def _shutdown_interrupting(backend: _backends.Backend) -> None:
    try:
        backend.shutdown(wait=False, interrupt=True)
    except TypeError:  # a backend still on protocol v1 (no interrupt): stop waiting for it
        backend.shutdown(wait=False)


def _interrupt_all_at_exit() -> None:
    """At interpreter exit after an uncaught Ctrl-C: nothing of gilwise waits for busy work."""
    if exiting_after_interrupt():
        for executor in list(_live_executors):
            executor._interrupt()


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_interrupt_all_at_exit)

__all__ = ["Executor"]
