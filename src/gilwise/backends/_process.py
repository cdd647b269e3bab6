"""The process backend: a pool of worker processes, one task at a time each.

Right for pure-Python CPU work while the GIL is on. Tasks travel pickled with cloudpickle, so
lambdas and closures work; an unpicklable function or argument raises NotPicklableError at
``validate`` or ``submit`` (synchronously). A manager thread owns the workers: it starts them
on demand (spawned as fresh interpreters, never forked: the parent has threads), hands each
one task, and watches every worker's pipe and exit at once. So:

- a worker that dies (os._exit, a signal, a segfault) fails only the task it ran, with
  WorkerCrashedError naming the task and the exit code or signal, and is replaced;
- a task that outlives its ``timeout_s`` (counted from when a started worker receives it, not
  from ``submit``) fails with TaskTimeoutError; its worker gets SIGTERM, then SIGKILL after
  ``kill_grace_s``, and is replaced;
- workers that keep dying before they are ready (a broken environment) fail the queued
  tasks with WorkerCrashedError instead of being restarted forever;
- workers die with the parent (PR_SET_PDEATHSIG and EOF on their pipe), and a backend that is
  garbage-collected or still open at interpreter exit drains its tasks and stops its workers.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import cloudpickle

from ..errors import TaskTimeoutError, WorkerCrashedError
from ._base import Backend
from ._process_worker import READY
from ._wire import decode_outcome, describe_task, dump_task

# Failed start-ups in a row after which queued tasks fail instead of retrying forever.
_MAX_BOOT_FAILURES = 3
# validate() keeps a payload up to this size for the submit() of the same task: a bigger one
# costs more to keep alive (if that submit comes late, or never) than to pickle again. At
# most this many are kept (the oldest go first): enough for an Executor's queued tasks.
_MAX_CACHED_PAYLOAD_BYTES = 64 * 1024
_MAX_CACHED_TASKS = 256
_live_pools: weakref.WeakSet = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for pool in list(_live_pools):
        pool.close(wait=False)


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:  # CPython 3.9+: runs before non-daemon threads are joined
    _register_atexit(_close_all_at_exit)


def _forget_pools_in_child() -> None:
    # A forked child has none of the parent's manager threads: its copy of a pool refuses
    # work, and gets a fresh lock (the copied one may be held by a thread that is not there,
    # and the backend's finalizer takes it at the child's exit).
    for pool in list(_live_pools):
        pool._lock = threading.RLock()
        pool._finished = True
    _live_pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


def _how_it_died(returncode: Optional[int]) -> str:
    if returncode is None:
        return "it closed its pipe"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"it was killed by {name} (exit code {returncode})"
    return f"it exited with code {returncode}"


class _Task:
    __slots__ = ("args", "fn", "future", "kwargs", "payload", "timeout_s")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        payload: bytes,
        timeout_s: Optional[float],
    ) -> None:
        self.future: Future = Future()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.payload = payload
        self.timeout_s = timeout_s

    def describe(self) -> str:
        # Computed only when a message needs it, to keep the per-task cost low.
        return describe_task(self.fn, self.args, self.kwargs)


class _Worker:
    BOOTING, IDLE, BUSY, DYING = "booting", "idle", "busy", "dying"
    __slots__ = ("conn", "deadline", "kill_at", "pidfd", "process", "state", "task")

    def __init__(self, process: subprocess.Popen, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pidfd: Optional[int] = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.pidfd = pidfd_open(process.pid)
            except OSError:  # kernel older than 5.3: EOF on the pipe tells us instead
                self.pidfd = None
        self.state = self.BOOTING
        self.task: Optional[_Task] = None
        self.deadline: Optional[float] = None
        self.kill_at: Optional[float] = None

    def register(self, selector: selectors.BaseSelector) -> None:
        selector.register(self.conn.fileno(), selectors.EVENT_READ, (self, False))
        if self.pidfd is not None:
            selector.register(self.pidfd, selectors.EVENT_READ, (self, True))

    def release(self, selector: selectors.BaseSelector) -> None:
        selector.unregister(self.conn.fileno())
        if self.pidfd is not None:
            selector.unregister(self.pidfd)
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def _worker_command() -> list[str]:
    package_parent = str(Path(__file__).resolve().parents[2])
    bootstrap = (
        "import sys; sys.path.append(sys.argv[1]); "
        "from gilwise.backends._process_worker import main; "
        "main(int(sys.argv[2]), int(sys.argv[3]))"
    )
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-c", bootstrap, package_parent]


class _Pool:
    """The shared state of one backend, run by its manager thread (which never sees the
    backend itself, so a forgotten backend can be collected)."""

    def __init__(self, max_workers: int, kill_grace_s: float) -> None:
        self.max_workers = max_workers
        self.kill_grace_s = kill_grace_s
        # Re-entrant: the cyclic GC may run this pool's finalizer (close) on a thread that
        # holds the lock, e.g. the manager thread collecting its own forgotten backend.
        self._lock = threading.RLock()
        self._pending: collections.deque[_Task] = collections.deque()
        self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._finished = False  # the manager thread has stopped and closed the wake-up pipe
        self._wake_r = self._wake_w = -1
        self._selector: selectors.BaseSelector
        self._wake_sent = False
        self._workers: list[_Worker] = []  # touched only by the manager thread
        self._boot_failures = 0
        self._command = _worker_command()
        self._setup = cloudpickle.dumps({"sys_path": list(sys.path)})

    # --- called from any thread -------------------------------------------------------
    def submit(self, task: _Task) -> None:
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot submit to a process backend after its shutdown()")
            if self._finished:  # only if the manager thread failed: its traceback was printed
                raise RuntimeError(
                    "the process backend's manager thread has stopped; create a new backend"
                )
            if self._thread is None:
                self._start_manager()
            self._pending.append(task)
            self._wake()

    def close(self, wait: bool) -> None:
        with self._lock:
            self._closing = True
            thread = self._thread
            if thread is not None and not self._finished:
                self._wake()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _wake(self) -> None:
        # Called with the lock held, so the manager cannot close the pipe meanwhile; at most
        # one byte is in the pipe per round of the manager, so the write never blocks.
        if not self._wake_sent:
            self._wake_sent = True
            os.write(self._wake_w, b"x")

    def _start_manager(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        thread = threading.Thread(target=self._run, name="gilwise-process-manager", daemon=False)
        try:
            thread.start()  # "can't start new thread" on a loaded machine: nothing half-made
        except BaseException:
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self._thread = thread
        _live_pools.add(self)

    # --- the manager thread -----------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            try:
                self._stop_workers()
            finally:
                with self._lock:  # from here on submit() refuses, so nothing is queued late
                    self._finished = True
                    self._selector.close()
                    os.close(self._wake_r)
                    os.close(self._wake_w)
                _live_pools.discard(self)
                self._fail_everything(
                    RuntimeError("the process backend stopped before this task ran")
                )

    def _loop(self) -> None:
        while True:
            # Drain the wake-up pipe before clearing the flag: a submit in between then
            # leaves a byte behind (a spare wake-up), never a flag without a byte (a lost one).
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            with self._lock:
                self._wake_sent = False
                closing = self._closing
            self._schedule()
            busy = any(w.state == _Worker.BUSY for w in self._workers)
            if closing and not busy and not self._pending:
                return
            events = self._selector.select(self._seconds_to_next_deadline())
            exited = []
            for key, _ in events:
                if key.data is None:
                    continue  # the wake-up pipe: drained at the top of the loop
                worker, is_pidfd = key.data
                if is_pidfd:
                    exited.append(worker)
                elif worker in self._workers:
                    self._receive(worker)
            for worker in exited:
                if worker in self._workers:
                    self._drain_then_exit(worker)
            self._enforce_deadlines()

    def _seconds_to_next_deadline(self) -> Optional[float]:
        moments = [w.deadline for w in self._workers if w.deadline is not None]
        moments += [w.kill_at for w in self._workers if w.kill_at is not None]
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _schedule(self) -> None:
        idle = [w for w in self._workers if w.state == _Worker.IDLE]
        while idle and self._pending:
            task = self._pending.popleft()
            if task.future.set_running_or_notify_cancel():
                self._assign(idle.pop(), task)
        live = [w for w in self._workers if w.state != _Worker.DYING]
        booting = sum(1 for w in live if w.state == _Worker.BOOTING)
        wanted = min(len(self._pending) - booting, self.max_workers - len(live))
        for _ in range(max(0, wanted)):
            try:
                self._start_worker()
            except OSError as exc:  # e.g. out of file descriptors or memory
                if not live:  # nobody could ever run the queued tasks: say why
                    error = WorkerCrashedError(
                        f"could not start a process worker ({type(exc).__name__}: {exc}); "
                        f"free the resource, or use backend='thread'."
                    )
                    error.__cause__ = exc
                    self._fail_everything(error)
                break  # try again on the next event

    def _start_worker(self) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            process = subprocess.Popen(
                [*self._command, str(child_end.fileno()), str(os.getpid())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        worker = _Worker(process, Connection(parent_end.detach()))
        self._workers.append(worker)
        worker.register(self._selector)
        with contextlib.suppress(OSError):  # if it died already, its pipe or pidfd says so
            worker.conn.send_bytes(self._setup)

    def _assign(self, worker: _Worker, task: _Task) -> None:
        worker.state = _Worker.BUSY
        worker.task = task
        if task.timeout_s is not None:
            worker.deadline = time.monotonic() + task.timeout_s
        try:
            worker.conn.send_bytes(task.payload)
        except OSError:
            self._on_exit(worker)

    def _receive(self, worker: _Worker) -> None:
        """Its pipe is readable: one message, or EOF because it exited."""
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._on_exit(worker)
            return
        self._on_message(worker, data)

    def _drain_then_exit(self, worker: _Worker) -> None:
        """It exited: take what it sent before dying (a result still counts), then reap it."""
        try:
            while worker.conn.poll():
                self._on_message(worker, worker.conn.recv_bytes())
        except (EOFError, OSError):
            pass
        self._on_exit(worker)

    def _on_message(self, worker: _Worker, data: bytes) -> None:
        if worker.state == _Worker.BOOTING and data == READY:
            worker.state = _Worker.IDLE
            self._boot_failures = 0
        elif worker.state == _Worker.BUSY and worker.task is not None:
            task = worker.task
            worker.state, worker.task, worker.deadline = _Worker.IDLE, None, None
            ok, value = decode_outcome(data, task.describe)
            if ok:
                task.future.set_result(value)
            else:
                task.future.set_exception(value)
        # a DYING worker's late answer is dropped: its task already failed with a timeout

    def _on_exit(self, worker: _Worker) -> None:
        try:
            returncode: Optional[int] = worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipe but lives on: make it stop
            worker.process.kill()
            worker.process.wait()
            returncode = None
        self._workers.remove(worker)
        worker.release(self._selector)
        task, state = worker.task, worker.state
        worker.task = None
        if state == _Worker.BUSY and task is not None:
            description = task.describe()
            task.future.set_exception(
                WorkerCrashedError(
                    f"the process worker (pid {worker.process.pid}) running task {description} "
                    f"died: {_how_it_died(returncode)}. Only this task failed; the worker was "
                    f"replaced. Run the task with backend='thread' to debug it in-process.",
                    task=description,
                    exitcode=returncode,
                )
            )
        elif state == _Worker.BOOTING:
            self._boot_failures += 1
            if self._boot_failures >= _MAX_BOOT_FAILURES:
                self._boot_failures = 0
                self._fail_everything(
                    WorkerCrashedError(
                        f"process workers keep dying while starting "
                        f"({_how_it_died(returncode)}); see their error output above, and "
                        f"check that {sys.executable} can import gilwise and cloudpickle.",
                        exitcode=returncode,
                    )
                )

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.deadline is not None and worker.deadline <= now and worker.task is not None:
                task = worker.task
                worker.state, worker.task, worker.deadline = _Worker.DYING, None, None
                worker.kill_at = now + self.kill_grace_s
                with contextlib.suppress(OSError):  # it may have exited just now
                    worker.process.terminate()
                task.future.set_exception(
                    TaskTimeoutError(
                        f"task {task.describe()} ran longer than its timeout of "
                        f"{task.timeout_s:g} s; its worker process was stopped and replaced. "
                        f"Raise the timeout, or split the work into smaller tasks."
                    )
                )
            elif worker.kill_at is not None and worker.kill_at <= now:
                worker.kill_at = None
                with contextlib.suppress(OSError):
                    worker.process.kill()

    def _fail_everything(self, error: BaseException) -> None:
        while self._pending:
            task = self._pending.popleft()
            if task.future.set_running_or_notify_cancel():
                task.future.set_exception(error)

    def _stop_workers(self) -> None:
        for worker in self._workers:
            self._selector.unregister(worker.conn.fileno())
            if worker.pidfd is not None:
                self._selector.unregister(worker.pidfd)
            worker.conn.close()  # EOF: an idle worker exits by itself
            if worker.state != _Worker.IDLE:
                worker.process.kill()
        deadline = time.monotonic() + max(self.kill_grace_s, 1.0)
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            if worker.pidfd is not None:
                os.close(worker.pidfd)
            if worker.task is not None:
                worker.task.future.set_exception(
                    RuntimeError("the process backend stopped while this task ran")
                )
        self._workers.clear()


def _same_task(validated: tuple, fn: Callable[..., Any], args: tuple, kwargs: dict) -> bool:
    """The very objects validate() pickled (two empty kwargs dicts count as the same)."""
    seen_fn, seen_args, seen_kwargs, _ = validated
    if seen_fn is not fn or seen_args is not args:
        return False
    if seen_kwargs is kwargs:
        return True
    return type(seen_kwargs) is dict and type(kwargs) is dict and not seen_kwargs and not kwargs


class ProcessBackend(Backend):
    """Runs tasks in up to ``max_workers`` worker processes; ``submit`` is thread safe.

    Options: ``kill_grace_s`` (default 1.0), the time between SIGTERM and SIGKILL when a task
    times out.
    """

    name: ClassVar[str] = "process"
    enforces_timeout: ClassVar[bool] = True

    def __init__(
        self, max_workers: Optional[int] = None, *, kill_grace_s: float = 1.0, **options: Any
    ) -> None:
        super().__init__(max_workers, **options)
        self._pool = _Pool(self.max_workers, float(kill_grace_s))
        # validate() then submit() of the same task (what the Executor does, the submit
        # maybe later and from another thread) pickles once: id(args) -> (fn, args, kwargs,
        # payload), holding the objects so that id is not reused meanwhile. A submit takes
        # the entry of its args; the task is sent as it was when validated.
        self._validated: dict[int, tuple] = {}
        self._validated_lock = threading.RLock()  # re-entrant: a GC finalizer may shut down
        weakref.finalize(self, self._pool.close, False)

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
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive or None, got {timeout_s!r}")
        with self._validated_lock:
            validated = self._validated.pop(id(args), None)
        if validated is not None and _same_task(validated, fn, args, kwargs):
            payload = validated[3]
        else:
            payload = self._dump(fn, args, kwargs)
        task = _Task(fn, args, kwargs, payload, timeout_s)
        self._pool.submit(task)
        return task.future

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new tasks; queued and running ones still finish, then the workers stop.
        With ``wait`` this blocks until then; without, it returns at once."""
        with self._validated_lock:
            self._validated.clear()
        self._pool.close(wait)

    @staticmethod
    def _dump(fn: Callable[..., Any], args: tuple, kwargs: dict) -> bytes:
        return dump_task(
            fn,
            args,
            kwargs,
            dumps=cloudpickle.dumps,
            destination="a process worker",
            function_advice='Define it at module level, or use backend="thread".',
            argument_advice='Use backend="thread", or pass something picklable.',
        )
