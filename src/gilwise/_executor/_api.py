"""The one-liners: ``gilwise.map`` (a streaming map on the right backend) and ``classify``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar, overload

from .. import _params, _runtime
from .._decide import Decision, decide_for_task
from . import _progress
from ._core import Executor
from ._map import map_results

R = TypeVar("R")


@overload
def map(
    fn: Callable[..., Awaitable[R]],
    iterable: Iterable[Any],
    backend: str = "auto",
    workers: Optional[int] = None,
    ordered: bool = True,
    progress: Any = None,
) -> Iterator[R]: ...


@overload
def map(
    fn: Callable[..., R],
    iterable: Iterable[Any],
    backend: str = "auto",
    workers: Optional[int] = None,
    ordered: bool = True,
    progress: Any = None,
) -> Iterator[R]: ...


def map(
    fn: Callable[..., Any],
    iterable: Iterable[Any],
    backend: str = "auto",
    workers: Optional[int] = None,
    ordered: bool = True,
    progress: Any = None,
) -> Iterator[Any]:
    """Stream ``fn(item)`` for each item, run concurrently on the right backend (a generator).

    Reads the input lazily (an endless generator is fine) with a bounded number of calls in
    flight. ``ordered=False`` yields results as they complete. ``progress``: a rich progress
    bar on stderr (True; None shows it only when stderr is a terminal and the run lasts more
    than a couple of seconds), or a callable receiving ``(done, total)``. The pool lives as
    long as the generator: closing it early cancels the calls that have not started and
    frees every worker; Ctrl-C interrupts the running ones.
    """
    _params.workers(workers, "workers")
    _progress.check(progress)
    if not isinstance(ordered, bool):
        raise TypeError(f"ordered must be True or False, got {ordered!r}")
    if not hasattr(iterable, "__iter__"):
        raise TypeError(f"map() needs an iterable, got {type(iterable).__name__}")
    # The pool is made at the first next() and closed with the generator.
    return map_results(
        lambda: Executor(backend, workers),
        fn,
        (iterable,),
        None,
        "auto",
        "auto",
        ordered=ordered,
        progress=progress,
        probe_first=backend == "auto",
    )


def classify(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Decision:
    """Decide what kind of work ``fn(*args, **kwargs)`` is, without a pool.

    Calls fn three times: once alone, then twice at the same moment on two threads (to see
    whether calls overlap or take turns on the GIL); a coroutine function is run three times
    on a private event loop. Blocking; re-raises the first exception a call raised.
    """
    from .._measure import measure_three_calls

    _, measured = measure_three_calls(fn, args, kwargs)
    return decide_for_task(measured, _runtime.current())
