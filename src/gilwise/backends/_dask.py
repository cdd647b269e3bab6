"""The dask backend: runs tasks on a dask.distributed cluster, on this machine or many.

Opt-in only: gilwise never starts a cluster or opens a listening port unless asked. Give it
the address of a running scheduler (``address="tcp://HOST:8786"``), a ``distributed.Client``
you own (``client=...``; gilwise never closes it), or ``address="local"`` to start a
``LocalCluster`` of worker processes on this machine (bound to 127.0.0.1, no dashboard),
which ``shutdown`` closes again.

What a caller must know:
- Functions and arguments travel by pickle (cloudpickle); workers must be able to import any
  module the function lives in, so on a real cluster install your code on every worker.
- Every submit is a new dask task (``pure=False``): repeated calls run again.
- A worker that dies mid-task makes the scheduler reschedule the task on another worker, up
  to ``distributed.scheduler.allowed-failures`` times; after that the future fails with
  ``WorkerCrashedError`` naming the task. Retries of failing tasks are the Executor's job.
- ``timeout_s`` is measured from ``submit`` (time queued on the cluster counts). When it
  passes, the future fails with ``TaskTimeoutError`` and the dask task is cancelled; a task
  already running on a worker thread cannot be interrupted and runs to its end there, so
  ``enforces_timeout`` is False.
- ``shutdown(wait=False)`` cancels tasks still outstanding (their futures end cancelled),
  since a cluster may outlive this process and nothing should keep running unowned.
- The caller's future stays PENDING until the outcome is in (so ``cancel`` works on a task
  already running on the cluster: it is cancelled there).
- Threads: distributed's shared callback thread (``Dask-Callback-Thread``) hears that a task
  finished; this backend's own fetcher thread gathers finished results, as many per round
  trip as are ready; a deadline thread exists only once a ``timeout_s`` is used. Both of ours
  end at ``shutdown``. ``Dask-Callback-Thread`` and ``Dask-Offload`` are distributed's,
  process-wide, and stay (idle) after shutdown.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import socket
import threading
import time
import traceback
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_for_futures
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Union

from .. import errors
from ._base import Backend
from ._wire import dump_task, function_name

if TYPE_CHECKING:
    import distributed

#: The address that asks for a LocalCluster on this machine instead of a remote scheduler.
LOCAL_ADDRESS = "local"

_HOW_TO_GET_A_CLUSTER = (
    "Start a cluster and pass its address:\n"
    "    dask scheduler                      # on one host; prints tcp://HOST:8786\n"
    "    dask worker tcp://HOST:8786         # on each host that should run tasks\n"
    "then use backend='dask' with address='tcp://HOST:8786' (or client=distributed.Client(...)).\n"
    "To run a cluster of worker processes on this machine only, ask for it explicitly with "
    "address='local'."
)


_FUNCTION_ADVICE = (
    "Define it at module level in a module the workers can import, or use backend='thread'."
)
_ARGUMENT_ADVICE = "Pass plain data (no locks, open files or sockets), or use backend='thread'."


def _import_distributed() -> Any:
    """The ``distributed`` package, or UnsupportedError saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise errors.UnsupportedError(
            "the dask backend needs the 'distributed' package, which is not installed: "
            "pip install 'gilwise[dask]' (Python 3.10 or newer), or choose another backend "
            "such as backend='process'."
        ) from exc
    return distributed


def _task_label(fn: Callable[..., Any], key: object) -> str:
    return f"{function_name(fn)} (dask key {key})"


class _Bridge:
    """Ties one dask future to the concurrent.futures.Future handed to the caller.

    Whichever comes first settles the caller's future, exactly once: the dask outcome, the
    per-task deadline, the caller cancelling, or shutdown cancelling.
    """

    __slots__ = ("_backend", "_lock", "_settled", "dask_future", "future", "label")

    def __init__(self, backend: DaskBackend, future: Future, dask_future: Any, label: str):
        self._backend = backend
        self._lock = threading.Lock()
        self._settled = False
        self.future = future
        self.dask_future = dask_future
        self.label = label

    @property
    def settled(self) -> bool:
        return self._settled

    def _settle(self) -> bool:
        """True for the one caller that gets to decide the outcome."""
        with self._lock:
            if self._settled:
                return False
            self._settled = True
        self._backend._forget(self)
        return True

    def _deliver(self, *, result: Any = None, exception: Optional[BaseException] = None) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        if exception is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(exception)

    # Runs on distributed's callback thread when the dask task has an outcome. Fetching a
    # result is a round trip to a worker: the fetcher thread does those, many per trip.
    def on_dask_done(self, dask_future: Any) -> None:
        if not self._settle():
            return
        if dask_future.status == "finished":
            self._backend._fetcher.put(self)
        else:
            self.deliver_outcome()

    def deliver_result(self, result: Any) -> None:
        self._deliver(result=result)

    def deliver_outcome(self) -> None:
        """Fetch this task's outcome alone and deliver it (after ``_settle``)."""
        status = self.dask_future.status
        result: Any = None
        exception: Optional[BaseException] = None
        try:
            if status == "finished":
                result = self.dask_future.result()
            elif status == "error":
                exception = self._translate(self.dask_future)
            else:  # cancelled behind our back: the client closed or the scheduler forgot it
                exception = CancelledError(
                    f"task {self.label} was cancelled on the dask cluster (status {status!r}) "
                    "before it produced a result; was the client closed or the cluster "
                    "restarted?"
                )
        except Exception as exc:  # the outcome could not be fetched: deliver why, not nothing
            exception = exc
        self._deliver(result=result, exception=exception)

    def _translate(self, dask_future: Any) -> BaseException:
        exc = dask_future.exception()
        distributed = _import_distributed()
        if isinstance(exc, distributed.KilledWorker):
            crashed = errors.WorkerCrashedError(
                f"task {self.label} failed: every dask worker that ran it died while running "
                f"it ({exc}). The task may crash its worker (segfault, out of memory, "
                "os._exit); run it alone to check, or raise the dask setting "
                "'distributed.scheduler.allowed-failures' if workers die for other reasons.",
                task=self.label,
            )
            crashed.__cause__ = exc
            return crashed
        remote_text = "".join(traceback.format_exception(type(exc), exc, dask_future.traceback()))
        exc.__cause__ = errors.RemoteTraceback(remote_text)
        return exc

    # Runs on the caller's thread when it cancels the future we handed out.
    def on_caller_done(self, future: Future) -> None:
        if future.cancelled() and self._settle():
            self._backend._cancel_on_cluster(self.dask_future)

    def expire(self, timeout_s: float) -> None:
        if not self._settle():
            return
        self._deliver(
            exception=errors.TaskTimeoutError(
                f"task {self.label} did not finish within timeout_s={timeout_s:g} (counted "
                "from submit, time queued on the cluster included). It was cancelled on the "
                "cluster; if it had started, its worker thread runs it to the end. Raise "
                "timeout_s, or split the task."
            )
        )
        self._backend._cancel_on_cluster(self.dask_future)

    def cancel_for_shutdown(self) -> None:
        if self._settle():
            self.future.cancel()
            self._backend._cancel_on_cluster(self.dask_future)


class _OnDemandThread:
    """A daemon thread that the first piece of work starts; ``stop`` wakes and joins it.

    Subclasses keep their work under ``self._condition``, call ``_wake`` (holding it) after
    adding some, and end ``_run`` once ``self._stopping`` is set.
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._condition = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    def _wake(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()
        self._condition.notify()

    def _run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
            thread = self._thread
        if thread is not None:
            thread.join()


class _ResultFetcher(_OnDemandThread):
    """Fetches finished tasks' results: all that are ready, in one gather per round trip.

    ``stop`` delivers what is still queued before the thread ends.
    """

    def __init__(self, client: Any, thread_name: str) -> None:
        super().__init__(thread_name)
        self._client = client
        self._ready: list[_Bridge] = []

    def put(self, bridge: _Bridge) -> None:
        with self._condition:
            self._ready.append(bridge)
            self._wake()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._ready and not self._stopping:
                    self._condition.wait()
                if not self._ready:
                    return
                batch, self._ready = self._ready, []
            self._fetch(batch)

    def _fetch(self, batch: list[_Bridge]) -> None:
        try:
            results = self._client.gather([bridge.dask_future for bridge in batch])
        except Exception:  # one result was lost or the client closed: fetch one by one
            for bridge in batch:
                bridge.deliver_outcome()
            return
        for bridge, result in zip(batch, results):
            bridge.deliver_result(result)


class _Deadlines(_OnDemandThread):
    """Expires tasks whose per-task timeout passed."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(thread_name)
        self._heap: list[tuple[float, int, float, _Bridge]] = []
        self._order = itertools.count()

    def add(self, bridge: _Bridge, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._condition:
            if not self._stopping:
                heapq.heappush(self._heap, (deadline, next(self._order), timeout_s, bridge))
                self._wake()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopping:
                        return
                    while self._heap and self._heap[0][3].settled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._condition.wait()
                        continue
                    delay_s = self._heap[0][0] - time.monotonic()
                    if delay_s <= 0:
                        _, _, timeout_s, bridge = heapq.heappop(self._heap)
                        break
                    self._condition.wait(delay_s)
            # Outside the lock: expiring cancels on the cluster, a round trip.
            bridge.expire(timeout_s)


class DaskBackend(Backend):
    """Run tasks on a dask.distributed cluster (remote, or ``address='local'``).

    Options: ``address`` (``"tcp://HOST:PORT"``, ``"local"``, or a ``distributed.Client``),
    ``client`` (a ``distributed.Client`` you keep owning), ``connect_timeout_s`` (how long to
    try reaching the scheduler, default 10). Pass exactly one of ``address`` and ``client``.

    ``max_workers``: with ``address='local'``, the number of worker processes (one thread
    each; default: this machine's cores). On an existing cluster it only tells the Executor
    how many tasks to keep in flight (default: the cluster's total worker threads when
    connecting); dask itself schedules the tasks.

    Raises ``NoClusterError`` with neither option or an unreachable scheduler, and
    ``UnsupportedError`` if ``distributed`` is not installed. ``submit`` is thread safe.
    """

    name: ClassVar[str] = "dask"
    enforces_timeout: ClassVar[bool] = False
    option_names: ClassVar[tuple[str, ...]] = ("address", "client", "connect_timeout_s")

    def __init__(
        self,
        max_workers: Optional[int] = None,
        *,
        address: Union[str, distributed.Client, None] = None,
        client: Optional[distributed.Client] = None,
        connect_timeout_s: float = 10.0,
        **options: Any,
    ) -> None:
        self.check_options(options)
        distributed = _import_distributed()
        if isinstance(address, distributed.Client) and client is None:
            address, client = None, address
        elif address is not None and not isinstance(address, (str, distributed.Client)):
            raise TypeError(
                "address must be a scheduler address such as 'tcp://HOST:8786', 'local', "
                f"or a distributed.Client; got {address!r}"
            )
        if address is not None and client is not None:
            raise ValueError(
                "pass either address= or client= to the dask backend, not both: the client "
                "already knows its scheduler's address"
            )
        if address is None and client is None:
            raise errors.NoClusterError(
                "the dask backend needs a cluster and gilwise does not start one unasked.\n"
                + _HOW_TO_GET_A_CLUSTER
            )
        if client is not None and getattr(client, "asynchronous", False):
            raise ValueError(
                "the dask backend needs a synchronous distributed.Client; create it without "
                "asynchronous=True"
            )
        super().__init__(max_workers)
        self._lock = threading.Lock()
        self._closed = False
        self._outstanding: set[_Bridge] = set()
        self._cluster: Any = None
        self._owns_client = client is None
        self._client: Any = client
        if address == LOCAL_ADDRESS:
            self._client = self._start_local_cluster(distributed, self.max_workers)
        elif address is not None:
            self._client = self._connect(distributed, address, connect_timeout_s)
        try:
            if max_workers is None and address != LOCAL_ADDRESS:
                self.max_workers = max(1, sum(self._client.nthreads().values()))
            self._address = str(self._client.scheduler.address)
        except BaseException:
            self._close_owned()
            raise
        self._deadlines = _Deadlines(thread_name=f"gilwise-dask-deadlines-{id(self):x}")
        self._fetcher = _ResultFetcher(self._client, f"gilwise-dask-results-{id(self):x}")

    def _start_local_cluster(self, distributed: Any, n_workers: int) -> Any:
        host = "127.0.0.1"
        self._cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host=host,
            dashboard_address=None,
            # The scheduler always serves a small HTTP API; keep it on a free local port
            # instead of 8787, which another cluster on this host may hold.
            scheduler_kwargs={"dashboard": False, "dashboard_address": f"{host}:0"},
            silence_logs=logging.ERROR,
        )
        try:
            return distributed.Client(self._cluster, set_as_default=False)
        except BaseException:
            self._cluster.close()
            raise

    def _connect(self, distributed: Any, address: str, connect_timeout_s: float) -> Any:
        try:
            # A Client that fails to connect leaves its event-loop thread running, so first
            # check that something listens there (tcp and tls addresses; others go direct).
            scheme, location = distributed.comm.parse_address(address)
            if scheme in ("tcp", "tls"):
                host_port = distributed.comm.parse_host_port(location, 8786)
                socket.create_connection(host_port, timeout=connect_timeout_s).close()
            return distributed.Client(address, timeout=connect_timeout_s, set_as_default=False)
        except OSError as exc:
            raise errors.NoClusterError(
                f"could not reach a dask scheduler at {address!r} within "
                f"connect_timeout_s={connect_timeout_s:g} ({exc}). Is it running, and is the "
                "address reachable from here?\n" + _HOW_TO_GET_A_CLUSTER
            ) from exc

    @property
    def client(self) -> Any:
        """The distributed.Client in use (yours if you passed one)."""
        return self._client

    @property
    def address(self) -> str:
        """The scheduler's address, e.g. 'tcp://127.0.0.1:8786'."""
        return self._address

    def validate(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        import cloudpickle

        dump_task(
            fn,
            args,
            kwargs,
            dumps=cloudpickle.dumps,
            destination="a dask worker",
            function_advice=_FUNCTION_ADVICE,
            argument_advice=_ARGUMENT_ADVICE,
        )

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a dask backend after shutdown")
            try:
                # kwargs go in a partial: names like key= or priority= belong to the task,
                # not to Client.submit.
                call = functools.partial(fn, **kwargs) if kwargs else fn
                dask_future = self._client.submit(call, *args, pure=False)
            except TypeError as exc:
                if "serialize" not in str(exc):
                    raise
                self.validate(fn, args, kwargs)  # raises NotPicklableError naming the culprit
                raise errors.NotPicklableError(
                    f"cannot send task {function_name(fn)} to a dask worker: it is not "
                    f"picklable ({exc}). {_ARGUMENT_ADVICE}"
                ) from exc
            bridge = _Bridge(self, future, dask_future, _task_label(fn, dask_future.key))
            self._outstanding.add(bridge)
        future.add_done_callback(bridge.on_caller_done)
        dask_future.add_done_callback(bridge.on_dask_done)
        if timeout_s is not None:
            self._deadlines.add(bridge, timeout_s)
        return future

    def _forget(self, bridge: _Bridge) -> None:
        with self._lock:
            self._outstanding.discard(bridge)

    def _cancel_on_cluster(self, dask_future: Any) -> None:
        # Best effort: once our client is closed the cluster has already dropped the task.
        if self._client.status not in ("closing", "closed"):
            dask_future.cancel()

    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            outstanding = list(self._outstanding)
        if wait and not interrupt:
            wait_for_futures([bridge.future for bridge in outstanding])
        else:
            for bridge in outstanding:
                bridge.cancel_for_shutdown()
        self._deadlines.stop()
        self._fetcher.stop()
        self._close_owned()

    def _close_owned(self) -> None:
        if self._owns_client:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __repr__(self) -> str:
        return f"<DaskBackend address={self.address!r} max_workers={self.max_workers}>"
