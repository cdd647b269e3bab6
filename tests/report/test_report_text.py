"""The text report shows the profile's own numbers, n/a for what was not measured, and names
exactly as written (never as rich markup)."""

from __future__ import annotations

from dataclasses import replace
from io import StringIO

import pytest
from report_profiles import (
    HOSTILE_MARKUP,
    HOSTILE_NAME,
    free_threaded_profile,
    gil_bound_profile,
    hostile_profile,
    io_profile,
)
from rich.console import Console

from gilwise._model import FunctionStats
from gilwise.report import render, render_to_console


def _row(text: str, first_cell: str) -> list[str]:
    """The whitespace-separated cells of the table row that starts with ``first_cell``."""
    for line in text.splitlines():
        if line.strip().startswith(first_cell + " "):
            return line.split()
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{text}")


def test_header_shows_runtime_and_gil_share():
    text = render(gil_bound_profile(), "text")
    header = "\n".join(text.splitlines()[:2])
    for fact in (
        "CPython 3.11.7",
        "GIL on",
        "cores 2",
        "wall 2.000 s",
        "GIL held 98.8%",
        "samples 2000 every 1.00 ms",
        "command python spin.py",
    ):
        assert fact in header


def test_thread_rows_carry_seconds_and_shares_of_wall():
    text = render(gil_bound_profile(), "text")
    assert _row(text, "MainThread") == [
        "MainThread",
        "1000",
        "2.000",
        "0.002",
        "0.1%",
        "0.001",
        "0.1%",
        "0.000",
        "0.0%",
        "0.000",
        "0.000",
        "1.998",
    ]
    assert _row(text, "worker-1") == [
        "worker-1",
        "1001",
        "2.000",
        "1.002",
        "50.1%",
        "1.000",
        "50.0%",
        "1.000",
        "50.0%",
        "0.000",
        "0.000",
        "0.000",
    ]


def test_unmeasured_numbers_read_n_a_never_zero():
    text = render(free_threaded_profile(), "text")
    assert "GIL off" in text
    assert "GIL held n/a (no GIL)" in text
    assert _row(text, "cruncher") == [
        *("cruncher", "3001", "1.500", "1.490", "99.3%"),
        *("n/a", "n/a", "n/a", "n/a"),
        *("1.490", "0.000", "0.000"),
    ]
    assert "unavailable:\n  - gil_held\n  - gil_wait\n" in text


def test_top_functions_are_the_15_with_most_held_plus_wait():
    text = render(gil_bound_profile(), "text")
    assert "top 15 of 21 functions by GIL held + wait + native + I/O" in text
    assert _row(text, "spin") == [
        *("spin", "/home/user/project/app/compute.py:3"),
        *("1.234", "1.111", "0.000", "0.000", "0.000"),
    ]
    shown = [f"helper_{i}" for i in range(7, 21)]
    hidden = [f"helper_{i}" for i in range(1, 7)]
    assert all(_row(text, name) for name in shown)
    assert not any(line.split()[:1] == [name] for name in hidden for line in text.splitlines())
    lines = text.splitlines()
    assert lines.index(next(line for line in lines if line.startswith(" spin"))) < lines.index(
        next(line for line in lines if line.startswith(" helper_20"))
    )


def test_functions_in_native_code_or_io_rank_with_the_gil_bound_ones_lock_waits_do_not():
    functions = (
        FunctionStats("spin", "app.py", 1, 0.5, 0.4),
        FunctionStats("digest", "app.py", 2, 0.01, 0.0, native_s=2.0),
        FunctionStats("fetch", "app.py", 3, 0.01, 0.0, io_wait_s=1.5),
        FunctionStats("idle_worker", "app.py", 4, 0.0, 0.0, lock_wait_s=9.0),
    )
    text = render(replace(gil_bound_profile(), functions=functions), "text", width=200)
    assert _row(text, "digest") == [
        "digest",
        "app.py:2",
        "0.010",
        "0.000",
        "2.000",
        "0.000",
        "0.000",
    ]
    assert _row(text, "idle_worker")[-1] == "9.000"
    order = [
        line.split()[0]
        for line in text.splitlines()
        if line[1:].startswith(("spin ", "digest ", "fetch ", "idle_worker "))
    ]
    assert order == ["digest", "fetch", "spin", "idle_worker"]


def test_verdict_and_unavailable_lines():
    text = render(io_profile(), "text")
    assert "verdict: io-bound  recommended backend: thread  expected speedup: 8.0x" in text
    assert "I/O-bound: threads overlap the waits." in text
    assert "unavailable: none" in text


def test_a_single_unavailable_note_stays_on_one_line():
    note = "gil: could not locate the GIL in this process (no symbol)"
    text = render(replace(io_profile(), unavailable=(note,)), "text", width=200)
    assert f"unavailable: {note}\n" in text


def test_profile_without_verdict_functions_or_threads_says_so():
    bare = replace(gil_bound_profile(), verdict=None, functions=(), threads=(), timeline=())
    text = render(bare, "text")
    assert "verdict: none (this profile was not judged)" in text
    assert "top functions: none recorded" in text
    assert "threads: none observed" in text


def test_names_are_printed_as_written_not_as_markup():
    text = render(hostile_profile(), "text", width=200)
    assert HOSTILE_MARKUP in text
    assert HOSTILE_NAME in text
    assert "R&D said <b>so</b>" in text


def test_plain_text_has_no_escape_codes_and_no_trailing_spaces():
    text = render(gil_bound_profile(), "text")
    assert "\x1b" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize("width", [80, 100, 120])
def test_lines_fit_the_width_and_numbers_stay_whole(width: int):
    text = render(gil_bound_profile(), "text", width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    cells = _row(text, "MainThread")
    assert cells[:4] == ["MainThread", "1000", "2.000", "0.002"]
    assert cells[-1] == "1.998"


def test_narrow_terminal_drops_the_percent_columns_first():
    wide = _row(render(gil_bound_profile(), "text", width=120), "worker-1")
    narrow = _row(render(gil_bound_profile(), "text", width=80), "worker-1")
    assert [cell for cell in wide if not cell.endswith("%")] == narrow
    assert "threads (seconds)\n" in render(gil_bound_profile(), "text", width=80)


def test_render_to_console_prints_in_colour_on_a_terminal():
    out = StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=120)
    render_to_console(gil_bound_profile(), console)
    coloured = out.getvalue()
    assert "\x1b[" in coloured
    assert "gil-bound" in coloured and "1.9x" in coloured


def test_unknown_share_with_the_gil_on_reads_plain_n_a():
    # An attach that could not find the GIL: the GIL is on but its share is unknown.
    text = render(replace(io_profile(), held_fraction=None), "text")
    assert "GIL on" in text
    assert "GIL held n/a\n" in text or "GIL held n/a " in text
    assert "no GIL" not in text


def test_installed_code_is_shown_from_its_import_root():
    stdlib = FunctionStats("wait", "/opt/py/lib/python3.12/threading.py", 320, 0.5, 0.0)
    numpy = FunctionStats("dot", "/v/lib/python3.13t/site-packages/numpy/linalg.py", 9, 0.4, 0.0)
    long_own = FunctionStats("f", "/home/" + "very_long_directory/" * 5 + "app.py", 1, 0.3, 0.0)
    text = render(replace(io_profile(), functions=(stdlib, numpy, long_own)), "text")
    assert _row(text, "wait")[1] == "threading.py:320"
    assert _row(text, "dot")[1] == "numpy/linalg.py:9"
    assert _row(text, "f")[1] == "…" + ("very_long_directory/" * 5 + "app.py:1")[-47:]


def test_cpu_wait_column_appears_only_when_a_thread_waited_for_a_cpu():
    quiet = render(gil_bound_profile(), "text", width=200)
    assert "CPU" not in quiet
    profile = gil_bound_profile()
    busy_worker = replace(profile.threads[1], cpu_wait_s=0.25)  # 12.5% of its 2 s
    busy = replace(profile, threads=(profile.threads[0], busy_worker, profile.threads[2]))
    text = render(busy, "text", width=200)
    assert "CPU" in text
    assert _row(text, "worker-1")[-1] == "0.250"
    assert _row(text, "worker-2")[-1] == "n/a"  # not measured in this fixture: never 0
    html = render(busy, "html")
    assert "<th" in html and "CPU wait s" in html
