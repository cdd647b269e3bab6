"""Threading names without a polling thread: the recording threading._active and its removal."""

from __future__ import annotations

import os
import threading

import pytest

from gilwise.probe import _names

pytestmark = [pytest.mark.multiversion, pytest.mark.usefixtures("no_leaks")]


def _run_named(name: str) -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(threading.get_native_id()), name=name)
    thread.start()
    thread.join(10)
    return seen[0]


def test_threads_that_end_during_the_run_and_threads_alive_at_stop_are_named():
    recorder = _names.ThreadNames()
    recorder.start()
    ended = _run_named("ended-early")
    release = threading.Event()
    alive = threading.Thread(target=release.wait, name="still-alive")
    alive.start()
    try:
        names = recorder.stop()
    finally:
        release.set()
        alive.join(10)
    assert names[ended] == "ended-early"
    assert names[alive.native_id] == "still-alive"
    assert names[threading.get_native_id()] == threading.current_thread().name
    # threading's own dict is back, with every living thread in it.
    assert type(threading._active) is dict
    assert threading._active[threading.get_ident()] is threading.current_thread()


def test_overlapping_recorders_each_see_names_and_the_hook_goes_with_the_last():
    first, second = _names.ThreadNames(), _names.ThreadNames()
    first.start()
    second.start()
    both = _run_named("seen-by-both")
    first.stop()
    assert type(threading._active) is not dict  # the second still records
    only_second = _run_named("seen-by-second")
    names = second.stop()
    assert type(threading._active) is dict
    assert first.names[both] == "seen-by-both" and only_second not in first.names
    assert names[both] == "seen-by-both" and names[only_second] == "seen-by-second"


def test_a_thread_ending_after_stop_is_not_recorded_and_still_ends_normally():
    recorder = _names.ThreadNames()
    recorder.start()
    recorder.stop()
    after = _run_named("after-stop")
    assert after not in recorder.names
    assert "after-stop" not in [t.name for t in threading.enumerate()]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_recording_gets_threadings_plain_dict_back():
    recorder = _names.ThreadNames()
    recorder.start()
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave without running the parent's cleanup
            state = type(threading._active) is dict and not _names._recorders
            os.write(write_end, b"plain" if state else b"recording")
            os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 64)
        os.close(read_end)
        os.waitpid(pid, 0)
    finally:
        recorder.stop()
    assert answer == b"plain"
