"""The asyncio backend: coroutine functions run on an event loop in a dedicated thread.

Usable from synchronous code: ``submit`` returns a concurrent.futures.Future (async callers
can ``await asyncio.wrap_future(...)`` or the Executor's ``submit_async``). Thousands of
waiting coroutines cost almost nothing, so this is the backend for many slow I/O calls
written with async libraries.

Plain (non-async) functions are accepted too: they are offloaded to a small thread pool of
this backend (``gilwise-asyncio-offload-N``) so they never block the loop. A per-task
timeout cancels the coroutine (``enforces_timeout``); an offloaded plain function cannot be
stopped and finishes in the background.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, ClassVar, Optional

from .._callables import is_coroutine_function
from ..errors import TaskTimeoutError
from ._base import Backend


class AsyncioBackend(Backend):
    """One event loop in one thread (``gilwise-asyncio``); ``submit`` is thread safe."""

    name: ClassVar[str] = "asyncio"
    enforces_timeout: ClassVar[bool] = True

    def __init__(self, max_workers: Optional[int] = None, **options: Any) -> None:
        super().__init__(max_workers, **options)
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._closed = False
        self._in_flight: set[Future] = set()
        self._offload: Optional[ThreadPoolExecutor] = None
        self._thread = threading.Thread(target=self._run_loop, name="gilwise-asyncio", daemon=True)
        self._thread.start()

    @classmethod
    def default_workers(cls) -> int:
        # The number of coroutines in flight, not threads: waiting coroutines are cheap.
        return 128

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to an asyncio backend after shutdown")
            if is_coroutine_function(fn):
                awaitable = self._run_coroutine(fn, args, kwargs, timeout_s)
            else:
                awaitable = self._run_plain(fn, args, kwargs, timeout_s)
            future = asyncio.run_coroutine_threadsafe(awaitable, self._loop)
            self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return future

    async def _run_coroutine(
        self, fn: Callable[..., Any], args: tuple, kwargs: dict, timeout_s: Optional[float]
    ) -> Any:
        if timeout_s is None:
            return await fn(*args, **kwargs)
        try:
            return await asyncio.wait_for(fn(*args, **kwargs), timeout_s)
        except asyncio.TimeoutError:
            raise TaskTimeoutError(
                f"task {_describe(fn)} did not finish within its timeout of {timeout_s} s "
                f"and was cancelled; raise the Executor's timeout if it needs longer"
            ) from None

    async def _run_plain(
        self, fn: Callable[..., Any], args: tuple, kwargs: dict, timeout_s: Optional[float]
    ) -> Any:
        with self._lock:
            if self._offload is None:
                self._offload = ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="gilwise-asyncio-offload"
                )
            offload = self._offload
        call = functools.partial(fn, *args, **kwargs)
        waiting = self._loop.run_in_executor(offload, call)
        if timeout_s is None:
            return await waiting
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except asyncio.TimeoutError:
            raise TaskTimeoutError(
                f"task {_describe(fn)} did not finish within its timeout of {timeout_s} s; "
                f"a plain function cannot be stopped and finishes in the background"
            ) from None

    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        with self._lock:
            first = not self._closed
            self._closed = True
            pending = list(self._in_flight)
        if interrupt:
            # Coroutines are cancelled where they wait; plain functions on the offload
            # threads cannot be stopped and are abandoned. The loop stops once they are done.
            for future in pending:
                future.cancel()
            wait = False
        if first:
            # Stop the loop only once every handed-over task is done, also when not waiting.
            asyncio.run_coroutine_threadsafe(self._stop_when_idle(pending), self._loop)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()
            if self._offload is not None:
                self._offload.shutdown(wait=True)

    async def _stop_when_idle(self, pending: list[Future]) -> None:
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)
        if self._offload is not None:
            self._offload.shutdown(wait=False)
        self._loop.stop()


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
