"""Finding the GIL from outside a process: ELF symbols, per-version tables, graceful failure."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import subprocess
import sys

import pytest

from gilwise.probe import _attach, _gil_address

pytestmark = pytest.mark.usefixtures("no_leaks")

VICTIM = (
    "import threading, sys\n"
    "def spin():\n"
    "    while True: pass\n"
    "threading.Thread(target=spin, daemon=True).start()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def spinning_process():
    with subprocess.Popen(
        [sys.executable, "-c", VICTIM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as victim:
        try:
            assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
            yield victim.pid
        finally:
            victim.kill()


@pytest.mark.multiversion
def test_the_known_layout_tables_match_this_interpreter():
    location = _gil_address.locate_in_process()
    key = sys.version_info[:2]
    assert location.runtime_offset == _gil_address.KNOWN_GIL_OFFSETS[key]
    assert location.holder_chain == _gil_address.KNOWN_HOLDER_CHAINS[key]


@pytest.mark.multiversion
def test_the_elf_symbol_of_pyruntime_matches_the_loaded_address():
    target = _attach.find_target_python(os.getpid())
    expected = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    assert target.runtime_address == expected
    assert target.minor == sys.version_info[1]


def test_an_unknown_layout_reports_states_without_a_held_fraction(spinning_process, monkeypatch):
    monkeypatch.setattr(_gil_address, "KNOWN_GIL_OFFSETS", {})
    profile = _attach.attach(spinning_process, 0.3, 500)
    assert profile.held_fraction is None
    assert any(note.startswith("gil holder:") for note in profile.unavailable)
    running = [states["running_s"] for states in profile.extra["thread_states"].values()]
    assert max(running) > 0.5 * profile.wall_s
    assert all(t.gil_held_s is None for t in profile.threads)


@pytest.mark.multiversion
def test_attach_reads_the_targets_functions_with_the_same_python(spinning_process):
    profile = _attach.attach(spinning_process, 0.4, 1000)
    assert not [note for note in profile.unavailable if note.startswith("functions:")]
    top = profile.functions[0]
    assert (top.function, top.file, top.line) == ("spin", "<string>", 2)
    spinner = max(profile.threads, key=lambda t: t.gil_held_s or 0.0)
    # The spinning thread runs spin() and nothing else: all its GIL time is spin's.
    assert top.gil_held_s == pytest.approx(spinner.gil_held_s, rel=0.05)


def test_attach_to_another_python_version_explains_how_to_get_functions(spinning_process):
    target = _attach.find_target_python(spinning_process)
    other = dataclasses.replace(target, minor=target.minor + 1)
    layout, problem = _attach.locate_frames(spinning_process, other, ((0, 8),))
    assert layout is None
    assert f"run gilwise with the target's Python (3.{target.minor + 1})" in problem
