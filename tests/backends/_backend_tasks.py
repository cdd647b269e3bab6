"""Task functions for the process and interpreter backend tests.

Module-level and standard-library only, so a worker process or a fresh sub-interpreter can
import them by name quickly (it imports this module, not the test module and pytest).
"""

from __future__ import annotations

import collections
import itertools
import mmap
import operator
import os
import threading
import time

WAIT_LIMIT_S = 60.0


def add(left: int, right: int = 0) -> int:
    return left + right


def pid() -> int:
    return os.getpid()


_calls_here = 0


def count_calls() -> int:
    """How many times this worker ran it: module globals persist between tasks."""
    global _calls_here
    _calls_here += 1
    return _calls_here


def append_pid(path: str) -> None:
    with open(path, "a") as log:
        log.write(f"{os.getpid()}\n")


def add_or_fail(value: object) -> object:
    if isinstance(value, str):
        raise KeyError(value)
    return value


def add_or_wait(left: object, right: int = 0) -> object:
    """``left + right``, or (a path) wait for that file: a call that can time out."""
    if isinstance(left, str):
        return wait_for_file(left)
    return left + right


def log_then_crash_at(path: str, index: int, crash_index: int, how: str) -> int:
    """Log ``index`` (one line per run), take 20 ms, and crash the worker at ``crash_index``."""
    with open(path, "a") as log:
        log.write(f"{index}\n")
    if index == crash_index:
        if how == "exit":
            os._exit(7)
        kill_self(9)
    time.sleep(0.02)
    return index


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def fail_with_key_error(key: str) -> None:
    raise KeyError(key)


class NeedsTwoArgumentsError(Exception):
    """Cannot be rebuilt by pickle: __init__ takes two arguments, args holds one message."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def fail_unrebuildably() -> None:
    raise NeedsTwoArgumentsError(7, "bad")


def return_a_lock() -> object:
    return threading.Lock()


def import_numpy_and_sum() -> int:
    import numpy

    return int(numpy.arange(10).sum())


def wait_for_file(path: str) -> str:
    """Block (sleeping, bounded) until ``path`` exists; then return "saw it"."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "gave up"
        time.sleep(0.005)
    return "saw it"


def touch_then_wait_for_file(touch_path: str, wait_path: str) -> str:
    """Create ``touch_path`` (so the test knows the task started), then wait for ``wait_path``."""
    with open(touch_path, "w"):
        pass
    return wait_for_file(wait_path)


def hold_gil_until_flag(path: str, max_polls: int) -> int:
    """Set byte 0 of the 2-byte file ``path``, then poll byte 1 until it is set, all inside
    one C-level loop that never returns to the bytecode loop, so this interpreter's GIL is
    held throughout. Returns how many polls it took, or ``max_polls`` if the flag never came.

    Whoever sets byte 1 in response to byte 0 must therefore have run Python code while
    this GIL was held: proof that it has a GIL of its own.
    """
    with open(path, "r+b") as file:
        shared = mmap.mmap(file.fileno(), 2)
    try:
        polls = itertools.takewhile(
            operator.not_,
            itertools.chain(
                map(shared.__setitem__, (0,), (1,)),  # yields None: raises the start flag
                map(shared.__getitem__, itertools.repeat(1, max_polls)),
            ),
        )
        last = collections.deque(enumerate(polls), maxlen=1)
        return last[0][0] if last else 0
    finally:
        shared.close()


def answer_flag(path: str) -> bool:
    """Wait (sleeping, bounded) for byte 0 of ``path``; then set byte 1. False if never seen."""
    with open(path, "r+b") as file:
        shared = mmap.mmap(file.fileno(), 2)
    try:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not shared[0]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        shared[1] = 1
        return True
    finally:
        shared.close()
