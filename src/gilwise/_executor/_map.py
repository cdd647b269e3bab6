"""Executor.map and gilwise.map: a lazy, bounded window of tasks over an input stream.

Inputs are read only as results are consumed: at most ``buffersize`` tasks (calls or
chunks) are in flight. Before a function is decided the window stays small; once its
Chooser decides (maybe while the first calls still run) the window grows at once.

Calls decided inline (tiny) run in the consumer's thread as it reads them: lazy chunks
(a C map over the chunk's inputs; for a list, tuple or range, over the input itself from the
chunk's first index: nothing copied) of about 10 ms of work, starting at LAZY_FIRST_CALLS
calls and growing, each timed (its calls one by one when they are long enough for the
cost) and reported to the function's Chooser, which may decide again (a function whose
first calls were short and whose later ones are long). A timed call much longer than the
ones before it ends its chunk at once, so the Chooser weighs it before the next call runs
here. Lazy chunks read ahead but not yet started then go to the new backend instead,
joined and chunked anew: no call runs twice. Such a map costs ~1.2-1.3x a list
comprehension over the same list (the map's call into Python, the chain over the chunks
and the stop at each chunk's end).

On a process backend, a map of known length keeps at least CHUNKS_PER_WORKER chunks per
worker among the calls left (as multiprocessing.Pool.map does), so the last chunks do
not leave a worker idle while another finishes a long one. With ``buffersize="auto"`` its
window counts the tasks still running or queued: one finished behind a long task at the
front frees its place at once (up to FINISHED_AHEAD times the window in all, results
kept for the consumer), so a worker is not left idle while the consumer waits for the
front (mixed durations: a 20 ms call at the front, 0.3 ms calls behind it).

A chunk's outcome is one entry per call (gilwise._chunks): values are yielded in order up
to a failed call, which is retried on its own under the Executor's retry policy, else its
exception is raised, naming the call's index in the input. The iterator keeps no reference
to a result it has yielded (as concurrent.futures, bpo-14406).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import itertools
import math
import queue
import sys
import threading
import time
from collections import deque
from concurrent import futures as cf
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union, cast

from .. import _params
from .._callables import is_coroutine_function
from .._chooser import MAX_CHUNKSIZE, MAX_LAZY_CHUNKSIZE, REMOTE_BACKENDS, key, label, probe_more
from .._chunks import Failure, run_calls
from .._first_call import FirstCall, run_first_call
from .._measure import TimedCalls, span_since, span_start
from ._progress import with_progress

if TYPE_CHECKING:
    from ._core import Executor


# A map of known length on processes keeps at least this many chunks per worker among the
# calls left (multiprocessing.Pool.map's rule).
CHUNKS_PER_WORKER = 4
# auto's lazy inline chunks start at this many calls and grow this many times per chunk up
# to their size by time (Chooser.lazy_chunksize): sized from the first calls alone
# (microseconds), a first chunk of thousands would run for seconds if the calls after them
# are long.
LAZY_FIRST_CALLS = 8
LAZY_GROWTH = 4
# At most this many calls per lazy chunk of a list, tuple or range input (its chunks are ranges of
# indices: reading ahead costs no memory).
MAX_SEQUENCE_LAZY_CHUNKSIZE = 65536
# With buffersize="auto", a window of tasks on a remote backend holds at most this many
# times its limit of unfinished tasks in all (finished ones keep their results until the
# consumer reaches them).
FINISHED_AHEAD = 4


class MapResults(itertools.chain):
    """The iterator Executor.map and gilwise.map return: results in C (a chain over each
    task's results), plus ``close()`` like a generator's (cancels what has not started and,
    for gilwise.map, frees the pool)."""

    _source: Iterator[Iterator[Any]]

    def close(self) -> None:
        self._source.close()  # type: ignore[attr-defined]


class _Entry:
    """One task in the window: its future (None: a lazy inline chunk, run as it is read),
    whether it is a chunk, its first input index, its inputs."""

    __slots__ = ("chunk", "first", "future", "inputs")

    def __init__(
        self, future: Optional[cf.Future], chunk: bool, first: int, inputs: Union[list, range]
    ) -> None:
        self.future = future
        self.chunk = chunk
        self.first = first
        # A chunk's items (to retry one call on its own); a lazy chunk of a list, tuple or range
        # input: the range of their indices (see _Window._lazy_inputs).
        self.inputs = inputs


def map_results(
    executor: Union[Executor, Callable[[], Executor]],
    fn: Callable[..., Any],
    iterables: tuple,
    timeout: Optional[float],
    chunksize: Union[int, str],
    buffersize: Union[int, str, None],
    *,
    ordered: bool,
    progress: Any = False,
    total: Optional[int] = None,
    probe_first: bool = False,
) -> Iterator[Any]:
    """The iterator behind Executor.map (first tasks submitted now, like concurrent.futures)."""
    if not callable(fn):
        raise TypeError(f"map() needs a callable as its first argument, got {fn!r}")
    if not iterables:
        raise TypeError("map() needs at least one iterable")
    _params.sized(chunksize, "chunksize", ("auto",))
    _params.sized(buffersize, "buffersize", ("auto", None))
    limit_s = _params.seconds(timeout, "timeout")
    end_s = None if limit_s is None else time.monotonic() + limit_s
    length = None
    if all(hasattr(iterable, "__len__") for iterable in iterables):
        with contextlib.suppress(OverflowError):  # range(10**20): a stream of unknown length
            length = min(len(iterable) for iterable in iterables)  # zip stops at the shortest
    if total is None:
        total = length
    spread = len(iterables) != 1
    inputs = zip(*iterables) if spread else iter(iterables[0])
    results = _Window(fn, inputs, spread, end_s, chunksize, buffersize, ordered)
    if length is not None and not spread and type(iterables[0]) in (list, tuple, range):
        results.sequence = iterables[0]  # chunks are slices of it: no per-item copy loop
    results.total = total
    from ._core import Executor

    if isinstance(executor, Executor):
        results.bind(executor)
        if (
            not results.coroutine
            and executor._fixed is None
            and executor._may_prefork()
            and not executor._recalled(results.key)
        ):
            # auto's first task, in a program with one thread: run the first call (or the
            # first few, while the GIL probe cannot tell) here, so that it says whether to
            # fork the worker service's zygote now, or decides at once
            # (Executor._first_call_ran). Their outcomes (or exceptions) are the map's first.
            results.first_call_as_entry(executor)
        results.refill()  # like concurrent.futures: the first tasks are submitted by the call
    else:  # gilwise.map: a factory; the pool is made at the first next() and owned here
        results.make_executor = executor
        results.probe_first = probe_first and not spread
    iterator = results.results()
    if progress:
        iterator = with_progress(iterator, total, progress, label(fn))
    return iterator


class _Window:
    def __init__(
        self,
        fn: Callable[..., Any],
        inputs: Iterator[Any],
        spread: bool,
        end_s: Optional[float],
        chunksize: Union[int, str],
        buffersize: Union[int, str, None],
        ordered: bool,
    ) -> None:
        self.fn = fn
        self.inputs = inputs
        # A list, tuple or range input: read by slicing (a C copy) instead of through
        # ``inputs``, and not copied at all for lazy chunks.
        self.sequence: Union[list, tuple, range, None] = None
        self.spread = spread
        self.end_s = end_s
        self.chunksize = chunksize
        self.buffersize = buffersize
        self.call = fn
        self.coroutine = is_coroutine_function(fn)
        self.key: Any = None
        self.executor: Executor = None  # type: ignore[assignment]
        self.make_executor: Optional[Callable[[], Executor]] = None
        self.probe_first = False  # gilwise.map under auto: first call here (see _owned_outcomes)
        self.window: deque[_Entry] = deque()
        self.arrivals: Optional[queue.SimpleQueue] = None if ordered else queue.SimpleQueue()
        self.read = 0  # inputs read so far
        self.lazy_planned = 0  # auto's lazy inline chunks planned so far (see _ramped)
        self.total: Optional[int] = None  # inputs in all, when the input has a length
        # Set while the consumer waits for the front task, for _on_task_done to wake it.
        self.wake: Optional[threading.Event] = None

    def bind(self, executor: Executor) -> None:
        self.executor = executor
        self.key = key(self.fn) if executor._fixed is None else None
        if self.key is not None and self.total is not None:
            executor._expect_calls(self.key, self.fn, self.total - self.read)
        fixed = executor._fixed_lane
        if self.coroutine and fixed is not None and fixed.name != "asyncio":
            from ._core import _run_coroutine

            self.call = functools.partial(_run_coroutine, self.fn)

    # --- submitting ---------------------------------------------------------------------

    def _chunk_plan(self, in_hand: int = 0) -> tuple[int, Optional[str]]:
        """How many inputs the next task takes, and the lane it goes to (None: undecided).
        ``in_hand``: inputs already read that are to be planned again (not yet run)."""
        if self.coroutine:
            return 1, None  # a chunk runs its calls synchronously; coroutines need the loop
        executor = self.executor
        with executor._lock:
            plan = executor._fixed if executor._fixed is not None else executor._plans.get(self.key)
            lane = None if plan is None or plan.lane is None else plan.lane.name
            if self.chunksize != "auto":
                return int(self.chunksize), lane
            if plan is None or lane is None:
                return 1, None
            if lane == "inline" and self._lazy(MAX_CHUNKSIZE, lane):
                # Read as consumed: a big chunk costs only what it reads ahead (nothing for a
                # list, tuple or range, whose lazy chunks are ranges of indices).
                longest = MAX_LAZY_CHUNKSIZE
                if self.sequence is not None:
                    longest = MAX_SEQUENCE_LAZY_CHUNKSIZE
                if plan is executor._fixed:
                    return longest, lane
                # auto: watched chunk by chunk
                return self._ramped(plan.chooser.lazy_chunksize(longest)), lane
            size = plan.chooser.chunksize(lane)
            if lane in REMOTE_BACKENDS and self.total is not None and plan.lane is not None:
                left = max(1, self.total - self.read + in_hand)
                size = min(size, math.ceil(left / (CHUNKS_PER_WORKER * plan.lane.capacity)))
            return size, lane

    def _ramped(self, size: int) -> int:
        """``size`` capped by the ramp of auto's lazy chunks (LAZY_FIRST_CALLS, growing)."""
        ramp = LAZY_FIRST_CALLS * LAZY_GROWTH ** min(self.lazy_planned, 16)
        self.lazy_planned += 1
        return min(size, ramp)

    def _lazy(self, size: int, lane: Optional[str]) -> bool:
        """Tiny calls decided inline, chunked automatically: run them as the consumer reads
        them (a C map over the chunk), with no task, future or list per chunk. Explicit
        chunk sizes, retries and timeouts keep the task path (per-call bookkeeping); so does
        a single call of a fixed inline backend (auto's lazy chunks may be one call long)."""
        executor = self.executor
        return (
            (size > 1 or executor._fixed is None)
            and lane == "inline"
            and self.chunksize == "auto"
            and executor._retry.times == 0
            and executor.timeout_s is None
        )

    def _limits(self) -> tuple[int, int]:
        """(unfinished tasks the window holds at most, tasks it holds at most in all)."""
        if self.buffersize is None:
            return sys.maxsize, sys.maxsize
        if self.buffersize != "auto":
            return int(self.buffersize), int(self.buffersize)
        executor = self.executor
        with executor._lock:
            plan = executor._fixed if executor._fixed is not None else executor._plans.get(self.key)
            lane = plan.lane if plan is not None else None
            workers = lane.capacity if lane is not None else 2
            limit = max(4, 2 * workers)
            if lane is not None and lane.name in REMOTE_BACKENDS and self.arrivals is None:
                return limit, FINISHED_AHEAD * limit
        return limit, limit

    def _take(self, size: int) -> list:
        """The next ``size`` inputs (fewer at the end), counted in ``read``."""
        sequence = self.sequence
        if sequence is None:
            batch = list(itertools.islice(self.inputs, size))
        else:
            # A slice copies in C: list(islice(...)) grows its list item by item, twice as
            # slow (5 of the 70 ms of x + 1 over a million items on a loaded machine).
            part = sequence[self.read : self.read + size]
            batch = part if type(part) is list else list(part)
        self.read += len(batch)
        return batch

    def _submit_one(self) -> bool:
        size, lane = self._chunk_plan()
        first = self.read
        batch: Union[list, range]
        sequence = self.sequence
        if sequence is not None and self._lazy(min(size, len(sequence) - first), lane):
            # A lazy chunk of a list, tuple or range is a range of its indices, read when it runs
            # (``_lazy_inputs``): no copy at all.
            batch = range(first, min(first + size, len(sequence)))
            self.read += len(batch)
        else:
            batch = self._take(size)
        if not batch:
            return False
        self.window.append(self._entry(batch, first, lane))
        return True

    def _lazy_inputs(self, inputs: Union[list, range]) -> Iterator[Any]:
        """What a lazy chunk's calls read: its list, or its range of the sequence's items
        (an iterator set to its start, stopped after it: no item is copied)."""
        if type(inputs) is not range:
            return iter(inputs)
        items = iter(cast(Union[list, tuple, range], self.sequence))
        items.__setstate__(inputs.start)  # type: ignore[attr-defined]
        return itertools.islice(items, len(inputs))

    def _entry(self, batch: Union[list, range], first: int, lane: Optional[str]) -> _Entry:
        """The window entry running ``batch`` (inputs ``first``...): a lazy chunk, or a task
        queued on the Executor (not dispatched: the caller pumps)."""
        executor = self.executor
        if self._lazy(len(batch), lane):
            entry = _Entry(None, True, first, batch)
            if self.arrivals is not None:
                self.arrivals.put(entry)
            return entry
        assert type(batch) is list  # a range is only ever a lazy chunk's
        if len(batch) == 1:
            args = batch[0] if self.spread else (batch[0],)
            if executor._fixed_lane is not None:
                executor._fixed_lane.backend.validate(self.call, args, {})
            future = executor._enqueue(self.call, args, {}, self.key, self.fn, pump=False)
            entry = _Entry(future, False, first, batch)
        else:
            future = executor._enqueue(
                run_calls,
                (self.fn, batch, self.spread),
                {},
                self.key,
                self.fn,
                items=len(batch),
                pump=False,
            )
            entry = _Entry(future, True, first, batch)
        if self.arrivals is not None:
            future.add_done_callback(functools.partial(_put_entry, self.arrivals, entry))
        elif self.buffersize == "auto":  # (a task queued undecided may go to processes)
            future.add_done_callback(self._on_task_done)
        return entry

    def _on_task_done(self, _future: cf.Future) -> None:
        """A backend's thread: a task finished. If the consumer waits for another one at the
        front, on a remote lane, wake it to refill (this one's place is free: see refill)."""
        wake = self.wake
        if wake is not None:
            wake.set()

    def _runs_inline(self) -> bool:
        """Whether the function still runs inline (auto may have decided again meanwhile)."""
        executor = self.executor
        if executor._fixed is not None:
            return True
        with executor._lock:
            plan = executor._plans.get(self.key)
            return plan is not None and plan.lane is not None and plan.lane.name == "inline"

    def _plan_again(self, entry: _Entry) -> list[_Entry]:
        """A lazy chunk not started, of a function decided again: its inputs as entries for
        the function's lane now (none of its calls ran, so none runs twice)."""
        entries = []
        inputs, first = entry.inputs, entry.first
        if type(inputs) is range:
            inputs = list(self._lazy_inputs(inputs))
        while inputs:
            size, lane = self._chunk_plan(in_hand=len(inputs))
            batch, inputs = inputs[:size], inputs[size:]
            entries.append(self._entry(batch, first, lane))
            first += len(batch)
        return entries

    def refill(self) -> None:
        # Queue the whole refill, then dispatch: the first calls of a new function then
        # arrive together and can be measured as a pair.
        try:
            limit, most = self._limits()
            window = self.window
            while len(window) < most:
                if len(window) >= limit:
                    # Tasks finished behind the front free their places (_on_task_done).
                    finished = sum(1 for e in window if e.future is not None and e.future.done())
                    if len(window) - finished >= limit:
                        return
                if not self._submit_one():
                    return
        finally:
            self.executor._pump()

    # --- waiting ------------------------------------------------------------------------

    def _listen_for_decision(self, listener: Callable[[], None]) -> bool:
        """Call ``listener`` once the function is decided; True if it already is."""
        executor = self.executor
        if executor._fixed is not None:
            return True
        with executor._lock:
            plan = executor._plans.get(self.key)
            if plan is None or plan.lane is not None:
                return True
            plan.listeners.append(listener)
            return False

    def _await_or_refill(self, future: cf.Future) -> None:
        """Wait for ``future``; refill the window if the function gets decided meanwhile, or
        when another task of a remote lane finishes (its place is free: see refill)."""
        wake = threading.Event()
        future.add_done_callback(lambda _future: wake.set())
        self.wake = wake
        try:
            self.refill()  # tasks that finished while the consumer was away freed places
            while not future.done():
                decided = self._listen_for_decision(wake.set)
                if decided and not self._refills_as_tasks_finish():
                    return
                remaining = None if self.end_s is None else max(0.0, self.end_s - time.monotonic())
                if not wake.wait(remaining):
                    return  # timed out: the caller's result() raises
                wake.clear()
                self.refill()
        finally:
            self.wake = None

    def _refills_as_tasks_finish(self) -> bool:
        """Whether tasks finishing behind the front free places in the window (an ordered
        window of a remote lane, buffersize "auto"; see _on_task_done)."""
        if self.buffersize != "auto" or self.arrivals is not None:
            return False
        executor = self.executor
        with executor._lock:
            plan = executor._fixed if executor._fixed is not None else executor._plans.get(self.key)
            return plan is not None and plan.lane is not None and plan.lane.name in REMOTE_BACKENDS

    def results(self) -> Iterator[Any]:
        outcomes = self._owned_outcomes()
        results = cast(MapResults, MapResults.from_iterable(outcomes))
        results._source = outcomes
        return results

    def _owned_outcomes(self) -> Iterator[Iterator[Any]]:
        owner = None
        if self.make_executor is not None:  # gilwise.map: this generator owns its pool
            owner = self.make_executor()
            self.bind(owner)
        try:
            if owner is not None:
                if self.probe_first and not self.coroutine and not owner._recalled(self.key):
                    firsts = self._first_call_here(owner)
                    if not firsts:
                        return
                    for index in range(len(firsts)):
                        outcome, firsts[index] = firsts[index].outcome, None  # bpo-14406
                        try:
                            value = outcome.result()
                        except Exception as error:
                            _name_the_call(error, self.fn, index)
                            raise
                        del outcome
                        yield iter((value,))
                        del value
                    del firsts
                self.refill()
            yield from self._outcomes()
        except KeyboardInterrupt:
            if owner is not None:
                owner._interrupt()
            raise
        finally:
            if owner is not None and not owner._interrupted:
                owner.shutdown(wait=True, cancel_futures=True)

    def _calls_left(self) -> Optional[int]:
        return None if self.total is None else max(0, self.total - self.read)

    def _run_first_calls(self) -> tuple[list[tuple[Any, FirstCall]], bool]:
        """Under auto, before any task: run the first input's call in this thread, timed,
        with a GIL probe when no other thread runs (gilwise._first_call), and the next
        inputs' calls too while the probe cannot yet tell and they are short
        (_chooser.probe_more). Each input with its FirstCall (a finished future holding
        its value or exception, its timing and reading), in input order (none: no input),
        and whether the first call imported modules."""
        calls: list[tuple[Any, FirstCall]] = []
        probe = threading.active_count() == 1
        modules = len(sys.modules)
        imported = False
        while True:
            taken = self._take(1)
            if not taken:
                break
            item = taken[0]
            first = run_first_call(
                self.fn, cast(tuple, item) if self.spread else (item,), probe=probe
            )
            calls.append((item, first))
            if len(calls) == 1:
                imported = len(sys.modules) != modules
            if not probe_more(
                [call.sample for _, call in calls],
                [call.gil for _, call in calls],
                imported=imported,
                failed=first.outcome.exception() is not None,
            ):
                break
        return calls, imported

    def _first_call_here(self, executor: Executor) -> list:
        """gilwise.map under auto: run the first inputs' calls in the consumer, who waits for
        their results anyway, and let the Executor decide from them
        (Executor._first_call_ran). Their values (none: no input); an exception is raised,
        named by its input index, after the values before it were yielded."""
        calls, imported = self._run_first_calls()
        if not calls:
            return []
        firsts = [call for _, call in calls]
        executor._first_call_ran(self.key, self.fn, firsts, self._calls_left(), imported=imported)
        return firsts

    def first_call_as_entry(self, executor: Executor) -> None:
        """Executor.map under auto, before its first task: run the first inputs' calls here
        and keep their outcomes as the window's first (finished) entries, an exception
        delivered when the consumer reaches its input; then let the Executor decide from
        them (Executor._first_call_ran)."""
        calls, imported = self._run_first_calls()
        if not calls:
            return
        for index, (item, call) in enumerate(calls):
            entry = _Entry(call.outcome, False, index, [item])
            self.window.append(entry)
            if self.arrivals is not None:
                self.arrivals.put(entry)
        firsts = [call for _, call in calls]
        executor._first_call_ran(self.key, self.fn, firsts, self._calls_left(), imported=imported)

    def _outcomes(self) -> Iterator[Iterator[Any]]:
        """For each finished task, in order, an iterator over its results that pops each
        off its list as it yields it: nothing yielded stays referenced (bpo-14406)."""
        window = self.window
        listening = False
        arrivals = self.arrivals
        pop_all = itertools.starmap
        no_args = itertools.repeat
        try:
            while window:
                remaining = None if self.end_s is None else max(0.0, self.end_s - time.monotonic())
                if arrivals is None:
                    entry = window[0]
                    if entry.future is None:  # lazy: the calls run as the consumer reads
                        window.popleft()
                        if not self._runs_inline():
                            # Decided again: every lazy chunk read ahead goes to the new
                            # backend now, so its workers get them all at once (one at a
                            # time, as each reached the front, they idled in between).
                            planned = _joined([entry, *window])
                            window.clear()
                            for each in planned:
                                if each.future is None:
                                    window.extend(self._plan_again(each))
                                else:
                                    window.append(each)
                            self.executor._pump()
                            continue
                        self.refill()
                        yield from self._run_lazily(entry)
                        del entry
                        continue
                    if not entry.future.done() and (
                        self.executor._fixed is None or self._refills_as_tasks_finish()
                    ):
                        self._await_or_refill(entry.future)
                    try:
                        value = entry.future.result(remaining)
                    except Exception as error:
                        if entry.future.done() and not entry.future.cancelled():
                            _name_the_call(error, self.fn, entry.first)
                        raise
                    window.popleft()
                else:
                    if not listening:
                        listening = not self._listen_for_decision(
                            functools.partial(arrivals.put, None)
                        )
                    try:
                        entry = arrivals.get(timeout=remaining)
                    except queue.Empty:
                        raise cf.TimeoutError() from None
                    if entry is None:  # a decision: more may be in flight now
                        listening = False
                        self.refill()
                        continue
                    window.remove(entry)
                    if entry.future is None:
                        if not self._runs_inline():
                            window.extend(self._plan_again(entry))
                            self.executor._pump()
                            continue
                        self.refill()
                        yield from self._run_lazily(entry)
                        del entry
                        continue
                    try:
                        value = entry.future.result()
                    except Exception as error:
                        _name_the_call(error, self.fn, entry.first)
                        raise
                self.refill()
                values = value if entry.chunk else [value]
                del value
                first, inputs = entry.first, entry.inputs
                del entry  # its future holds a single call's result
                values.reverse()
                if type(values) is list:  # no call failed: pop them all in C
                    yield pop_all(values.pop, no_args((), len(values)))
                else:
                    yield self._with_failures(values, cast(list, inputs), first)
                del values, inputs
        finally:
            for entry in window:
                if entry.future is not None:  # a lazy chunk has none: nothing to cancel
                    entry.future.cancel()

    def _run_lazily(self, entry: _Entry) -> Iterator[Iterator[Any]]:
        """Yields the iterator that runs a lazy chunk's calls as the consumer reads them;
        once the consumer has read them all, reports their time to auto's Chooser (a
        consumer that stops early never resumes this: nothing is reported). A timed call
        much longer than the calls before it ends the chunk: the calls after it go back to
        the front of the window, to run wherever the Chooser says after weighing it."""
        inputs = entry.inputs
        executor = self.executor
        watched = executor._fixed is None
        long_s = executor._inline_timing(self.key) if watched else None
        timer = None if long_s is None else TimedCalls(self.fn)
        fn = self.fn if timer is None else timer
        started = span_start() if watched else (0.0, 0.0, 0.0)
        calls = self._lazy_inputs(inputs)
        if timer is not None and long_s is not None and len(inputs) > 1:
            calls = itertools.takewhile(_UntilLong(timer, long_s), calls)
        yield itertools.starmap(fn, calls) if self.spread else builtins.map(fn, calls)
        if not watched:
            return
        span_s, cpu_s, queued_s = span_since(started)
        if timer is None:
            executor._ran_inline(self.key, len(inputs), span_s, cpu_s, queued_s, timed=False)
            return
        executor._ran_inline(self.key, timer.calls, timer.wall_s, cpu_s, queued_s, timed=True)
        if timer.calls < len(inputs):  # ended by a long call: none of the rest has run
            rest = _Entry(None, True, entry.first + timer.calls, inputs[timer.calls :])
            if self.arrivals is None:
                self.window.appendleft(rest)
            else:
                self.window.append(rest)
                self.arrivals.put(rest)

    def _with_failures(self, values: list, inputs: list, first: int) -> Iterator[Any]:
        """A chunk's results (reversed) up to a failed call, then its retry or its error."""
        index = first
        while values:
            if type(values[-1]) is Failure:
                values[-1] = self._retry_or_raise(inputs, first, index, values[-1])
            yield values.pop()
            index += 1

    def _retry_or_raise(self, inputs: list, first: int, index: int, failure: Failure) -> Any:
        """A call of a chunk failed: retry it on its own (retry policy), else raise."""
        error = failure.error()
        executor = self.executor
        item = inputs[index - first]
        args = tuple(item) if self.spread else (item,)
        delay_s = executor._retry.delay_before_retry(error, 1)
        if delay_s is not None and not executor._shutdown:
            # A task of its own, after the policy's first back-off (as a failed task waits).
            return executor._retry_later(self.fn, args, self.key, delay_s).result()
        _name_the_call(error, self.fn, index)
        raise error


def _joined(entries: list[_Entry]) -> list[_Entry]:
    """``entries`` with each run of lazy chunks whose inputs follow one another as one (to
    be planned again as a whole: chunks for the new backend, not the old chunks split)."""
    joined: list[_Entry] = []
    for entry in entries:
        last = joined[-1] if joined else None
        if (
            last is None
            or entry.future is not None
            or last.future is not None
            or type(entry.inputs) is not type(last.inputs)
            or last.first + len(last.inputs) != entry.first
        ):
            joined.append(entry)
            continue
        if type(entry.inputs) is range:
            inputs: Union[list, range] = range(last.inputs.start, entry.inputs.stop)  # type: ignore[union-attr]
        else:
            inputs = cast(list, last.inputs) + cast(list, entry.inputs)
        joined[-1] = _Entry(None, True, last.first, inputs)
    return joined


class _UntilLong:
    """``takewhile``'s test for a timed lazy chunk: False (the chunk ends, the input it was
    shown is not run) once the last call took longer than ``long_s``."""

    __slots__ = ("long_s", "seen_s", "timer")

    def __init__(self, timer: TimedCalls, long_s: float) -> None:
        self.timer = timer
        self.long_s = long_s
        self.seen_s = 0.0

    def __call__(self, _item: Any) -> bool:
        wall_s = self.timer.wall_s
        if wall_s - self.seen_s > self.long_s:
            return False
        self.seen_s = wall_s
        return True


def _name_the_call(error: BaseException, fn: Callable[..., Any], index: int) -> None:
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    note = f"gilwise: raised by {label(fn)} on map input #{index}"
    if add_note is not None and note not in getattr(error, "__notes__", ()):
        add_note(note)
    with contextlib.suppress(AttributeError):  # some exception types refuse attributes
        error.gilwise_index = index  # type: ignore[attr-defined]


def _put_entry(arrivals: queue.SimpleQueue, entry: _Entry, _future: cf.Future) -> None:
    arrivals.put(entry)


__all__ = ["map_results"]
