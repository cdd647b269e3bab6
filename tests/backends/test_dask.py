"""The dask backend on a real LocalCluster of worker processes (started once for the module)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import psutil
import pytest

pytest.importorskip("distributed")

import distributed

from gilwise import errors
from gilwise.backends import create
from gilwise.backends._dask import DaskBackend

WAIT_S = 60  # generous: the machine is shared; every wait fails loudly after this

# Process-wide helpers that outlive any cluster: distributed's idle callback/offload pools and
# multiprocessing's resource tracker. They are created once per process, never per backend.
PROCESS_WIDE_THREAD_PREFIXES = ("Dask-Offload", "Dask-Callback-Thread")


def _is_process_wide_helper(process: psutil.Process) -> bool:
    try:
        return "resource_tracker" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each; a worker may die once per task (then it fails)."""
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    local_cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={
            "dashboard": False,
            "dashboard_address": "127.0.0.1:0",
            "allowed_failures": 1,
        },
        silence_logs=logging.CRITICAL,
    )
    yield local_cluster
    # Collect dropped dask Clients here, on the main thread: left for later, their __del__
    # (which may block on close) could run on whatever thread next triggers a collection,
    # such as a process backend's manager thread in the next test module.
    gc.collect()
    local_cluster.close()
    children = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in children_before and not _is_process_wide_helper(p)
    ]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"dask processes left running: {[p.pid for p in alive]}"
    leaked = [
        t
        for t in threading.enumerate()
        if t not in threads_before and not t.name.startswith(PROCESS_WIDE_THREAD_PREFIXES)
    ]
    for thread in leaked:
        thread.join(timeout=10)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"


@pytest.fixture
def backend(cluster):
    dask_backend = DaskBackend(address=cluster.scheduler_address)
    yield dask_backend
    dask_backend.shutdown(wait=False)


# --- tasks (module level: workers import this module to run them) -------------------------


def add(a, b=0):
    return a + b


def echo_kwargs(**kwargs):
    return kwargs


def fresh_token():
    return os.urandom(16)


def outer_failure(value):
    def inner_failure(value):
        raise ValueError(f"bad value {value}")

    inner_failure(value)


def wait_for_path(path: str, limit_s: float = WAIT_S) -> bool:
    """Block until ``path`` exists (True) or ``limit_s`` passes (False)."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def block_until_released(release: str) -> str:
    wait_for_path(release)
    return "released"


def write_pid_then_block(started: str, release: str) -> str:
    """First run: record this worker's pid and block (the test kills us). Later runs: done."""
    if os.path.exists(started):
        return "rescheduled"
    Path(started + ".tmp").write_text(str(os.getpid()))
    os.replace(started + ".tmp", started)
    wait_for_path(release)
    return "first attempt was never killed"


def kill_own_worker():
    os.kill(os.getpid(), signal.SIGKILL)


def _wait_in_test_for_path(path: Path) -> None:
    assert wait_for_path(str(path)), f"the task never wrote {path}"


def keys_on_scheduler(dask_scheduler) -> list:
    return [str(key) for key in dask_scheduler.tasks]


def _wait_until_scheduler_forgets(client, task_name: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while any(task_name in key for key in client.run_on_scheduler(keys_on_scheduler)):
        assert time.monotonic() < deadline, f"the scheduler still holds a {task_name} task"
        time.sleep(0.02)


# --- construction and configuration errors -------------------------------------------------


def test_without_address_or_client_says_how_to_get_a_cluster(no_leaks):
    with pytest.raises(errors.NoClusterError) as caught:
        DaskBackend()
    message = str(caught.value)
    assert "dask scheduler" in message
    assert "dask worker tcp://HOST:8786" in message
    assert "address='local'" in message


def test_missing_distributed_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(errors.UnsupportedError, match=r"pip install 'gilwise\[dask\]'"):
        create("dask", address="tcp://127.0.0.1:8786")


def test_unreachable_scheduler_is_a_no_cluster_error(no_leaks):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with pytest.raises(errors.NoClusterError, match="could not reach a dask scheduler"):
        DaskBackend(address=f"tcp://127.0.0.1:{free_port}", connect_timeout_s=1)


def test_address_and_client_together_are_rejected(cluster):
    with pytest.raises(ValueError, match="not both"):
        DaskBackend(address=cluster.scheduler_address, client=object())


# --- the backend protocol -----------------------------------------------------------------


def test_constructible_from_an_address_string_alone(cluster):
    dask_backend = create("dask", address=cluster.scheduler_address)
    try:
        assert dask_backend.max_workers == 2  # the cluster's worker threads
        assert dask_backend.address == cluster.scheduler_address
        assert dask_backend.submit(add, (1, 2), {}).result(timeout=WAIT_S) == 3
    finally:
        dask_backend.shutdown()


def test_many_tasks_each_deliver_their_own_result(backend):
    futures = [backend.submit(add, (n,), {"b": 100}) for n in range(20)]
    assert [f.result(timeout=WAIT_S) for f in futures] == [n + 100 for n in range(20)]


def test_repeated_identical_calls_run_again(backend):
    first = backend.submit(fresh_token, (), {}).result(timeout=WAIT_S)
    second = backend.submit(fresh_token, (), {}).result(timeout=WAIT_S)
    assert first != second


def test_keyword_arguments_named_like_dask_options_reach_the_task(backend):
    kwargs = {"key": "k", "priority": 3, "pure": True, "workers": ["w"]}
    assert backend.submit(echo_kwargs, (), kwargs).result(timeout=WAIT_S) == kwargs


def test_task_exception_keeps_its_type_and_the_remote_traceback(backend):
    future = backend.submit(outer_failure, (7,), {})
    with pytest.raises(ValueError, match="bad value 7") as caught:
        future.result(timeout=WAIT_S)
    remote = caught.value.__cause__
    assert isinstance(remote, errors.RemoteTraceback)
    assert "inner_failure" in remote.traceback_text
    assert "outer_failure" in remote.traceback_text


def test_unpicklable_task_is_refused_with_advice(backend):
    lock = threading.Lock()
    with pytest.raises(errors.NotPicklableError, match=r"the argument 'a' of task add.*'thread'"):
        backend.validate(add, (lock,), {})
    with pytest.raises(errors.NotPicklableError, match="not picklable"):
        backend.submit(add, (lock,), {})


def test_timeout_fails_the_future_and_cancels_the_task(backend, tmp_path):
    release = tmp_path / "release"
    future = backend.submit(block_until_released, (str(release),), {}, timeout_s=0.3)
    try:
        with pytest.raises(errors.TaskTimeoutError, match=r"timeout_s=0\.3"):
            future.result(timeout=WAIT_S)
        _wait_until_scheduler_forgets(backend.client, "block_until_released")
    finally:
        release.touch()
    assert backend.submit(add, (1, 1), {}).result(timeout=WAIT_S) == 2


def test_caller_can_cancel_a_running_task_it_no_longer_wants(backend, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    future = backend.submit(write_pid_then_block, (str(started), str(release)), {})
    try:
        _wait_in_test_for_path(started)
        assert any(
            "write_pid_then_block" in key
            for key in backend.client.run_on_scheduler(keys_on_scheduler)
        )
        assert future.cancel()
        with pytest.raises(CancelledError):
            future.result(timeout=WAIT_S)
        _wait_until_scheduler_forgets(backend.client, "write_pid_then_block")
    finally:
        release.touch()


def test_shutdown_waits_for_handed_over_tasks(cluster, tmp_path):
    release = tmp_path / "release"
    dask_backend = DaskBackend(address=cluster.scheduler_address)
    future = dask_backend.submit(block_until_released, (str(release),), {})
    shutdown_done = threading.Event()
    closer = threading.Thread(target=lambda: (dask_backend.shutdown(), shutdown_done.set()))
    closer.start()
    try:
        assert not shutdown_done.wait(0.2)  # still waiting for the blocked task
    finally:
        release.touch()
    assert shutdown_done.wait(WAIT_S)
    closer.join(WAIT_S)
    assert future.result(timeout=0) == "released"


def test_shutdown_without_wait_cancels_outstanding_tasks(cluster, tmp_path):
    release = tmp_path / "release"
    dask_backend = DaskBackend(address=cluster.scheduler_address)
    future = dask_backend.submit(block_until_released, (str(release),), {})
    try:
        dask_backend.shutdown(wait=False)
        assert future.cancelled()
    finally:
        release.touch()


def test_after_shutdown_submit_is_refused_and_shutdown_is_idempotent(cluster):
    dask_backend = DaskBackend(address=cluster.scheduler_address)
    dask_backend.shutdown()
    dask_backend.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        dask_backend.submit(add, (1,), {})


def test_a_users_client_is_used_and_never_closed(cluster):
    with distributed.Client(cluster, set_as_default=False) as user_client:
        dask_backend = DaskBackend(client=user_client)
        assert dask_backend.submit(add, (2, 3), {}).result(timeout=WAIT_S) == 5
        dask_backend.shutdown()
        assert user_client.status == "running"
        assert user_client.submit(add, 4, 5).result(timeout=WAIT_S) == 9
        # a Client passed as the address (Executor(scale_out=client)) is used the same way
        via_address = DaskBackend(address=user_client)
        via_address.shutdown()
        assert user_client.status == "running"


def _listening(process: psutil.Process) -> set:
    return {c.laddr for c in process.net_connections(kind="inet") if c.status == "LISTEN"}


def test_local_address_starts_a_private_cluster_and_closes_it():
    listening_before = _listening(psutil.Process())
    dask_backend = DaskBackend(1, address="local")
    try:
        assert dask_backend.submit(add, (20, 22), {}).result(timeout=WAIT_S) == 42
        workers = [psutil.Process(pid) for pid in dask_backend.client.run(os.getpid).values()]
        assert len(workers) == 1
        assert dask_backend.address.startswith("tcp://127.0.0.1:")
        # scheduler, nannies (here) and workers listen on the loopback interface only
        opened = _listening(psutil.Process()) - listening_before
        for worker in workers:
            opened |= _listening(worker)
        assert len(opened) >= 3, opened  # scheduler, its HTTP API, a worker, ...
        assert {address.ip for address in opened} == {"127.0.0.1"}, opened
    finally:
        dask_backend.shutdown()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


# --- through the public API ------------------------------------------------------------------


def square(value):
    return value * value


def test_pipeline_stage_runs_on_the_cluster(cluster):
    from gilwise import Pipeline

    stream = Pipeline(range(12)).map(square, backend="dask", address=cluster.scheduler_address)
    assert list(stream) == [n * n for n in range(12)]
    assert [stage.backend for stage in stream.stats.stages] == ["dask"]


def spin(iterations):
    total = 0
    for i in range(iterations):
        total += i % 7
    return total


def test_executor_with_the_dask_backend(cluster):
    from gilwise import Executor

    with Executor(backend="dask", address=cluster.scheduler_address) as executor:
        assert list(executor.map(square, range(10))) == [n * n for n in range(10)]
        failing = executor.submit(outer_failure, 5)
        with pytest.raises(ValueError, match="bad value 5") as caught:
            failing.result(timeout=WAIT_S)
        assert isinstance(caught.value.__cause__, errors.RemoteTraceback)


def test_executor_timeout_on_the_dask_backend(cluster, tmp_path):
    from gilwise import Executor

    release = tmp_path / "release"
    try:
        with Executor(backend="dask", address=cluster.scheduler_address, timeout=0.3) as executor:
            future = executor.submit(block_until_released, str(release))
            with pytest.raises(errors.TaskTimeoutError):
                future.result(timeout=WAIT_S)
    finally:
        release.touch()


def test_executor_scale_out_sends_gil_bound_work_to_the_cluster(cluster):
    from gilwise import Executor

    with Executor(scale_out=cluster.scheduler_address) as executor:
        results = list(executor.map(spin, [200_000] * 8))
        decisions = list(executor.decisions.values())
    assert results == [spin(200_000)] * 8
    # What auto would give processes goes to the cluster (the kind is the verdict's call).
    assert all(d.backend == "dask" for d in decisions if d.kind == "gil-bound"), decisions
    assert all(d.backend != "process" for d in decisions), decisions


# --- workers that die -----------------------------------------------------------------------


def test_task_on_a_killed_worker_is_rescheduled_and_completes(backend, cluster, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    worker_pids = set(backend.client.run(os.getpid).values())
    future = backend.submit(write_pid_then_block, (str(started), str(release)), {})
    try:
        _wait_in_test_for_path(started)
        victim = int(started.read_text())
        assert victim in worker_pids
        os.kill(victim, signal.SIGKILL)
        assert future.result(timeout=WAIT_S) == "rescheduled"
    finally:
        release.touch()
    backend.client.wait_for_workers(2, timeout=WAIT_S)


def test_task_that_keeps_killing_workers_fails_with_worker_crashed(backend):
    future = backend.submit(kill_own_worker, (), {})
    with pytest.raises(errors.WorkerCrashedError, match="kill_own_worker") as caught:
        future.result(timeout=WAIT_S)
    assert "kill_own_worker" in caught.value.task
    assert isinstance(caught.value.__cause__, distributed.KilledWorker)
    backend.client.wait_for_workers(2, timeout=WAIT_S)
