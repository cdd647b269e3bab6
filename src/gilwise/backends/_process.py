"""The process backend: runs tasks in worker processes leased from the program's service.

Right for pure-Python CPU work while the GIL is on. Each backend (each Executor,
``gilwise.map`` call and Pipeline process stage) holds a lease on the program's one worker
service (_service), so workers are started once and reused: a worker forked from the
service's zygote starts in milliseconds with the program's imports done (see _zygote for
when the zygote is a fork of the program and when a fresh interpreter that preloads its
modules), and after the last backend closes, workers stay warm for ``idle_timeout_s``.

Start methods (option ``start_method``):
- "forkserver" (default): workers are forked from the zygote. Modules the program imported
  before the service started are already imported in every worker; a module imported later
  is imported by a worker when a task first needs it.
- "spawn": every worker is a fresh interpreter (today's ``python -c``), which imports what
  its tasks need. For a program whose state must not be copied into workers, or whose
  imports are not safe to run twice in one process tree.

Tasks travel pickled with cloudpickle, so lambdas and closures work; an unpicklable function
or argument raises NotPicklableError at ``validate`` or ``submit`` (synchronously). So:

- a worker that dies (os._exit, a signal, a segfault) fails only the call it ran, with
  WorkerCrashedError naming the call and the exit code or signal, and is replaced; in a
  batch (``submit_batch``), outcomes are streamed back as they are made (at most 5 ms
  late), and when its worker dies every call whose outcome had not arrived is run again,
  alone and once, so only the call that really crashes fails (with its ``index``); a call
  that had finished but whose outcome was still buffered runs twice;
- a task that outlives its ``timeout_s`` (counted from when its worker starts it, not from
  ``submit``) fails with TaskTimeoutError; its worker gets SIGTERM, then SIGKILL after
  ``kill_grace_s``, and is replaced;
- ``shutdown(interrupt=True)`` (Ctrl-C) kills the workers running this backend's tasks
  (they are not reused) and fails every unfinished task with TaskInterruptedError;
- workers that keep dying before they are ready (a broken environment, a failing
  initializer) fail the queued tasks with WorkerCrashedError instead of being restarted;
- a worker is reused by later tasks and backends: module globals one task changes are seen
  by the next task on that worker (as in every pool that reuses workers);
- workers and the zygote die with the program, even if it is SIGKILLed.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Optional

from ..errors import NotPicklableError
from . import _service
from ._base import Backend
from ._process_worker import BATCH, CALL
from ._service_workers import FORKSERVER, SPAWN
from ._wire import cloudpickle_dumps, dump_task, function_name, task_dumps

# validate() keeps a payload up to this size for the submit() of the same task: a bigger one
# costs more to keep alive (if that submit comes late, or never) than to pickle again. At
# most this many are kept (the oldest go first): enough for an Executor's queued tasks.
_MAX_CACHED_PAYLOAD_BYTES = 64 * 1024
_MAX_CACHED_TASKS = 256
DEFAULT_IDLE_TIMEOUT_S = 300.0
IDLE_TIMEOUT_ENV = "GILWISE_IDLE_TIMEOUT_S"
START_METHODS = (FORKSERVER, SPAWN)
_live_backends: weakref.WeakSet = weakref.WeakSet()


def _forget_backends_in_child() -> None:
    # A forked child has none of the parent's service: its copies of backends refuse work,
    # and get fresh locks (a copied one may be held by a thread that is not there).
    for backend in list(_live_backends):
        backend._forked = True
        backend._validated_lock = threading.RLock()
        backend._lease_lock = threading.RLock()
    _live_backends.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_backends_in_child)


def _seconds_or_zero(value: Any, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds >= 0; got {value!r}")
    seconds = float(value)
    if not seconds >= 0 or math.isinf(seconds):  # also catches NaN
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def default_idle_timeout_s() -> float:
    """GILWISE_IDLE_TIMEOUT_S if set (seconds >= 0), else 300."""
    text = os.environ.get(IDLE_TIMEOUT_ENV)
    if text is None or not text.strip():
        return DEFAULT_IDLE_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"the environment variable {IDLE_TIMEOUT_ENV} must be a number of seconds >= 0, "
            f"got {text!r}"
        ) from None
    return _seconds_or_zero(value, IDLE_TIMEOUT_ENV)


def prepare_workers(workers: int = 1) -> bool:
    """Start the worker service now if it is not running and the caller has a single thread,
    so its zygote is a fork of the program (milliseconds, every import included) rather than
    a fresh interpreter that imports them all again, as it would be once threads exist, and
    have it start ``workers`` workers. Does not block on the zygote or the workers; the
    service stops after the idle timeout if nothing uses it. For the Executor and the
    Pipeline to call before they start threads of their own. True if the service runs
    afterwards."""
    from ._service_workers import may_fork_zygote

    if _service.current() is not None:
        return True
    if not hasattr(os, "fork") or not may_fork_zygote():
        return False
    config = _service.LeaseConfig(
        max_workers=max(1, workers),
        start_method=FORKSERVER,
        initializer=None,
        initializer_name="",
        max_tasks_per_child=None,
        kill_grace_s=1.0,
        idle_timeout_s=default_idle_timeout_s(),
    )
    lease = _service.open_lease(config, workers_now=workers)  # all forked at once
    lease.service.close_lease(lease, interrupt=False)
    return True


class _LeaseHolder:
    """The backend's lease, closable by the backend's finalizer without the backend."""

    __slots__ = ("lease",)

    def __init__(self) -> None:
        self.lease: Optional[_service.Lease] = None

    def close(self) -> None:
        lease = self.lease
        if lease is not None:
            lease.service.close_lease(lease, interrupt=False)


def _same_task(validated: tuple, fn: Callable[..., Any], args: tuple, kwargs: dict) -> bool:
    """The very objects validate() pickled (two empty kwargs dicts count as the same)."""
    seen_fn, seen_args, seen_kwargs, _ = validated
    if seen_fn is not fn or seen_args is not args:
        return False
    if seen_kwargs is kwargs:
        return True
    return type(seen_kwargs) is dict and type(kwargs) is dict and not seen_kwargs and not kwargs


class ProcessBackend(Backend):
    """Runs tasks in up to ``max_workers`` worker processes of the program's worker
    service; ``submit`` and ``submit_batch`` are thread safe.

    Options:
    - ``initializer``/``initargs``: called once in each worker before its first task (as
      the stdlib pools do). Warm workers are kept per initializer: a backend is only given
      workers that ran the same initializer with equal arguments (compared pickled).
    - ``max_tasks_per_child``: a worker is replaced after running this many calls (a batch
      is not split, so it may run up to a batch's size more).
    - ``start_method``: "forkserver" (default) or "spawn" (see the module docstring).
    - ``idle_timeout_s``: how long workers stay warm after the last backend closed
      (default: the environment variable GILWISE_IDLE_TIMEOUT_S, else 300; 0 stops them
      when the last backend closes). Service-wide: the backend closed last decides.
    - ``kill_grace_s`` (default 1.0): time between SIGTERM and SIGKILL when a task times out.
    """

    name: ClassVar[str] = "process"
    enforces_timeout: ClassVar[bool] = True
    interrupts_running: ClassVar[bool] = True
    option_names: ClassVar[tuple[str, ...]] = (
        "initializer",
        "initargs",
        "max_tasks_per_child",
        "start_method",
        "idle_timeout_s",
        "kill_grace_s",
    )

    def __init__(
        self,
        max_workers: Optional[int] = None,
        *,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: tuple = (),
        max_tasks_per_child: Optional[int] = None,
        start_method: str = FORKSERVER,
        idle_timeout_s: Optional[float] = None,
        kill_grace_s: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(max_workers, **options)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None; got {initializer!r}")
        if not isinstance(initargs, (tuple, list)):
            raise TypeError(f"initargs must be a tuple; got {initargs!r}")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, numbers.Integral) or isinstance(
                max_tasks_per_child, bool
            ):
                raise TypeError(
                    f"max_tasks_per_child must be an int >= 1 or None; got {max_tasks_per_child!r}"
                )
            if max_tasks_per_child < 1:
                raise ValueError(
                    f"max_tasks_per_child must be an int >= 1 or None, got {max_tasks_per_child!r}"
                )
        if start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be 'forkserver' (workers forked from the worker service's "
                f"zygote) or 'spawn' (a fresh interpreter each); got {start_method!r}"
            )
        if start_method == FORKSERVER and not hasattr(os, "fork"):
            start_method = SPAWN  # no fork() here: every worker is a fresh interpreter
        idle = default_idle_timeout_s() if idle_timeout_s is None else idle_timeout_s
        init_payload = None
        if initializer is not None:
            init_payload = dump_task(
                initializer,
                tuple(initargs),
                {},
                dumps=lambda task: cloudpickle_dumps(task[:2]),
                destination="a process worker",
                function_advice="Define the initializer at module level.",
                argument_advice="Pass initargs that can be pickled.",
            )
        self._config = _service.LeaseConfig(
            max_workers=self.max_workers,
            start_method=start_method,
            initializer=init_payload,
            initializer_name=function_name(initializer) if initializer is not None else "",
            max_tasks_per_child=None if max_tasks_per_child is None else int(max_tasks_per_child),
            kill_grace_s=_seconds_or_zero(kill_grace_s, "kill_grace_s"),
            idle_timeout_s=_seconds_or_zero(idle, "idle_timeout_s"),
        )
        self._holder = _LeaseHolder()
        self._lease_lock = threading.RLock()  # re-entrant: a GC finalizer may shut down
        self._closed = False
        self._forked = False
        # validate() then submit() of the same task (what the Executor does, the submit
        # maybe later and from another thread) pickles once: id(args) -> (fn, args, kwargs,
        # payload), holding the objects so that id is not reused meanwhile. A submit takes
        # the entry of its args; the task is sent as it was when validated.
        self._validated: dict[int, tuple] = {}
        self._validated_lock = threading.RLock()
        weakref.finalize(self, self._holder.close)
        _live_backends.add(self)

    @property
    def start_method(self) -> str:
        return self._config.start_method

    def _lease(self) -> _service.Lease:
        with self._lease_lock:
            if self._forked:
                raise RuntimeError(
                    "this process backend was created before os.fork(); create a new one in "
                    "the child process"
                )
            if self._closed:
                raise RuntimeError("cannot submit to a process backend after its shutdown()")
            lease = self._holder.lease
            if lease is None:
                lease = self._holder.lease = _service.open_lease(self._config)
            return lease

    def validate(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Raise NotPicklableError if the task cannot be sent to a worker process."""
        payload = self._dump(fn, args, kwargs)
        if len(payload) > _MAX_CACHED_PAYLOAD_BYTES:
            return
        with self._validated_lock:
            self._validated.pop(id(args), None)  # the newest goes last
            self._validated[id(args)] = (fn, args, kwargs, payload)
            if len(self._validated) > _MAX_CACHED_TASKS:
                del self._validated[next(iter(self._validated))]

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        *,
        timeout_s: Optional[float] = None,
    ) -> Future:
        """Queue ``fn(*args, **kwargs)`` for a worker. Raises NotPicklableError at once if the
        task cannot be pickled, RuntimeError after shutdown."""
        _check_timeout(timeout_s)
        with self._validated_lock:
            validated = self._validated.pop(id(args), None)
        if validated is not None and _same_task(validated, fn, args, kwargs):
            payload = validated[3]
        else:
            payload = self._dump(fn, args, kwargs)
        lease = self._lease()
        call = _service.Call(fn, args, kwargs, timeout_s, None)
        job = _service.Job([call], CALL + payload, batch=False, timeout_s=timeout_s)
        lease.service.submit(lease, job)
        return call.future

    def submit_batch(
        self,
        fn: Callable[..., Any],
        calls: list[tuple[tuple, dict]],
        *,
        timeout_s: Optional[float] = None,
    ) -> list[Future]:
        """Run ``fn(*args, **kwargs)`` for each ``(args, kwargs)`` in order on one worker
        (one message: ``fn`` is pickled once); one future per call, each completed as soon
        as that call's outcome arrives. If the worker dies, every call without an outcome
        runs again alone, once, so only the call that crashes fails (WorkerCrashedError
        with its ``index``). Raises NotPicklableError (naming the call) at once."""
        _check_timeout(timeout_s)
        calls = list(calls)
        if not calls:
            return []
        flush_each = timeout_s is not None
        try:
            payload = BATCH + task_dumps((fn, calls, flush_each))
        except Exception:
            self._dump(fn, (), {})  # the function itself: named as such
            for index, (args, kwargs) in enumerate(calls):
                try:
                    self._dump(fn, args, kwargs)
                except NotPicklableError as exc:
                    raise NotPicklableError(f"call #{index} of the batch: {exc}") from exc
            raise
        lease = self._lease()
        batch = [
            _service.Call(fn, args, kwargs, timeout_s, index)
            for index, (args, kwargs) in enumerate(calls)
        ]
        job = _service.Job(batch, payload, batch=True, timeout_s=timeout_s)
        lease.service.submit(lease, job)
        return [call.future for call in batch]

    def warm_up(self) -> None:
        """Start this backend's workers in the background now (does not block)."""
        lease = self._lease()
        lease.service.warm_up(lease)

    def shutdown(self, wait: bool = True, *, interrupt: bool = False) -> None:
        """Refuse new tasks. Without ``interrupt``, queued and running tasks still finish;
        with it, the workers running this backend's tasks are killed and every unfinished
        task fails with TaskInterruptedError. With ``wait`` this blocks until the backend's
        tasks are done (a Ctrl-C meanwhile interrupts them). Idle workers stay warm in the
        service for ``idle_timeout_s``."""
        with self._validated_lock:
            self._validated.clear()
        with self._lease_lock:
            self._closed = True
            lease = self._holder.lease
            if self._forked or lease is None:
                return
        lease.service.close_lease(lease, interrupt=interrupt)
        if not wait:
            return
        try:
            lease.released.wait()
        except KeyboardInterrupt:
            lease.service.close_lease(lease, interrupt=True)
            raise

    @staticmethod
    def _dump(fn: Callable[..., Any], args: tuple, kwargs: dict) -> bytes:
        return dump_task(
            fn,
            args,
            kwargs,
            dumps=task_dumps,
            destination="a process worker",
            function_advice='Define it at module level, or use backend="thread".',
            argument_advice='Use backend="thread", or pass something picklable.',
        )


def _check_timeout(timeout_s: Optional[float]) -> None:
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive or None, got {timeout_s!r}")
