"""The interpreter backend: sub-interpreters with their own GIL (CPython 3.12+).

Each of up to ``max_workers`` threads (``gilwise-interp-N``) owns one sub-interpreter and
runs one task at a time in it; each sub-interpreter has its own GIL, so pure-Python CPU work
runs in parallel inside one process. Threads and their interpreters start on demand and are
reused, so a module a task imports is imported once per interpreter.

What can run: a function importable by module and qualified name (defined at module level,
not in ``__main__``), with picklable arguments and result. Lambdas and closures raise
NotPicklableError (use backend='process', which can send them). A task that imports an
extension module which refuses sub-interpreters (e.g. numpy on 3.12) fails with
UnsupportedError. A per-task timeout cannot stop a sub-interpreter: the Executor stops
waiting instead. Constructing this backend on Python < 3.12 raises UnsupportedError.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Optional

from .._runtime import current
from ..errors import NotPicklableError, RemoteTraceback, UnsupportedError
from ._base import Backend
from ._wire import decode_outcome, describe_task, dump_task, function_name
from ._workqueue import STOP as _STOP
from ._workqueue import WorkQueue as _WorkQueue
from ._workqueue import abandon, join_at_exit, settle, stoppable_queue

_thread_numbers = itertools.count()


def _as_task_error(error: BaseException, describe: Callable[[], str]) -> BaseException:
    """Turn "an extension module refused this sub-interpreter" into a clear UnsupportedError."""
    lines = [line for line in str(error).splitlines() if "subinterpreter" in line.replace("-", "")]
    if isinstance(error, ImportError) and lines:
        # numpy wraps the one line that matters in a page of advice: keep only that line.
        reason = lines[-1].strip().removeprefix("Original error was: ")
        unsupported = UnsupportedError(
            f"task {describe()} imports an extension module that cannot load in a "
            f"sub-interpreter with its own GIL ({reason}); use backend='process'"
        )
        unsupported.__cause__ = error
        return unsupported
    return error


def _worker(work: _WorkQueue, open_session: Callable[[], Any], idle: threading.Semaphore) -> None:
    # Holds only the queue, never the backend, so an unreferenced backend can be collected.
    session = None
    try:
        while True:
            item = work.get()
            if item is _STOP:
                work.put(_STOP)
                return
            future, payload, describe = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    if session is None:
                        session = open_session()
                    data = session.run(payload)
                except Exception as exc:  # gilwise's own code failed in the sub-interpreter
                    error = RuntimeError(
                        f"a sub-interpreter could not run task {describe()}; "
                        f"use backend='process' instead. Details follow."
                    )
                    error.__cause__ = RemoteTraceback(str(exc))
                    settle(future, exc=error)
                else:
                    ok, value = decode_outcome(data, describe)
                    if ok:
                        settle(future, result=value)
                    else:
                        settle(future, exc=_as_task_error(value, describe))
                    del data, value
            del future, payload, describe
            idle.release()
    finally:
        if session is not None:
            session.close()


class InterpreterBackend(Backend):
    """Runs module-level functions in up to ``max_workers`` own-GIL sub-interpreters.

    ``submit`` is thread safe; it raises NotPicklableError at once for a lambda, a closure, a
    function in ``__main__`` or an unpicklable argument.
    """

    name: ClassVar[str] = "interpreter"

    def __init__(self, max_workers: Optional[int] = None, **options: Any) -> None:
        facts = current()
        if not facts.own_gil_subinterpreters:
            raise UnsupportedError(
                "sub-interpreters with their own GIL need Python 3.12 or newer; "
                f"this is {facts.version_text}; use backend='process'"
            )
        super().__init__(max_workers, **options)
        from ._interpreter_api import session_factory

        self._open_session = session_factory()
        self._work = stoppable_queue(self)
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def validate(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Raise NotPicklableError if the task cannot be sent to a sub-interpreter."""
        self._dump(fn, args, kwargs)

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        """Queue ``fn(*args, **kwargs)`` for a sub-interpreter. ``timeout_s`` is not enforced
        here (a sub-interpreter cannot be stopped); RuntimeError after shutdown."""
        payload = self._dump(fn, args, kwargs)
        future: Future = Future()

        def describe() -> str:
            return describe_task(fn, args, kwargs)

        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to an interpreter backend after its shutdown()")
            self._work.put((future, payload, describe))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=_worker,
                    args=(self._work, self._open_session, self._idle),
                    name=f"gilwise-interp-{next(_thread_numbers)}",
                    daemon=True,  # joined at exit (join_at_exit) unless interrupted
                )
                thread.start()
                join_at_exit(thread)
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        """Refuse new tasks; queued ones still run; then each thread destroys its
        sub-interpreter and ends. With ``wait`` this blocks until then."""
        with self._lock:
            already = self._closed
            self._closed = True
            threads = list(self._threads)
        if not already:
            self._work.put(_STOP)
        if interrupt:  # a sub-interpreter cannot be stopped: abandon its (daemon) thread
            abandon(threads)
            return
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    @staticmethod
    def _dump(fn: Callable[..., Any], args: tuple, kwargs: dict) -> bytes:
        qualname = getattr(fn, "__qualname__", "") or ""
        name = function_name(fn)
        if "<lambda>" in qualname or "<locals>" in qualname:
            kind = "a lambda" if "<lambda>" in qualname else "a nested function"
            raise NotPicklableError(
                f"cannot send {name} to a sub-interpreter: it is {kind}, and a sub-interpreter "
                f"can only import functions defined at module level. Define it at module "
                f"level, or use backend='process' (which can send lambdas and closures)."
            )
        if getattr(fn, "__module__", None) == "__main__":
            raise NotPicklableError(
                f"cannot send {name} to a sub-interpreter: it is defined in the main script "
                f"(__main__), which a sub-interpreter cannot import. Move it into a module, "
                f"or use backend='process'."
            )
        return dump_task(
            fn,
            args,
            kwargs,
            dumps=pickle.dumps,
            destination="a sub-interpreter",
            function_advice="Define it at module level, or use backend='process'.",
            argument_advice="Pass something picklable, or use backend='thread'.",
        )
