"""The interpreter backend: own-GIL sub-interpreters on 3.12+, a clear refusal before.

This module imports on every Python; the tests that need sub-interpreters skip below 3.12.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import _backend_tasks as tasks
import pytest

from gilwise._runtime import current
from gilwise.backends import create
from gilwise.errors import NotPicklableError, RemoteTraceback, UnsupportedError

pytestmark = pytest.mark.usefixtures("no_leaks")

RESULT_TIMEOUT_S = 120.0  # a first task also creates its sub-interpreter and imports gilwise
HAS_SUBINTERPRETERS = current().own_gil_subinterpreters
needs_subinterpreters = pytest.mark.skipif(
    not HAS_SUBINTERPRETERS, reason="own-GIL sub-interpreters need Python 3.12+"
)


@pytest.fixture
def backend():
    pool = create("interpreter", 2)
    yield pool
    pool.shutdown(wait=True)


@pytest.mark.multiversion
@pytest.mark.skipif(HAS_SUBINTERPRETERS, reason="this Python has sub-interpreters")
def test_refuses_before_312_saying_what_to_use():
    version = ".".join(str(part) for part in sys.version_info[:3])
    expected = (
        "sub-interpreters with their own GIL need Python 3.12 or newer; "
        f"this is {version}; use backend='process'"
    )
    with pytest.raises(UnsupportedError) as caught:
        create("interpreter", 2)
    assert str(caught.value) == expected


@pytest.mark.multiversion
@needs_subinterpreters
def test_runs_module_level_functions_in_this_process(backend):
    futures = [backend.submit(tasks.add, (i,), {"right": 1}) for i in range(6)]
    assert [f.result(RESULT_TIMEOUT_S) for f in futures] == [1, 2, 3, 4, 5, 6]
    assert backend.submit(tasks.pid, (), {}).result(RESULT_TIMEOUT_S) == os.getpid()


@pytest.mark.multiversion
@needs_subinterpreters
def test_two_sub_interpreters_run_python_at_the_same_time(backend, tmp_path):
    # One task holds its own GIL without pause until the other answers its flag; with a
    # shared GIL the answer could only come after the poll limit. Deterministic, no timing.
    flags = tmp_path / "flags"
    flags.write_bytes(b"\0\0")
    max_polls = 100_000_000  # seconds of polling: only reached if the GILs are shared
    holder = backend.submit(tasks.hold_gil_until_flag, (str(flags), max_polls), {})
    answerer = backend.submit(tasks.answer_flag, (str(flags),), {})
    assert answerer.result(RESULT_TIMEOUT_S) is True
    assert holder.result(RESULT_TIMEOUT_S) < max_polls, "the GIL-holding task never saw the answer"


@pytest.mark.multiversion
@needs_subinterpreters
def test_task_exception_keeps_its_type_and_carries_the_remote_traceback(backend):
    future = backend.submit(tasks.fail_with_key_error, ("missing",), {})
    with pytest.raises(KeyError, match="missing") as caught:
        future.result(RESULT_TIMEOUT_S)
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "fail_with_key_error" in caught.value.__cause__.traceback_text


@pytest.mark.multiversion
@needs_subinterpreters
def test_lambdas_closures_and_main_functions_get_a_clear_error(backend):
    offset = 1

    def closure():
        return offset

    def in_main():
        return 0

    in_main.__module__, in_main.__qualname__ = "__main__", "in_main"
    cases = [
        (lambda: 0, "it is a lambda"),
        (closure, "it is a nested function"),
        (in_main, r"defined in the main script \(__main__\)"),
    ]
    for fn, reason in cases:
        with pytest.raises(NotPicklableError, match=reason) as caught:
            backend.validate(fn, (), {})
        assert "backend='process'" in str(caught.value)
        with pytest.raises(NotPicklableError, match=reason):
            backend.submit(fn, (), {})


@pytest.mark.multiversion
@needs_subinterpreters
def test_unpicklable_argument_and_result_are_named(backend):
    with pytest.raises(NotPicklableError, match="the argument 'left' of task add"):
        backend.submit(tasks.add, (threading.Lock(),), {})
    future = backend.submit(tasks.return_a_lock, (), {})
    with pytest.raises(NotPicklableError, match=r"return_a_lock\(\) returned a lock"):
        future.result(RESULT_TIMEOUT_S)


@pytest.mark.multiversion
@needs_subinterpreters
def test_extension_refusing_sub_interpreters_fails_clearly(backend):
    pytest.importorskip("numpy")
    future = backend.submit(tasks.import_numpy_and_sum, (), {})
    try:
        assert future.result(RESULT_TIMEOUT_S) == 45  # a numpy that supports them: fine too
    except UnsupportedError as error:
        message = str(error)
        assert "cannot load in a sub-interpreter" in message
        assert "use backend='process'" in message
        assert len(message) < 400, "the advice page of the extension was not trimmed"


@needs_subinterpreters
def test_queues_more_tasks_than_interpreters_and_shuts_down():
    pool = create("interpreter", 1)
    futures = [pool.submit(tasks.add, (i, i), {}) for i in range(10)]
    pool.shutdown(wait=True)
    assert [f.result(0) for f in futures] == [2 * i for i in range(10)]
    with pytest.raises(RuntimeError, match="after its shutdown"):
        pool.submit(tasks.add, (1,), {})
    pool.shutdown()  # idempotent


@needs_subinterpreters
def test_a_collected_backend_ends_its_threads():
    pool = create("interpreter", 2)
    assert pool.submit(tasks.add, (1, 1), {}).result(RESULT_TIMEOUT_S) == 2
    del pool
    gc.collect()
    # no_leaks fails the test if a gilwise-interp thread is still alive


@pytest.mark.multiversion
@needs_subinterpreters
def test_forgotten_backend_does_not_block_or_crash_exit():
    tests_dir = str(Path(tasks.__file__).parent)
    script = f"""
        import sys
        sys.path.insert(0, {tests_dir!r})
        from gilwise.backends import create
        import _backend_tasks as tasks

        pool = create("interpreter", 2)
        print(pool.submit(tasks.add, (20, 22), {{}}).result(120), flush=True)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "42"), done.stderr


def test_does_not_claim_to_enforce_timeouts():
    from gilwise.backends._interpreter import InterpreterBackend

    assert InterpreterBackend.enforces_timeout is False
