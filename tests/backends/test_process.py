"""The process backend: results, remote errors, crashes, timeouts, pickling errors, shutdown
and no orphaned workers."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import weakref
from pathlib import Path

import _backend_tasks as tasks
import cloudpickle
import psutil
import pytest

from gilwise.backends import _service, _service_workers, create
from gilwise.backends._process import ProcessBackend
from gilwise.errors import (
    NotPicklableError,
    RemoteTraceback,
    TaskTimeoutError,
    WorkerCrashedError,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

RESULT_TIMEOUT_S = 60.0
SRC_DIR = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def backend():
    pool = ProcessBackend(2)
    yield pool
    pool.shutdown(wait=True)


def _gone(pid: int, timeout_s: float = 15.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout_s)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _script_env() -> dict:
    paths = [SRC_DIR, str(Path(tasks.__file__).parent)]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def _run_script(code: str, *, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_script_env(),
        check=False,
    )


@pytest.mark.multiversion
def test_runs_module_functions_lambdas_and_closures(backend):
    offset = 10
    futures = [
        backend.submit(tasks.add, (1, 2), {}),
        backend.submit(lambda x: x * 3, (5,), {}),
        backend.submit(lambda: offset + 1, (), {}),
        backend.submit(tasks.add, (1,), {"right": 4}),
    ]
    assert [f.result(RESULT_TIMEOUT_S) for f in futures] == [3, 15, 11, 5]


@pytest.mark.multiversion
def test_queues_more_tasks_than_workers_and_reuses_them():
    pool = ProcessBackend(1)
    try:
        futures = [pool.submit(tasks.add, (i, 1), {}) for i in range(20)]
        assert [f.result(RESULT_TIMEOUT_S) for f in futures] == list(range(1, 21))
        pids = {pool.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S) for _ in range(3)}
        assert len(pids) == 1 and os.getpid() not in pids
    finally:
        pool.shutdown()


def test_submit_is_thread_safe(backend):
    barrier = threading.Barrier(4, timeout=RESULT_TIMEOUT_S)
    futures: dict[int, list] = {}

    def submit_many(base: int) -> None:
        barrier.wait()
        futures[base] = [backend.submit(tasks.add, (base, i), {}) for i in range(30)]

    threads = [threading.Thread(target=submit_many, args=(base * 100,)) for base in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RESULT_TIMEOUT_S)
    for base, submitted in futures.items():
        assert [f.result(RESULT_TIMEOUT_S) for f in submitted] == [base + i for i in range(30)]


@pytest.mark.multiversion
def test_task_exception_keeps_its_type_and_carries_the_remote_traceback(backend):
    future = backend.submit(tasks.fail_with_key_error, ("missing",), {})
    with pytest.raises(KeyError, match="missing") as caught:
        future.result(RESULT_TIMEOUT_S)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_with_key_error" in cause.traceback_text


def test_exception_that_cannot_be_rebuilt_arrives_as_runtime_error_naming_it(backend):
    future = backend.submit(tasks.fail_unrebuildably, (), {})
    with pytest.raises(RuntimeError, match="NeedsTwoArgumentsError: 7: bad") as caught:
        future.result(RESULT_TIMEOUT_S)
    assert isinstance(caught.value.__cause__, RemoteTraceback)


@pytest.mark.multiversion
@pytest.mark.parametrize(
    ("crash", "args", "exitcode"),
    [
        (os._exit, (3,), 3),
        (ctypes.string_at, (0,), -signal.SIGSEGV),
        (tasks.kill_self, (signal.SIGKILL,), -signal.SIGKILL),
    ],
    ids=["os._exit", "segfault", "sigkill"],
)
def test_a_crash_fails_only_its_task_and_the_pool_recovers(backend, crash, args, exitcode):
    before = [backend.submit(tasks.add, (i,), {}) for i in range(3)]
    crashed = backend.submit(crash, args, {})
    after = [backend.submit(tasks.add, (i, 10), {}) for i in range(3)]
    with pytest.raises(WorkerCrashedError) as caught:
        crashed.result(RESULT_TIMEOUT_S)
    error = caught.value
    assert error.exitcode == exitcode
    assert crash.__name__ in error.task and crash.__name__ in str(error)
    assert str(exitcode) in str(error)
    assert [f.result(RESULT_TIMEOUT_S) for f in before + after] == [0, 1, 2, 10, 11, 12]


def test_crashes_and_timeouts_are_seen_without_pidfd(monkeypatch, tmp_path):
    # Kernels before 5.3 (and other POSIX systems) have no pidfd: EOF on the pipe must do.
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    pool = ProcessBackend(1, kill_grace_s=0.2)
    try:
        crashed = pool.submit(os._exit, (4,), {})
        with pytest.raises(WorkerCrashedError, match="exited with code 4"):
            crashed.result(RESULT_TIMEOUT_S)
        stuck = pool.submit(tasks.wait_for_file, (str(tmp_path / "never"),), {}, timeout_s=0.2)
        with pytest.raises(TaskTimeoutError):
            stuck.result(RESULT_TIMEOUT_S)
        assert pool.submit(tasks.add, (3, 4), {}).result(RESULT_TIMEOUT_S) == 7
    finally:
        pool.shutdown()


def test_crash_message_names_the_signal(backend):
    future = backend.submit(ctypes.string_at, (0,), {})
    with pytest.raises(WorkerCrashedError) as caught:
        future.result(RESULT_TIMEOUT_S)
    assert "string_at(0)" in str(caught.value) and "SIGSEGV" in str(caught.value)


def test_workers_that_cannot_start_fail_the_queued_tasks_instead_of_looping(monkeypatch):
    broken = [sys.executable, "-c", "import sys; sys.exit(5)"]
    monkeypatch.setattr(_service_workers, "worker_command", lambda: broken)
    pool = ProcessBackend(1, start_method="spawn")
    futures = [pool.submit(tasks.add, (1,), {}) for _ in range(3)]
    for future in futures:
        with pytest.raises(WorkerCrashedError, match="keep dying while starting") as caught:
            future.result(RESULT_TIMEOUT_S)
        assert caught.value.exitcode == 5
    pool.shutdown()


def test_a_worker_that_cannot_be_started_fails_the_queued_tasks_with_the_reason(monkeypatch):
    missing = [str(Path(SRC_DIR) / "no-such-python")]
    monkeypatch.setattr(_service_workers, "worker_command", lambda: missing)
    pool = ProcessBackend(1, start_method="spawn")
    future = pool.submit(tasks.add, (1,), {})
    with pytest.raises(WorkerCrashedError, match="could not start a process worker"):
        future.result(RESULT_TIMEOUT_S)
    pool.shutdown()


@pytest.mark.multiversion
def test_timeout_kills_the_task_and_replaces_its_worker(tmp_path):
    pool = ProcessBackend(1, kill_grace_s=0.2)
    try:
        first_pid = pool.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
        stuck = pool.submit(tasks.wait_for_file, (str(tmp_path / "never"),), {}, timeout_s=0.3)
        with pytest.raises(TaskTimeoutError, match=r"wait_for_file.*timeout of 0\.3 s"):
            stuck.result(RESULT_TIMEOUT_S)
        assert _gone(first_pid), "the timed-out worker is still running"
        assert pool.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S) != first_pid
    finally:
        pool.shutdown()


def test_a_task_within_its_timeout_is_not_killed(backend):
    assert backend.submit(tasks.add, (2, 2), {}, timeout_s=30).result(RESULT_TIMEOUT_S) == 4
    assert ProcessBackend.enforces_timeout is True


@pytest.mark.multiversion
def test_unpicklable_argument_is_refused_at_validate_and_submit(backend):
    lock = threading.Lock()

    def uses_lock(lock):
        return lock

    with pytest.raises(NotPicklableError) as caught:
        backend.validate(uses_lock, (lock,), {})
    message = str(caught.value)
    assert "the argument 'lock' of task" in message and "uses_lock" in message
    assert "to a process worker: it is not picklable" in message
    assert "_thread.lock" in message and 'backend="thread"' in message
    assert isinstance(caught.value, TypeError)
    with pytest.raises(NotPicklableError, match="the argument 'lock'"):
        backend.submit(uses_lock, (), {"lock": lock})


def test_unpicklable_function_is_named(backend):
    lock = threading.Lock()

    def closes_over_lock():
        return lock

    with pytest.raises(NotPicklableError, match=r"\(the function\).*Define it at module level"):
        backend.validate(closes_over_lock, (), {})


def test_results_only_cloudpickle_can_send_come_back(backend):
    def make_local_object(value):
        class Local:
            pass

        made = Local()
        made.value = value
        return made

    assert backend.submit(make_local_object, (4,), {}).result(RESULT_TIMEOUT_S).value == 4
    adder = backend.submit(lambda: lambda y: y + 1, (), {}).result(RESULT_TIMEOUT_S)
    assert adder(1) == 2


def test_unpicklable_result_fails_that_task_clearly(backend):
    future = backend.submit(tasks.return_a_lock, (), {})
    with pytest.raises(NotPicklableError, match=r"return_a_lock\(\) returned a lock"):
        future.result(RESULT_TIMEOUT_S)
    assert backend.submit(tasks.add, (1, 1), {}).result(RESULT_TIMEOUT_S) == 2


def test_no_process_starts_before_the_first_task():
    before = psutil.Process().children()
    pool = create("process", 2)
    assert psutil.Process().children() == before
    pool.shutdown()


def test_shutdown_wait_drains_queued_tasks_then_stops_workers():
    pool = ProcessBackend(2, idle_timeout_s=0)  # no warm workers kept after it
    futures = [pool.submit(tasks.add, (i, i), {}) for i in range(10)]
    pids = {pool.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)}
    pool.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2 * i for i in range(10)]
    assert all(_gone(p) for p in pids)
    with pytest.raises(RuntimeError, match="after its shutdown"):
        pool.submit(tasks.add, (1,), {})
    pool.shutdown(wait=True)  # idempotent


def test_shutdown_without_wait_returns_while_a_task_runs(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    pool = ProcessBackend(1)
    future = pool.submit(tasks.touch_then_wait_for_file, (str(started), str(release)), {})
    assert tasks.wait_for_file(str(started)) == "saw it"
    pool.shutdown(wait=False)
    assert not future.done()
    release.touch()
    assert future.result(RESULT_TIMEOUT_S) == "saw it"
    # no_leaks then checks that the manager thread and the worker ended by themselves


def test_a_collected_backend_stops_its_manager_and_workers():
    pool = ProcessBackend(2, idle_timeout_s=0)
    worker_pid = pool.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
    del pool
    gc.collect()
    assert _gone(worker_pid)
    # no_leaks fails the test if the manager thread is still alive


@pytest.mark.multiversion
def test_forgotten_backend_stops_its_workers_and_does_not_block_exit():
    script = """
        import gc, psutil
        from gilwise.backends import create
        import _backend_tasks as tasks

        dropped = create("process", 1, idle_timeout_s=0)
        dropped_pid = dropped.submit(tasks.pid, (), {}).result(60)
        del dropped  # the only lease: with idle_timeout_s=0 the service stops
        gc.collect()
        try:
            psutil.Process(dropped_pid).wait(15)
            verdict = "dropped worker stopped"
        except psutil.NoSuchProcess:
            verdict = "dropped worker stopped"
        except psutil.TimeoutExpired:
            verdict = "dropped worker still running"
        kept = create("process", 1)
        print(kept.submit(tasks.pid, (), {}).result(60), flush=True)
        print(verdict, flush=True)
        # exit without shutdown(): the kept backend must not hold the interpreter open
    """
    done = _run_script(script)
    assert done.returncode == 0, done.stderr
    kept_pid, verdict = done.stdout.split("\n")[:2]
    assert verdict == "dropped worker stopped"
    assert _gone(int(kept_pid))


def test_workers_die_with_a_killed_parent(tmp_path):
    # One worker idles (EOF on its pipe ends it); one is busy in a task (only
    # PR_SET_PDEATHSIG can end it, it never reads its pipe again).
    started, never = tmp_path / "started", tmp_path / "never"
    script = f"""
        import sys
        from gilwise.backends import create
        import _backend_tasks as tasks

        pool = create("process", 2)
        busy = pool.submit(tasks.touch_then_wait_for_file, ({str(started)!r}, {str(never)!r}), {{}})
        print(pool.submit(tasks.pid, (), {{}}).result(60), flush=True)  # on the other worker
        sys.stdin.read()  # until the test kills us
    """
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_script_env(),
    )
    try:
        assert parent.stdout is not None
        first_pid = int(parent.stdout.readline())
        assert tasks.wait_for_file(str(started)) == "saw it"
        workers = psutil.Process(parent.pid).children(recursive=True)  # zygote, 2 workers
        assert len(workers) == 3 and first_pid in {w.pid for w in workers}
    finally:
        parent.kill()
        parent.wait()
        parent.stdin.close()  # type: ignore[union-attr]
        parent.stdout.close()  # type: ignore[union-attr]
    for worker in workers:
        assert _gone(worker.pid), f"worker {worker.pid} outlived its SIGKILLed parent"


@pytest.mark.multiversion
def test_validate_then_submit_of_the_same_task_pickles_it_once(backend, monkeypatch):
    from gilwise.backends import _process

    calls = []
    real_dumps = _process.task_dumps
    monkeypatch.setattr(_process, "task_dumps", lambda obj: calls.append(obj) or real_dumps(obj))
    args = (2, 3)
    backend.validate(tasks.add, args, {})
    future = backend.submit(tasks.add, args, {})  # another empty kwargs dict: still a match
    assert len(calls) == 1
    validated = (1, 1)
    backend.validate(tasks.add, validated, {})
    other = backend.submit(tasks.add, (5, 5), {})  # not what was validated: pickled anew
    assert len(calls) == 3
    outcome: list = []  # the Executor may hand a validated task over from another thread
    thread = threading.Thread(
        target=lambda: outcome.append(backend.submit(tasks.add, validated, {}))
    )
    thread.start()
    thread.join(RESULT_TIMEOUT_S)
    again = backend.submit(tasks.add, validated, {})  # the entry was taken: pickled anew
    assert len(calls) == 4
    results = [f.result(RESULT_TIMEOUT_S) for f in (future, other, outcome[0], again)]
    assert results == [5, 10, 2, 2]


def test_the_validated_payloads_kept_are_few_small_and_dropped_at_shutdown(backend):
    with pytest.raises(NotPicklableError):
        backend.validate(tasks.add, (threading.Lock(),), {})
    assert not backend._validated
    backend.validate(tasks.add, (b"x" * 100_000, b""), {})  # too big to keep
    assert not backend._validated
    kept = [(i, 1) for i in range(300)]
    for args in kept:
        backend.validate(tasks.add, args, {})
    assert len(backend._validated) == 256
    assert backend._validated.get(id(kept[-1])) is not None  # the oldest went first
    assert backend._validated.get(id(kept[0])) is None
    assert backend.submit(tasks.add, kept[0], {}).result(RESULT_TIMEOUT_S) == 1
    backend.shutdown()
    assert not backend._validated


class _CollectingLock:
    """Wraps a pool's lock: once armed, the manager thread runs the cyclic GC right after it
    acquires the lock, as a GC triggered by an allocation there would. A nested acquire that
    would block for good is reported instead (and gives up after a guard timeout)."""

    GUARD_S = 10.0

    def __init__(self, real, manager_of, when) -> None:
        self.real, self.manager_of, self.when = real, manager_of, when
        self.armed = threading.Event()
        self.collected = threading.Event()
        self.depth = 0
        self.deadlocked = False

    def __enter__(self):
        if self.depth and threading.current_thread() is self.manager_of():
            if not self.real.acquire(timeout=self.GUARD_S):
                self.deadlocked = True
                raise RuntimeError("the pool's lock is not re-entrant")
        else:
            self.real.acquire()
        self.depth += 1
        if self.armed.is_set() and threading.current_thread() is self.manager_of() and self.when():
            self.armed.clear()
            gc.collect()
            self.collected.set()
        return self

    def __exit__(self, *exc_info) -> None:
        self.depth -= 1
        self.real.release()


@pytest.mark.multiversion
def test_the_manager_collecting_its_own_forgotten_backend_does_not_deadlock(monkeypatch):
    # A backend in a reference cycle is freed by the cyclic GC, on whichever thread it runs:
    # when that is the service's manager thread, holding the service's lock, the
    # finalizer's close of the lease must not wait for that lock forever.
    from gilwise.backends._process_worker import CALL

    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the guard's error
    pool = ProcessBackend(1, idle_timeout_s=0)
    pool.cycle = pool
    assert pool.submit(tasks.add, (1, 1), {}).result(RESULT_TIMEOUT_S) == 2
    service = _service.current()
    lease = pool._holder.lease
    # The manager collects when it takes the lock with the late task queued (below).
    lock = _CollectingLock(service.lock, lambda: service.thread, lambda: bool(lease.pending))
    service.lock = lock
    finalized_on: list = []
    weakref.finalize(pool, lambda: finalized_on.append(threading.current_thread()))
    call = _service.Call(tasks.add, (2, 2), {}, None, None)
    late = _service.Job(
        [call], CALL + cloudpickle.dumps((tasks.add, (2, 2), {})), batch=False, timeout_s=None
    )
    gc.disable()  # only the manager collects, once armed
    try:
        del pool
        lock.armed.set()
        service.submit(lease, late)  # wakes the manager, which takes the lock and collects
        assert lock.collected.wait(RESULT_TIMEOUT_S)
    finally:
        gc.enable()
    assert finalized_on == [service.thread], "the backend was not collected on the manager"
    assert not lock.deadlocked, "closing the lease from the GC on the manager deadlocked"
    assert call.future.result(RESULT_TIMEOUT_S) == 4  # queued before the close: it still runs
    service.thread.join(RESULT_TIMEOUT_S)
    assert not service.thread.is_alive(), "the finalizer's close did not release the lease"


def test_a_service_thread_that_cannot_start_leaves_the_backend_usable(monkeypatch):
    real_start = threading.Thread.start
    refusals = []

    def start_once_refused(self):
        if self.name == "gilwise-process-service" and not refusals:
            refusals.append(self)
            raise RuntimeError("can't start new thread")
        real_start(self)

    assert _service.stop_if_idle(RESULT_TIMEOUT_S)
    monkeypatch.setattr(threading.Thread, "start", start_once_refused)
    pool = ProcessBackend(1)
    try:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            pool.submit(tasks.add, (1,), {})
        assert pool.submit(tasks.add, (1, 2), {}).result(RESULT_TIMEOUT_S) == 3
    finally:
        pool.shutdown()


def test_tasks_queued_when_the_manager_fails_still_complete(monkeypatch):
    failures = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    pool = ProcessBackend(1)
    assert pool.submit(tasks.add, (1, 1), {}).result(RESULT_TIMEOUT_S) == 2
    service = _service.current()
    lease = pool._holder.lease
    real_schedule, real_stop = service._schedule, service._stop_everything
    started = threading.Event()

    def schedule_then_fail(leases):
        if started.is_set() and lease.pending:
            raise OSError("a broken manager")
        real_schedule(leases)

    def stop_then_fail():
        real_stop()
        raise OSError("stopping the workers failed too")

    monkeypatch.setattr(service, "_schedule", schedule_then_fail)
    monkeypatch.setattr(service, "_stop_everything", stop_then_fail)
    started.set()
    with service.lock:  # all three queued before the manager looks
        queued = [pool.submit(tasks.add, (i,), {}) for i in range(3)]
    service.thread.join(RESULT_TIMEOUT_S)
    for future in queued:
        with pytest.raises(RuntimeError, match="stopped"):
            future.result(RESULT_TIMEOUT_S)
    with pytest.raises(RuntimeError, match="manager thread has stopped"):
        pool.submit(tasks.add, (1,), {})
    assert [type(f.exc_value) for f in failures] == [OSError]
    pool.shutdown()
    assert _service.current() is None  # the next backend gets a new service
    fresh = ProcessBackend(1)
    assert fresh.submit(tasks.add, (2, 3), {}).result(RESULT_TIMEOUT_S) == 5
    fresh.shutdown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads alive
def test_a_forked_child_closes_its_copy_while_the_parent_holds_the_lock():
    # fork() copies the service's lock as it is: held, by a thread the child does not have.
    # The backend's shutdown and finalizer run in the child and must not wait for it forever.
    pool = ProcessBackend(1)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with _service.current().lock:
            holding.set()
            release.wait(RESULT_TIMEOUT_S)

    try:
        assert pool.submit(tasks.add, (1, 1), {}).result(RESULT_TIMEOUT_S) == 2
        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        try:
            assert holding.wait(RESULT_TIMEOUT_S)
            child = os.fork()
            if child == 0:  # pragma: no cover - the child
                code = 1
                try:
                    pool.shutdown(wait=True)
                    with pytest.raises(RuntimeError, match=r"before os\.fork"):
                        pool.submit(tasks.add, (1,), {})
                    code = 0
                finally:
                    os._exit(code)
            proc = psutil.Process(child)
            try:
                exitcode = proc.wait(RESULT_TIMEOUT_S)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail("the forked child hung on its copy of the service's lock")
            assert exitcode == 0
        finally:
            release.set()
            holder.join(RESULT_TIMEOUT_S)
    finally:
        pool.shutdown()
