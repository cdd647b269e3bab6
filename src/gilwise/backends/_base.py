"""The small protocol every execution backend implements (protocol v2).

A backend runs callables on one execution model and reports each outcome through a
``concurrent.futures.Future``. It knows nothing of profiling, of ``auto``, of retries or of
ordering: the Executor layers those on top, and decides when a task counts as RUNNING (when
it hands the task to ``submit``). So a backend's future need not support ``cancel``; the
Executor only cancels tasks it has not yet handed over.

Rules for implementers:
- ``submit`` is thread-safe and does not block on the task (it may block briefly to hand it
  over). The returned future completes exactly once, with the result or the exception.
- ``submit_batch(fn, calls)`` returns one future per call, each completed as soon as that
  call's outcome is known; a backend that can (process) runs the calls of one batch in order
  on one worker. If the worker dies mid-batch, the backend re-runs, one by one and once
  each, every call of the batch whose outcome was not delivered, so only the call that
  really crashes fails (WorkerCrashedError naming the function and the call's ``index``).
  The default here is one ``submit`` per call.
- A task's exception is delivered with its traceback: for remote workers, as the original
  exception type where it can be rebuilt, with ``errors.RemoteTraceback`` as ``__cause__``.
- ``shutdown(wait=True)`` waits for handed-over tasks, then frees every worker; after it,
  ``submit`` raises RuntimeError. It is idempotent. No worker thread or process outlives it.
  ``shutdown(wait=False, interrupt=True)`` (Ctrl-C) fails every task not finished with
  ``errors.TaskInterruptedError``, stops the running ones where the model can (a process is
  killed; a thread cannot be: it is abandoned, not joined) and returns within ~0.5 s.
- ``warm_up()`` starts workers now without blocking (auto calls it as soon as a function
  looks CPU-bound, so starting overlaps measuring). The default does nothing.
- Options: a backend lists the keyword options it accepts in ``option_names``; any other
  raises TypeError naming it and the accepted ones (``check_options``), never dropped.
- No non-daemon thread of gilwise may block interpreter exit; no backend imports another.
"""

from __future__ import annotations

import abc
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Mapping, Optional

from .. import _params


class Backend(abc.ABC):
    """One execution model (threads, processes, an event loop, ...)."""

    name: ClassVar[str]
    #: True when a per-task ``timeout_s`` stops the task itself (a process is killed), not
    #: only the wait for it.
    enforces_timeout: ClassVar[bool] = False
    #: True when ``shutdown(interrupt=True)`` stops tasks that are already running.
    interrupts_running: ClassVar[bool] = False
    #: The keyword options this backend accepts besides ``max_workers``.
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, max_workers: Optional[int] = None, **options: Any) -> None:
        self.check_options(options)
        workers = _params.workers(max_workers)
        self.max_workers = self.default_workers() if workers is None else workers

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """TypeError naming every option this backend does not know, and the ones it does."""
        unknown = [name for name in options if name not in cls.option_names]
        if unknown:
            accepted = (
                "it accepts " + ", ".join(cls.option_names)
                if cls.option_names
                else "it accepts no options"
            )
            listed = ", ".join(repr(name) for name in unknown)
            plural = "s" if len(unknown) > 1 else ""
            raise TypeError(
                f"the {cls.name} backend got unknown option{plural} {listed}; {accepted}"
            )

    @classmethod
    def default_workers(cls) -> int:
        from .._runtime import current

        return current().cores

    def validate(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Raise a clear error now if this task cannot run here (e.g. not picklable)."""

    @abc.abstractmethod
    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        """Start ``fn(*args, **kwargs)``; return a future that completes with its outcome."""

    def submit_batch(
        self,
        fn: Callable[..., Any],
        calls: list[tuple[tuple, dict]],
        *,
        timeout_s: Optional[float] = None,
    ) -> list[Future]:
        """Start ``fn(*args, **kwargs)`` for each ``(args, kwargs)``; one future per call.

        Raises only for what concerns the whole batch (after shutdown, an unusable ``fn``)
        before anything started; ``timeout_s`` applies to each call.
        """
        futures: list[Future] = []
        for index, (args, kwargs) in enumerate(calls):
            try:
                futures.append(self.submit(fn, args, kwargs, timeout_s=timeout_s))
            except Exception as exc:
                if index == 0:
                    raise
                failed: Future = Future()
                failed.set_exception(exc)
                futures.append(failed)
        return futures

    @abc.abstractmethod
    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        """Stop accepting work; with ``wait``, finish handed-over tasks; free all workers.

        ``interrupt``: fail unfinished tasks with TaskInterruptedError and stop running ones
        where possible, returning promptly (Ctrl-C).
        """

    def warm_up(self) -> None:
        """Start workers now, without blocking; a no-op where starting is free."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_workers={self.max_workers}>"
