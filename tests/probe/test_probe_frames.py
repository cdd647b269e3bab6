"""Python stacks read from outside the process (probe/_frames.py): discovery, reading, use.

The layout is discovered in the running interpreter, so these run under every Python that
.ci/run finds (3.11 here, 3.12 and 3.13 through the multiversion marker).
"""

from __future__ import annotations

import os
import struct
import threading
import time
import types

import pytest

import gilwise
import workloads
from gilwise.errors import ProbeUnavailableError
from gilwise.probe import _frames, _monitor
from gilwise.probe._procfs import MemoryReader

pytestmark = [pytest.mark.multiversion, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture(scope="module")
def layout() -> _frames.FrameLayout:
    return _frames.locate_in_process(_frames.current_tstate())


@pytest.fixture
def reader(layout):
    memory = MemoryReader(os.getpid())
    yield _frames.FrameReader(memory.read, layout)
    memory.close()


def _key(function) -> tuple[str, str, int]:
    code = function.__code__
    return (getattr(code, "co_qualname", code.co_name), code.co_filename, code.co_firstlineno)


def parked_in_this_function(ready: threading.Event, release: threading.Event) -> None:
    ready.set()
    release.wait()


def test_discovery_leaves_no_helper_threads_and_is_plain_data(layout):
    assert [t for t in threading.enumerate() if t.name == "gilwise-layout"] == []
    assert _frames.FrameLayout.from_dict(layout.to_dict()) == layout
    assert layout.own_prefix.endswith(os.path.join("gilwise", ""))


def test_another_threads_innermost_function_is_read_from_memory(reader):
    ready, release = threading.Event(), threading.Event()
    states: list[int] = []

    def target():
        states.append(_frames.current_tstate())
        parked_in_this_function(ready, release)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert ready.wait(10)
        assert states[0] in reader.thread_states()
        code = reader.innermost_code(states[0])
        # parked_in_this_function waits in Event.wait -> Condition.wait (threading.py).
        name, filename, _ = reader.code_key(code)
        assert filename == threading.__file__
        assert name.endswith("wait")
    finally:
        release.set()
        thread.join(10)


def test_this_threads_function_and_every_kind_of_str(reader):
    assert reader.code_key(id(parked_in_this_function.__code__)) == _key(parked_in_this_function)
    for text in ("", "ascii", "latin \xe9", "bmp \u0416\u20ac", "astral \U0001f40d", "x" * 2000):
        assert reader.string(id(text)) == text[:512]


def test_objects_that_are_not_code_or_str_read_as_none(reader):
    assert reader.code_key(id([1, 2, 3])) is None
    assert reader.code_key(0) is None
    assert reader.string(id(12345678901234567890)) is None
    assert reader.string(16) is None  # unmapped: an error from /proc, never a crash


def test_gilwise_own_code_is_attributed_to_no_function(reader):
    assert reader.code_key(id(_frames.locate_in_process.__code__)) is None


def phase_one(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < deadline:
        turns += 1
    return turns


def phase_two(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < deadline:
        turns += 1
    return turns


def test_remote_stacks_split_time_between_functions_by_their_truth():
    with gilwise.monitor(stack_source="remote") as mon:
        phase_one(0.3)
        phase_two(0.6)
    profile = mon.profile
    assert profile.extra["stack_source"] == "remote"
    by_name = {f.function: f for f in profile.functions}
    # One stack read every 4 ms (250 Hz): each phase's boundary blurs by at most that.
    assert by_name["phase_one"].gil_held_s == pytest.approx(0.3, abs=0.015 + 0.05 * 0.3)
    assert by_name["phase_two"].gil_held_s == pytest.approx(0.6, abs=0.015 + 0.05 * 0.6)


def test_remote_stacks_attribute_each_thread_and_keep_threading_names():
    with gilwise.monitor(stack_source="remote") as mon:
        reports = workloads.run_threads(workloads.measured_spinner, 2, 0.5)
    profile = mon.profile
    names = {t.name for t in profile.threads}
    assert {"worker-0", "worker-1"} <= names
    assert "gilwise-stacks" not in names
    top = profile.functions[0]
    assert (top.function, os.path.basename(top.file)) == ("spinner", "workloads.py")
    held = sum(profile.thread(r.native_id).gil_held_s for r in reports)
    waited = sum(profile.thread(r.native_id).gil_wait_s for r in reports)
    # Only the workers run the spinner, and they run little else: the rest of their time is
    # starting, the barrier (a GIL wait inside Barrier.wait when it opens) and exiting.
    assert 0.9 * held <= top.gil_held_s <= held + 1e-6
    assert 0.75 * waited <= top.gil_wait_s <= waited + 1e-6


def test_in_process_stacks_are_still_available_and_say_so():
    with gilwise.monitor(stack_source="in-process") as mon:
        workloads.spinner(0.2)
    assert mon.profile.extra["stack_source"] == "in-process"
    assert mon.profile.functions[0].function == "spinner"


def test_auto_falls_back_to_in_process_and_notes_why(monkeypatch):
    def broken(tstate):
        raise OSError("layout not recognised (injected)")

    monkeypatch.setattr(_frames, "locate_in_process", broken)
    with gilwise.monitor() as mon:
        workloads.spinner(0.2)
    assert mon.profile.extra["stack_source"] == "in-process"
    assert "injected" in mon.profile.extra["stack_note"]
    assert mon.profile.functions[0].function == "spinner"


def test_remote_only_raises_a_clear_error_when_the_layout_is_unknown(monkeypatch):
    def broken(tstate):
        raise OSError("layout not recognised (injected)")

    monkeypatch.setattr(_frames, "locate_in_process", broken)
    with pytest.raises(ProbeUnavailableError, match=r'injected.*stack_source="in-process"'):
        gilwise.monitor(stack_source="remote").start()


def test_stack_source_is_validated():
    with pytest.raises(ValueError, match="stack_source must be one of auto, remote, in-process"):
        gilwise.monitor(stack_source="py-spy")


def test_the_stack_rate_sets_how_often_the_child_reads_frames():
    monitor = _monitor.Monitor(1000, stack_rate_hz=100)
    with monitor:
        workloads.spinner(0.1)
    profile = monitor.profile
    assert monitor.stacks_used == "remote"
    # Every 10th thread-state sample reads the stacks (the first one included).
    assert profile.extra["stack_samples"] == -(-profile.samples // 10)
    assert profile.functions[0].function == "spinner"


def test_a_code_objects_address_reused_by_another_reads_as_the_new_one(layout):
    # A fake code object at a fixed address whose header is rewritten, as when a freed code
    # object's memory is reused: the reader must not serve the old name from its cache.
    memory = MemoryReader(os.getpid())
    fake_address = 0x7F00_0000_0000
    span = max(layout.name_offset, layout.filename_offset, layout.firstlineno_offset) + 8
    header = bytearray(span)

    def write_header(name: str, filename: str, line: int) -> None:
        struct.pack_into("<Q", header, 8, layout.code_type)
        struct.pack_into("<Q", header, layout.name_offset, id(name))
        struct.pack_into("<Q", header, layout.filename_offset, id(filename))
        struct.pack_into("<i", header, layout.firstlineno_offset, line)

    def read(address: int, size: int) -> bytes:
        if fake_address <= address < fake_address + span:
            start = address - fake_address
            return bytes(header[start : start + size])
        return memory.read(address, size)

    first, second, filename = "first_function", "second_function", "reused.py"
    reader = _frames.FrameReader(read, layout)
    try:
        write_header(first, filename, 10)
        assert reader.code_key(fake_address) == ("first_function", "reused.py", 10)
        write_header(second, filename, 20)
        assert reader.code_key(fake_address) == ("second_function", "reused.py", 20)
        header[8:16] = bytes(8)  # freed: no longer a code object
        assert reader.code_key(fake_address) is None
    finally:
        memory.close()


def sleep_in_a(seconds: float) -> None:
    time.sleep(seconds)


def sleep_in_b(seconds: float) -> None:
    time.sleep(seconds)


def test_a_thread_that_blocks_in_one_function_then_another_is_split_between_them():
    # Between two stack reads the thread wakes, calls the other function and blocks again
    # in the same kind of wait: its stack must still be read again.
    def alternate(rounds: int) -> None:
        for _ in range(rounds):
            sleep_in_a(0.02)
            sleep_in_b(0.02)

    with gilwise.monitor(stack_source="remote") as mon:
        workloads.run_threads(alternate, 1, 15)
    by_name = {f.function: f for f in mon.profile.functions}
    # 15 sleeps of 20 ms each: 0.3 s, give or take a sleep's overshoot and a read interval.
    assert by_name["sleep_in_a"].io_wait_s == pytest.approx(0.3, abs=0.05)
    assert by_name["sleep_in_b"].io_wait_s == pytest.approx(0.3, abs=0.05)


def test_code_objects_made_and_freed_at_run_time_are_each_reported():
    # Code generated at run time (templates, exec) is freed after use, and the next one is
    # often allocated at the same address: each must still be reported under its own name.
    # Each one spins 50 ms; the truth is how long it really ran, entry to return (on a busy
    # machine a thread can be off its CPU, still holding the GIL, for tens of ms anywhere).
    def template(ran: list) -> None:
        entered = time.monotonic()
        deadline = entered + 0.05
        while time.monotonic() < deadline:
            pass
        ran.append(time.monotonic() - entered)

    ran: list[float] = []
    with gilwise.monitor(stack_source="remote") as mon:
        for index in range(8):
            names = {"co_name": f"generated_{index}"}
            if hasattr(template.__code__, "co_qualname"):  # 3.11+: reported by qualname
                names["co_qualname"] = f"generated_{index}"
            code = template.__code__.replace(**names)
            types.FunctionType(code, {"time": time})(ran)
            del code
    held = {f.function: f.gil_held_s for f in mon.profile.functions}
    for index in range(8):
        assert held[f"generated_{index}"] == pytest.approx(ran[index], abs=0.015)


def test_monitors_started_while_the_program_keeps_starting_threads_read_stacks_remotely():
    stop = threading.Event()

    def churn() -> None:  # per-request threads: the interpreter's thread list keeps moving
        while not stop.is_set():
            short = threading.Thread(target=time.sleep, args=(0.001,))
            short.start()
            short.join()

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for _ in range(5):
            with gilwise.monitor() as mon:
                workloads.spinner(0.02)
            assert mon.profile.extra["stack_source"] == "remote", mon.profile.extra.get(
                "stack_note"
            )
            assert mon.profile.held_fraction is not None
    finally:
        stop.set()
        churner.join(10)


def test_native_and_lock_time_go_to_the_function_that_spent_it():
    # Only the workers run these functions, and they run little else: the function's native
    # (hashing) or lock-wait (queueing) seconds are the workers' own, give or take their start.
    with gilwise.monitor(stack_source="remote") as mon:
        workloads.run_threads(workloads.hasher, 2, 0.4)
        workloads.lock_queue(3, 0.4)
    profile = mon.profile
    by_name = {f.function.rsplit(".", 1)[-1]: f for f in profile.functions}
    hashers = [t for t in profile.threads if t.native_s and t.native_s > 0.3]
    native = sum(t.native_s or 0.0 for t in hashers)
    assert len(hashers) == 2
    assert 0.9 * native <= by_name["hasher"].native_s <= native + 1e-6
    queued = sum(t.lock_wait_s or 0.0 for t in profile.threads if t.name.startswith("worker-"))
    assert queued > 0.3
    assert 0.85 * queued <= by_name["worker"].lock_wait_s <= queued + 1e-6
