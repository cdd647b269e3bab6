"""The worker service behind the process backend: start, reuse across backends, idle stop,
crash replacement, initializer, max_tasks_per_child, batches, interrupt, warm_up, preloaded
imports, options, and no process left when the caller dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import _backend_tasks as tasks
import psutil
import pytest

from gilwise.backends import _service
from gilwise.backends._process import ProcessBackend, prepare_workers
from gilwise.errors import TaskInterruptedError, TaskTimeoutError, WorkerCrashedError

pytestmark = pytest.mark.usefixtures("no_leaks")

RESULT_TIMEOUT_S = 60.0
GUARD_S = 15.0
SRC_DIR = str(Path(__file__).resolve().parents[2] / "src")
TASKS_DIR = str(Path(tasks.__file__).parent)


def _poll(condition, timeout_s: float = GUARD_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _gone(pid: int, timeout_s: float = GUARD_S) -> bool:
    try:
        psutil.Process(pid).wait(timeout_s)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.multiversion
def test_a_second_backend_reuses_the_first_ones_warm_worker():
    first = ProcessBackend(1)
    pid = first.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
    first.shutdown()
    second = ProcessBackend(1)
    try:
        assert second.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S) == pid
        assert pid in _service.worker_pids()
    finally:
        second.shutdown()


def test_what_auto_reads_about_the_service_warm_workers_and_start_cost():
    backend = ProcessBackend(1)
    try:
        backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
        cost = _service.start_cost_s()
        assert cost is not None and 0 < cost < RESULT_TIMEOUT_S
        assert _service.zygote_ready()
    finally:
        backend.shutdown()
    assert _poll(lambda: _service.warm_workers() >= 1)  # its worker, idle and warm
    before = _service.warm_workers()
    other = ProcessBackend(1, initializer=tasks.pid)  # another flavor: not what auto opens
    try:
        other_pid = other.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
    finally:
        other.shutdown()
    # Its worker is not counted (an idle default one may have retired to make room for it,
    # when workers left by earlier tests filled the service).
    assert _service.warm_workers() <= before
    service = _service.current()
    assert service is not None
    assert all(
        worker.flavor != _service._DEFAULT_FLAVOR
        for worker in list(service.workers)
        if worker.pid == other_pid
    )


def test_nothing_is_warm_before_the_service_starts():
    done = _run_script(
        "from gilwise.backends import _service as s\n"
        "print(s.warm_workers(), s.start_cost_s(), s.zygote_ready())\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "None", "False"]


def test_workers_stop_after_the_idle_timeout():
    backend = ProcessBackend(1, idle_timeout_s=0.3)
    pid = backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
    service = _service.current()
    backend.shutdown()
    assert service is not None and pid in _service.worker_pids()  # warm, for now
    assert _gone(pid), "the idle worker outlived the idle timeout"
    assert _poll(lambda: service.finished), "the service did not stop when idle"
    service.thread.join(GUARD_S)
    assert not service.thread.is_alive()


def test_idle_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GILWISE_IDLE_TIMEOUT_S", "0")
    backend = ProcessBackend(1)
    pid = backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
    backend.shutdown()
    assert _gone(pid)
    monkeypatch.setenv("GILWISE_IDLE_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="GILWISE_IDLE_TIMEOUT_S must be a number"):
        ProcessBackend(1)


def test_a_crashed_worker_is_replaced_by_a_new_one():
    backend = ProcessBackend(1)
    try:
        before = backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
        with pytest.raises(WorkerCrashedError, match="SIGKILL"):
            backend.submit(tasks.kill_self, (signal.SIGKILL,), {}).result(RESULT_TIMEOUT_S)
        after = backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
        assert after != before and _gone(before)
    finally:
        backend.shutdown()


@pytest.mark.multiversion
def test_initializer_runs_once_per_worker_and_keys_the_warm_workers(tmp_path):
    log = tmp_path / "init.log"
    plain = ProcessBackend(1)
    plain_pid = plain.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
    plain.shutdown()
    backend = ProcessBackend(1, initializer=tasks.append_pid, initargs=(str(log),))
    try:
        pids = {backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S) for _ in range(3)}
        assert len(pids) == 1
        (worker_pid,) = pids
        assert worker_pid != plain_pid, "a worker without the initializer was reused"
        assert _lines(log) == [str(worker_pid)]
    finally:
        backend.shutdown()


def test_a_failing_initializer_fails_the_tasks_with_its_traceback():
    backend = ProcessBackend(1, initializer=tasks.fail_with_key_error, initargs=("boom",))
    try:
        future = backend.submit(tasks.add, (1,), {})
        with pytest.raises(WorkerCrashedError, match="keep dying while starting") as caught:
            future.result(RESULT_TIMEOUT_S)
        message = str(caught.value)
        assert "fail_with_key_error" in message and "KeyError: 'boom'" in message
    finally:
        backend.shutdown()


def test_max_tasks_per_child_replaces_the_worker():
    backend = ProcessBackend(1, max_tasks_per_child=2)
    try:
        pids = [backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S) for _ in range(5)]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
        assert _gone(pids[0])
    finally:
        backend.shutdown()


def test_a_worker_keeps_module_globals_between_tasks():
    backend = ProcessBackend(1)
    try:
        assert backend.submit(tasks.count_calls, (), {}).result(RESULT_TIMEOUT_S) == 1
        assert backend.submit(tasks.count_calls, (), {}).result(RESULT_TIMEOUT_S) == 2
    finally:
        backend.shutdown()


@pytest.mark.multiversion
def test_a_batch_streams_its_results_and_keeps_per_call_errors():
    backend = ProcessBackend(1)
    try:
        calls = [((i,), {}) for i in range(6)] + [(("missing",), {})]
        futures = backend.submit_batch(tasks.add_or_fail, calls)
        assert [f.result(RESULT_TIMEOUT_S) for f in futures[:6]] == list(range(6))
        with pytest.raises(KeyError, match="missing"):
            futures[6].result(RESULT_TIMEOUT_S)
        assert backend.submit_batch(tasks.add, []) == []
    finally:
        backend.shutdown()


@pytest.mark.parametrize("crash", ["exit", "sigkill"])
def test_a_crash_in_a_batch_fails_only_that_call(tmp_path, crash):
    # Each call takes longer than the worker's outcome buffer (5 ms), so every outcome before
    # the crash was sent: calls before it ran once, the crasher failed alone (after its one
    # re-run), and the calls after it ran once each, alone.
    log = tmp_path / "runs.log"
    backend = ProcessBackend(1)
    try:
        calls = [((str(log), i, 5, crash), {}) for i in range(10)]
        futures = backend.submit_batch(tasks.log_then_crash_at, calls)
        for index in range(5):
            assert futures[index].result(RESULT_TIMEOUT_S) == index
        with pytest.raises(WorkerCrashedError) as caught:
            futures[5].result(RESULT_TIMEOUT_S)
        error = caught.value
        assert error.index == 5 and "log_then_crash_at" in str(error)
        assert "call #5 of a batch" in str(error)
        assert [f.result(RESULT_TIMEOUT_S) for f in futures[6:]] == [6, 7, 8, 9]
        runs = [int(line) for line in _lines(log)]
        assert sorted(set(runs)) == list(range(10))
        assert all(runs.count(i) == 1 for i in range(10) if i != 5), runs
        assert runs.count(5) == 2  # the batch run, and the run alone that proved it
    finally:
        backend.shutdown()


def test_a_batch_call_that_times_out_fails_alone(tmp_path):
    backend = ProcessBackend(1, kill_grace_s=0.1)
    try:
        never = str(tmp_path / "never")
        calls = [((1, 1), {}), ((never,), {}), ((2, 2), {})]
        futures = backend.submit_batch(tasks.add_or_wait, calls, timeout_s=2.0)
        assert futures[0].result(RESULT_TIMEOUT_S) == 2
        with pytest.raises(TaskTimeoutError, match="add_or_wait"):
            futures[1].result(RESULT_TIMEOUT_S)
        assert futures[2].result(RESULT_TIMEOUT_S) == 4
    finally:
        backend.shutdown()


def test_interrupt_kills_busy_workers_and_fails_unfinished_tasks(tmp_path):
    started, never = tmp_path / "started", tmp_path / "never"
    backend = ProcessBackend(1)
    busy = backend.submit(tasks.touch_then_wait_for_file, (str(started), str(never)), {})
    queued = backend.submit(tasks.add, (1,), {})
    assert tasks.wait_for_file(str(started)) == "saw it"
    (worker_pid,) = [w.pid for w in _service.current().workers if w.jobs]
    begun = time.monotonic()
    backend.shutdown(wait=True, interrupt=True)
    assert time.monotonic() - begun < GUARD_S
    for future in (busy, queued):
        with pytest.raises(TaskInterruptedError):
            future.result(RESULT_TIMEOUT_S)
    assert _gone(worker_pid), "the interrupted worker was not killed"
    fresh = ProcessBackend(1)
    try:
        assert fresh.submit(tasks.add, (2, 3), {}).result(RESULT_TIMEOUT_S) == 5
    finally:
        fresh.shutdown()


def test_warm_up_starts_workers_without_blocking():
    assert _service.stop_if_idle(GUARD_S)
    backend = ProcessBackend(2)
    try:
        backend.warm_up()  # returns at once; the workers start in the background
        service = _service.current()
        # Generous guard: under pytest a spawned zygote first imports all of pytest.
        idle = lambda: sum(w.state == "idle" for w in service.workers) == 2  # noqa: E731
        assert _poll(idle, RESULT_TIMEOUT_S), (
            "warm_up did not start the workers",
            [(w.state, w.pid, w.ready) for w in service.workers],
            service.zygote and (service.zygote.forked, service.zygote.ready),
        )
        assert backend.submit(tasks.add, (1, 1), {}).result(RESULT_TIMEOUT_S) == 2
    finally:
        backend.shutdown()


def test_spawn_start_method_starts_fresh_interpreters_of_the_caller():
    backend = ProcessBackend(1, start_method="spawn")
    try:
        pid = backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
        assert psutil.Process(pid).ppid() == os.getpid()
    finally:
        backend.shutdown()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"workers": 2}, TypeError, r"unknown option 'workers'.*initializer, initargs"),
        ({"start_method": "fork"}, ValueError, r"start_method must be 'forkserver'.*'spawn'"),
        ({"max_tasks_per_child": 0}, ValueError, "max_tasks_per_child must be an int >= 1"),
        ({"max_tasks_per_child": 1.5}, TypeError, "max_tasks_per_child must be an int >= 1"),
        ({"idle_timeout_s": -1}, ValueError, "idle_timeout_s must be a finite number"),
        ({"idle_timeout_s": "5"}, TypeError, "idle_timeout_s must be a number"),
        ({"initializer": 5}, TypeError, "initializer must be callable"),
        ({"initargs": 5}, TypeError, "initargs must be a tuple"),
        ({"kill_grace_s": None}, TypeError, "kill_grace_s must be a number"),
    ],
)
def test_bad_options_name_the_parameter(options, error, match):
    with pytest.raises(error, match=match):
        ProcessBackend(1, **options)


def _script_env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([SRC_DIR, TASKS_DIR]))


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` (dedented) in a fresh Python that imports gilwise and the test tasks."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_script_env(),
        check=False,
    )


def test_zygote_and_workers_die_with_a_sigkilled_caller(tmp_path):
    started, never = tmp_path / "started", tmp_path / "never"
    script = f"""
        import sys
        from gilwise.backends import create, _service
        import _backend_tasks as tasks

        pool = create("process", 2)
        pool.submit(tasks.touch_then_wait_for_file, ({str(started)!r}, {str(never)!r}), {{}})
        pool.submit(tasks.pid, (), {{}}).result(60)
        print(" ".join(map(str, _service.worker_pids())), flush=True)
        sys.stdin.read()  # until the test kills us
    """
    caller = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_script_env(),
    )
    try:
        assert caller.stdout is not None
        pids = [int(p) for p in caller.stdout.readline().split()]
        assert tasks.wait_for_file(str(started)) == "saw it"
        assert len(pids) == 3  # two workers and the zygote
    finally:
        caller.kill()
        caller.wait()
        caller.stdin.close()  # type: ignore[union-attr]
        caller.stdout.close()  # type: ignore[union-attr]
    for pid in pids:
        assert _poll(lambda pid=pid: not psutil.pid_exists(pid) or _zombie(pid)), (
            f"process {pid} outlived its SIGKILLed caller"
        )


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("caller_has_threads", [False, True], ids=["forked", "spawned"])
def test_a_module_imported_before_the_service_is_not_imported_again_per_worker(
    tmp_path, caller_has_threads
):
    # A module whose import costs 0.25 s; each import appends the importing pid to a log.
    (tmp_path / "slow_import.py").write_text(
        textwrap.dedent(
            f"""
            import os, time
            time.sleep(0.25)
            with open({str(tmp_path / "imports.log")!r}, "a") as log:
                log.write(f"{{os.getpid()}}\\n")

            def where(_):
                return os.getpid()
            """
        )
    )
    script = f"""
        import os, sys, threading
        sys.path.insert(0, {str(tmp_path)!r})
        import slow_import
        from gilwise.backends import create, _service
        if {caller_has_threads!r}:  # a thread alive: the zygote is spawned, not forked
            stop = threading.Event()
            threading.Thread(target=stop.wait).start()
        pool = create("process", 2, idle_timeout_s=0)
        calls = [((i,), {{}}) for i in range(2)]
        pids = {{f.result(60) for f in pool.submit_batch(slow_import.where, calls)}}
        pids |= {{pool.submit(slow_import.where, (9,), {{}}).result(60) for _ in range(4)}}
        zygote = _service.current().zygote
        print(os.getpid(), zygote.pid, zygote.forked, " ".join(map(str, pids)), flush=True)
        pool.shutdown()
        if {caller_has_threads!r}:
            stop.set()
    """
    done = _run_script(script)
    assert done.returncode == 0, done.stderr
    caller_pid, zygote_pid, forked, *worker_pids = done.stdout.split()
    assert forked == str(not caller_has_threads)
    importers = _lines(tmp_path / "imports.log")
    expected = [caller_pid]
    if caller_has_threads:
        expected.append(zygote_pid)  # the spawned zygote preloads it, once
    assert importers == expected, (importers, worker_pids)
    assert not set(worker_pids) & set(importers)


def test_a_module_imported_after_the_service_started_is_imported_on_first_use(tmp_path):
    backend = ProcessBackend(1)
    try:
        assert backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)  # service up
        (tmp_path / "late_module.py").write_text("def triple(x):\n    return 3 * x\n")
        sys.path.insert(0, str(tmp_path))
        try:
            import late_module

            assert backend.submit(late_module.triple, (4,), {}).result(RESULT_TIMEOUT_S) == 12
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("late_module", None)
    finally:
        backend.shutdown()


def test_the_service_thread_is_a_daemon_and_never_blocks_exit():
    backend = ProcessBackend(1)
    try:
        backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S)
        thread = _service.current().thread
        assert thread.daemon and thread.name == "gilwise-process-service"
    finally:
        backend.shutdown()


def test_two_backends_share_the_service_concurrently():
    left, right = ProcessBackend(1), ProcessBackend(1)
    try:
        futures = [b.submit(tasks.add, (i, i), {}) for i in range(10) for b in (left, right)]
        assert [f.result(RESULT_TIMEOUT_S) for f in futures] == [
            2 * i for i in range(10) for _ in range(2)
        ]
    finally:
        left.shutdown()
        right.shutdown()


def test_prepare_workers_forks_the_zygote_before_threads_exist():
    script = """
        import threading
        from gilwise.backends import _service
        from gilwise.backends._process import ProcessBackend, prepare_workers
        import _backend_tasks as tasks

        assert prepare_workers()
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)  # the caller has threads from here on
        thread.start()
        backend = ProcessBackend(1, idle_timeout_s=0)
        print(backend.submit(tasks.add, (1, 2), {}).result(60), _service.current().zygote.forked)
        backend.shutdown()
        stop.set()
        thread.join()
    """
    done = _run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "True"]


def test_workers_started_early_are_the_pools_own_not_extra_ones():
    # auto's early fork: prepare_workers(2) warms two workers and closes its lease; the
    # pool's own lease then has two jobs. Seen by the manager in one pass (the service's lock
    # held meanwhile), the warm-up and the jobs ask for the same two workers, not four.
    script = """
        from gilwise.backends import _service
        from gilwise.backends._process import ProcessBackend, prepare_workers
        import _backend_tasks as tasks

        assert prepare_workers(2)
        with _service.current().lock:
            backend = ProcessBackend(2, idle_timeout_s=0)
            futures = [backend.submit(tasks.add, (n, 1), {}) for n in range(2)]
        print(sorted(f.result(60) for f in futures), len(_service.current().workers))
        backend.shutdown()
    """
    done = _run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[1,", "2]", "2"]


def test_prepare_workers_does_nothing_once_threads_exist():
    assert _service.stop_if_idle(GUARD_S)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert prepare_workers() is False
        assert _service.current() is None
    finally:
        stop.set()
        thread.join()


def test_a_program_that_ends_right_after_starting_the_service_prints_nothing():
    script = """
        from gilwise.backends._process import ProcessBackend, prepare_workers

        prepare_workers()
        ProcessBackend(1).warm_up()
    """
    for _ in range(3):  # the zygote may still be starting when the program ends
        done = _run_script(script)
        assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_forked_zygote_releases_the_programs_pipes_and_sockets(tmp_path):
    # The zygote is a fork of the program: had it kept the pipe to a child process or a
    # listening socket, a child would never see EOF on its stdin and a port would stay bound
    # while the service lives (idle_timeout_s after the last executor). Files stay open.
    script = """
        import os, socket, subprocess, sys
        from gilwise.backends import _service
        from gilwise.backends._process import ProcessBackend, prepare_workers
        import _backend_tasks as tasks

        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        log = open(sys.argv[1], "w")  # a file: stays open in the zygote
        assert prepare_workers() and _service.current().zygote.forked
        backend = ProcessBackend(1, idle_timeout_s=60)
        print(backend.submit(tasks.add, (1, 2), {}).result(60))
        zygote = _service.current().zygote.pid
        child.stdin.close()
        print(child.wait(timeout=30))  # EOF reached the child: the zygote holds no copy
        server.close()
        again = socket.socket()
        again.bind(("127.0.0.1", port))  # the port is free again
        again.close()
        held = {os.readlink(f"/proc/{zygote}/fd/{fd}") for fd in os.listdir(f"/proc/{zygote}/fd")}
        print(os.path.realpath(sys.argv[1]) in held)
        backend.shutdown()
    """
    done = _run_script(script, str(tmp_path / "program.log"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "0", "True"]


def test_a_short_job_waits_for_the_next_worker_not_behind_a_busy_one(tmp_path):
    # Prefetch (queueing the next short job on a busy worker) only when every worker the
    # lease may use is busy: with one busy and the second starting, a job queued behind the
    # busy one would wait for it while the new worker idles (an Executor hands a process
    # backend at most max_workers tasks, so 20 ms calls ran one after the other).
    started, release = tmp_path / "started", tmp_path / "release"
    backend = ProcessBackend(2, max_tasks_per_child=1000, idle_timeout_s=0)  # its own workers
    try:
        first_worker = backend.submit(tasks.pid, (), {}).result(GUARD_S)  # a short job: job_s ~0
        blocked = backend.submit(tasks.touch_then_wait_for_file, (str(started), str(release)), {})
        deadline = time.monotonic() + GUARD_S
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert started.exists()
        other = backend.submit(tasks.pid, (), {})
        assert other.result(GUARD_S) != first_worker  # ran on the second worker meanwhile
        assert not blocked.done()
        release.touch()
        assert blocked.result(GUARD_S) == "saw it"
    finally:
        release.touch()
        backend.shutdown()
