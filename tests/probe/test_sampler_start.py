"""How the sampler process starts: forked when that is safe, a fresh interpreter otherwise;
either way it measures the same, and a forked one leaves nothing of the program's behind."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import gilwise
import workloads
from gilwise.probe import _child

pytestmark = [
    pytest.mark.usefixtures("no_leaks"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

SRC = str(Path(gilwise.__file__).resolve().parent.parent)


def _run_program(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    """Run ``source`` as a script in a fresh interpreter; it must exit 0."""
    script = tmp_path / "program.py"
    script.write_text(source)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


SINGLE_THREADED = """
import os, sys
sys.path.insert(0, {src!r})
import gilwise
from gilwise.probe import _child
assert _child.fork_is_safe()
with gilwise.monitor() as mon:
    sampler = mon._child
    with open(f"/proc/{{sampler.pid}}/stat") as stat:
        parent = int(stat.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{{sampler.pid}}/comm") as comm:
        name = comm.read().strip()
sampled = mon.profile.samples > 0
print(type(sampler).__name__, parent == os.getpid(), name, sampler.returncode, sampled)
"""


def test_a_single_threaded_small_process_forks_its_sampler(tmp_path):
    # In a fresh process: this one may have threads left by other tests (a warm service).
    result = _run_program(tmp_path, SINGLE_THREADED.format(src=SRC))
    # Forked, our child, named for ps, reaped with exit code 0 at stop, and it sampled.
    assert result.stdout.split() == ["ForkedSampler", "True", "gilwise-sampler", "0", "True"]


def test_with_another_thread_running_the_sampler_is_a_fresh_interpreter():
    release = threading.Event()
    parked = threading.Thread(target=release.wait, args=(30,))
    parked.start()
    try:
        assert not _child.fork_is_safe()
        with gilwise.monitor() as mon:
            assert isinstance(mon._child, subprocess.Popen)
    finally:
        release.set()
        parked.join(30)


def test_a_big_process_does_not_fork(monkeypatch):
    monkeypatch.setattr(_child, "FORK_MAX_RSS_BYTES", 1 << 20)  # 1 MiB: every process is bigger
    assert not _child.fork_is_safe()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_both_starts_measure_a_spinner_the_same(monkeypatch, start_method):
    monkeypatch.setattr(_child, "start_method", start_method)
    with gilwise.monitor() as mon:
        workloads.spinner(0.3)
    profile = mon.profile
    main = profile.thread(threading.get_native_id())
    assert main.gil_held_s / profile.wall_s > 0.9
    assert profile.functions[0].function == "spinner"
    assert profile.extra["sampler_errors"] == []


def test_a_forked_sampler_keeps_no_copy_of_the_programs_files(monkeypatch):
    """A pipe the program closes inside the block reaches its end for the reader: the
    sampler, forked while the pipe was open, holds no copy of its write end."""
    monkeypatch.setattr(_child, "start_method", "fork")
    read_end, write_end = os.pipe()
    try:
        with gilwise.monitor():
            os.close(write_end)
            write_end = -1
            ready, _, _ = select.select([read_end], [], [], 10)
            assert ready, "the pipe never reached its end: someone still holds the write end"
            assert os.read(read_end, 1) == b""
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


PROGRAM = """
import atexit, os, signal, sys
sys.path.insert(0, {src!r})
from gilwise.probe import _child
_child.start_method = "fork"
import gilwise
marks = {marks!r}

def mark(text):
    with open(marks, "a") as file:
        file.write(text + "\\n")

atexit.register(mark, "atexit")
signal.signal(signal.SIGUSR1, lambda *args: mark("handler"))
print("buffered", end=" ")  # still in the buffer (stdout is a pipe) when the sampler forks
try:
    with gilwise.monitor() as mon:
        os.kill(mon._child.pid, signal.SIGUSR1)  # the default action in the sampler: it ends
except gilwise.errors.ProbeUnavailableError as exc:
    print("sampler ended:", exc)
"""


def test_a_forked_sampler_runs_none_of_the_programs_handlers_or_buffers(tmp_path):
    """Buffered output, atexit handlers and signal handlers belong to the program alone."""
    marks = tmp_path / "marks.txt"
    result = _run_program(tmp_path, PROGRAM.format(src=SRC, marks=str(marks)))
    assert result.stdout.count("buffered") == 1, result.stdout
    # SIGUSR1 ended the sampler (its default action), not the program's handler.
    assert f"exit code -{int(signal.SIGUSR1)}" in result.stdout, result.stdout
    assert marks.read_text().splitlines() == ["atexit"]  # once: the program's own exit


def test_a_failing_forked_sampler_says_why(monkeypatch):
    monkeypatch.setattr(_child, "start_method", "fork")

    def broken(config, control_fd, out):
        raise RuntimeError("sampler bug (injected)")

    monkeypatch.setattr(_child._sampler, "serve", broken)
    with pytest.raises(gilwise.errors.ProbeUnavailableError, match="injected"):
        gilwise.monitor().start()


def test_under_yama_scope_1_a_forked_sampler_starts_only_once_it_may_read_us(monkeypatch):
    """The child waits for the go byte the parent sends after naming it as its tracer."""
    from gilwise.probe import _procfs

    monkeypatch.setattr(_child, "start_method", "fork")
    monkeypatch.setattr(_procfs, "ptrace_scope", lambda: 1)
    allowed: list[int] = []
    monkeypatch.setattr(_procfs, "allow_tracer", allowed.append)
    with gilwise.monitor() as mon:
        sampler_pid = mon._child.pid
        workloads.spinner(0.1)
    assert allowed == [sampler_pid]
    assert mon.profile.samples > 50


CLOSED_STDIO = """
import os, sys
sys.path.insert(0, {src!r})
import gilwise
from gilwise.probe import _child
_child.start_method = "fork"
out = os.dup(1)
os.close(0)
os.close(1)  # the sampler's pipes may now get the numbers 0 and 1
import time
with gilwise.monitor() as mon:
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pass
os.write(out, f"{{type(mon._child).__name__}} {{mon.profile.samples}}".encode())
"""


def test_a_program_with_closed_stdio_forks_a_working_sampler(tmp_path):
    result = _run_program(tmp_path, CLOSED_STDIO.format(src=SRC))
    kind, samples = result.stdout.split()
    assert kind == "ForkedSampler"
    assert int(samples) >= 100  # sampled the whole 0.2 s at 1 kHz, not stopped at once
