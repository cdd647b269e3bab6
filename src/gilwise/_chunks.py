"""The one chunk runner: many calls of one function handed to a backend as one unit.

Used by ``Executor.map``, ``gilwise.map`` and every Pipeline stage. A chunk's outcome is a
list with one entry per call, in order: the call's value, or a ``Failure`` for a call that
raised. Every call of a chunk runs once, whatever its neighbours did, so a failing call
never takes its chunk-mates' results with it.

- In this process (inline, thread): ``run_calls`` runs the chunk as one task with a plain
  loop (no per-call bookkeeping until a call fails), so tiny calls cost about what a loop
  costs.
- On another process or machine: the backend's ``submit_batch`` sends the calls together
  and reports each one; when a worker dies mid-batch the backend re-runs the calls that
  have no outcome, so only the call that crashes fails (errors.WorkerCrashedError naming
  the user's function and the call's index).

Retries are not done here: the driver (Executor, stage) retries a failed call on its own,
with the one retry policy (``_retry.Retry``).
"""

from __future__ import annotations

import builtins
import functools
import itertools
import threading
import traceback
from concurrent.futures import CancelledError, Future
from typing import Any, Callable, Optional

from .errors import RemoteTraceback


class Failure:
    """One failed call inside a chunk: its exception, traceback text and index in the chunk."""

    __slots__ = ("exception", "index", "traceback_text")

    def __init__(self, exception: BaseException, traceback_text: str, index: int) -> None:
        self.exception = exception
        self.traceback_text = traceback_text
        self.index = index

    def __reduce__(self) -> Any:
        return (Failure, (self.exception, self.traceback_text, self.index))

    def error(self) -> BaseException:
        """The call's exception, with the worker's traceback attached if it crossed a process."""
        exc = self.exception
        if exc.__traceback__ is None and exc.__cause__ is None and self.traceback_text:
            exc.__cause__ = RemoteTraceback(self.traceback_text)
        return exc


class WithFailures(list):
    """A chunk's outcomes when at least one call failed (a plain list means none did)."""

    __slots__ = ()


def run_calls(fn: Callable[..., Any], items: list, spread: bool) -> list:
    """In a worker: ``fn`` over ``items`` (argument tuples when ``spread``), each call once.

    Returns one entry per item: the value, or a Failure where the call raised (then the next
    calls still run); a ``WithFailures`` list when any call failed, else a plain list.
    """
    values: list = []
    count = len(items)
    while len(values) < count:
        rest = items if not values else items[len(values) :]
        try:  # the fast path: a C loop; extend keeps what was appended before an error
            values.extend(itertools.starmap(fn, rest) if spread else builtins.map(fn, rest))
        except Exception as exc:
            if type(values) is list:
                values = WithFailures(values)
            values.append(Failure(exc, traceback.format_exc(), len(values)))
    return values


def submit_chunk(
    backend: Any,
    remote: bool,
    fn: Callable[..., Any],
    items: list,
    spread: bool,
    timeout_s: Optional[float] = None,
) -> Future:
    """Hand a chunk to ``backend``; the returned future completes with the per-call list.

    ``timeout_s`` is per call (a local chunk may take ``len(items)`` times as long).
    """
    if not remote:
        chunk_timeout_s = None if timeout_s is None else timeout_s * len(items)
        return backend.submit(run_calls, (fn, items, spread), {}, timeout_s=chunk_timeout_s)
    calls: list[tuple[tuple, dict]] = [(tuple(item) if spread else (item,), {}) for item in items]
    return gather(backend.submit_batch(fn, calls, timeout_s=timeout_s))


def gather(futures: list[Future]) -> Future:
    """One future completing, once all of ``futures`` have, with their values or Failures."""
    combined: Future = Future()
    combined.set_running_or_notify_cancel()
    outcomes: list = [None] * len(futures)
    remaining = [len(futures)]
    failed = [False]
    lock = threading.Lock()

    def done(index: int, future: Future) -> None:
        try:
            error = future.exception()
        except CancelledError as cancelled:
            error = cancelled
        if error is None:
            outcomes[index] = future.result()
        else:
            outcomes[index] = Failure(error, "", index)
            failed[0] = True
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            combined.set_result(WithFailures(outcomes) if failed[0] else outcomes)

    if not futures:
        combined.set_result([])
    for index, future in enumerate(futures):
        future.add_done_callback(functools.partial(done, index))
    return combined
