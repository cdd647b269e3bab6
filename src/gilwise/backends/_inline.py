"""The inline backend: runs each task in the caller, inside ``submit``.

For tasks so short that any hand-over costs more than the task, and for debugging (a plain
traceback, a debugger that stops where you expect). ``submit`` blocks until the task is done
and returns an already finished future. KeyboardInterrupt and SystemExit propagate to the
caller as they would from a plain call.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Optional

from ._base import Backend


class InlineBackend(Backend):
    """Run every task synchronously in the submitting thread."""

    name: ClassVar[str] = "inline"

    def __init__(self, max_workers: Optional[int] = None, **options: Any) -> None:
        super().__init__(1 if max_workers is None else max_workers, **options)
        self._closed = False

    @classmethod
    def default_workers(cls) -> int:
        return 1

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        if self._closed:
            raise RuntimeError("cannot submit to an inline backend after shutdown")
        future: Future = Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        self._closed = True
