"""The small protocol every execution backend implements.

A backend runs callables on one execution model and reports each outcome through a
``concurrent.futures.Future``. It knows nothing of profiling, of ``auto``, of retries or of
ordering: the Executor (executor.py) layers those on top, and decides when a task counts as
RUNNING (when it hands the task to ``submit``). So a backend's future need not support
``cancel``; the Executor only cancels tasks it has not yet handed over.

Rules for implementers:
- ``submit`` is thread-safe and does not block on the task (it may block briefly to hand it
  over). The returned future completes exactly once, with the result or the exception.
- A task's exception is delivered with its traceback: for remote workers, as the original
  exception type where it can be rebuilt, with ``errors.RemoteTraceback`` as ``__cause__``.
- ``shutdown(wait=True)`` waits for handed-over tasks, then frees every worker; after it,
  ``submit`` raises RuntimeError. It is idempotent. No worker thread or process outlives it.
- No backend imports another backend.
"""

from __future__ import annotations

import abc
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Optional


class Backend(abc.ABC):
    """One execution model (threads, processes, an event loop, ...)."""

    name: ClassVar[str]
    #: True when a per-task ``timeout_s`` stops the task itself (a process is killed), not
    #: only the wait for it.
    enforces_timeout: ClassVar[bool] = False

    def __init__(self, max_workers: Optional[int] = None, **options: Any) -> None:
        self.max_workers = self.default_workers() if max_workers is None else int(max_workers)
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers!r}")

    @classmethod
    def default_workers(cls) -> int:
        from ..runtime import current

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

    @abc.abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, finish handed-over tasks; free all workers."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_workers={self.max_workers}>"
