"""The sentences follow the measured numbers and the runtime facts, not a script."""

from __future__ import annotations

import dataclasses

import pytest

from gilwise._runtime import RuntimeFacts
from gilwise.demo._cpu import run_cpu
from gilwise.demo._explain import explain, parallel_cpu_slowdown, speedup_text
from gilwise.demo._results import ExperimentResult, Row, unavailable, with_speedups

PY311 = RuntimeFacts((3, 11, 7), "CPython", 2, True, False, "linux")
FREE_THREADED = RuntimeFacts((3, 13, 0), "CPython", 2, False, True, "linux")
ONE_CORE = dataclasses.replace(PY311, cores=1)


def _cpu_result(
    threads_s: float, processes_s: float, interpreters: Row, *, processes_cpu_s: float = 2.0
) -> ExperimentResult:
    rows = (
        Row("spin loop", "sequential", 1, 2.0, 2.0),
        Row("spin loop", "threads", 2, threads_s, 2.0),
        Row("spin loop", "processes", 2, processes_s, processes_cpu_s),
        interpreters,
    )
    return ExperimentResult("cpu", "CPU-bound", "loops", with_speedups(rows))


NO_INTERPRETERS = unavailable(
    "spin loop", "sub-interpreters", 2, "needs Python 3.12+, this is 3.11.7"
)


def test_speedups_are_relative_to_the_sequential_row_of_the_same_workload():
    rows = with_speedups(
        (
            Row("a", "sequential", 1, 4.0, 4.0),
            Row("a", "threads", 2, 2.0, 4.0),
            Row("b", "sequential", 1, 1.0, 1.0),
            Row("b", "threads", 2, 1.0, 1.0),
            unavailable("b", "processes", 2, "why"),
        )
    )
    assert [row.speedup_vs_sequential for row in rows] == [1.0, 2.0, 1.0, 1.0, None]


def test_cpu_with_a_gil_says_threads_take_turns_and_processes_scale():
    sentence = explain(_cpu_result(2.0, 1.05, NO_INTERPRETERS), PY311).sentence
    assert "1.00x" in sentence and "take turns" in sentence
    assert "1.90x" in sentence and "own interpreter and GIL" in sentence
    assert "needs Python 3.12+, this is 3.11.7" in sentence


def test_cpu_on_a_free_threaded_build_says_threads_now_scale():
    sentence = explain(_cpu_result(1.04, 1.05, NO_INTERPRETERS), FREE_THREADED).sentence
    assert "without a GIL, so threads now scale" in sentence
    assert "1.92x" in sentence


def test_cpu_sentence_admits_when_processes_did_not_scale():
    sentence = explain(_cpu_result(2.0, 1.9, NO_INTERPRETERS), PY311).sentence
    assert "only 1.05x" in sentence


def test_cpu_sentence_reports_measured_subinterpreters():
    interpreters = Row("spin loop", "sub-interpreters", 2, 1.1, 2.1)
    sentence = explain(_cpu_result(2.0, 1.05, interpreters), PY311).sentence
    assert "sub-interpreters" in sentence and "1.82x" in sentence


def test_one_core_sentence_says_nothing_can_run_in_parallel():
    sentence = explain(_cpu_result(2.0, 2.0, NO_INTERPRETERS), ONE_CORE).sentence
    assert sentence.startswith("With 1 usable core")


def test_native_sentence_says_why_numpy_is_missing():
    rows = with_speedups(
        (
            Row("sha256", "sequential", 1, 1.0, 1.0),
            Row("sha256", "threads", 2, 0.55, 1.0),
            unavailable("numpy matmul", "sequential", 1, "numpy not installed"),
            unavailable("numpy matmul", "threads", 2, "numpy not installed"),
        )
    )
    sentence = explain(ExperimentResult("native", "t", "w", rows), PY311).sentence
    assert "1.82x" in sentence and "numpy not installed" in sentence


def test_io_sentence_names_both_speedups():
    rows = with_speedups(
        (
            Row("downloads", "sequential", 1, 2.0, 0.1),
            Row("downloads", "threads", 20, 0.12, 0.1),
            Row("downloads", "asyncio", 20, 0.11, 0.1),
        )
    )
    sentence = explain(ExperimentResult("io", "t", "w", rows), PY311).sentence
    assert "16.7x" in sentence and "18.2x" in sentence


@pytest.mark.parametrize(("value", "text"), [(None, "n/a"), (1.234, "1.23x"), (15.61, "15.6x")])
def test_speedup_text(value, text):
    assert speedup_text(value) == text


def test_subinterpreter_row_explains_why_on_python_below_312(no_leaks):
    result = run_cpu(0.001, PY311)
    row = result.row("sub-interpreters")
    assert not row.available
    assert row.note == "needs Python 3.12+, this is 3.11.7"
    assert result.rows[-1] is row


def test_a_starved_sequential_run_is_called_unreliable():
    rows = with_speedups(
        (
            Row("spin loop", "sequential", 1, 2.0, 0.9),
            Row("spin loop", "threads", 2, 2.0, 0.9),
            Row("spin loop", "processes", 2, 1.5, 0.9),
            NO_INTERPRETERS,
        )
    )
    sentence = explain(ExperimentResult("cpu", "t", "w", rows), PY311).sentence
    assert "the sequential run got only 45% of a core" in sentence
    assert sentence.count("; careful") == 1 and sentence.endswith("than about the GIL.")


def test_processes_that_needed_more_cpu_for_the_same_loops_are_called_out():
    # Same loops: 2.0 CPU seconds alone, 2.8 in the two processes (slower cores in parallel).
    result = _cpu_result(2.0, 1.44, NO_INTERPRETERS, processes_cpu_s=2.8)
    assert parallel_cpu_slowdown(result) == pytest.approx(1.4)
    sentence = explain(result, PY311).sentence
    assert "the 2 processes needed 1.40x the CPU time of the sequential run" in sentence
    assert sentence.count("; careful") == 1


def test_other_programs_load_is_called_out():
    result = dataclasses.replace(_cpu_result(2.0, 1.6, NO_INTERPRETERS), other_programs_cores=0.93)
    sentence = explain(result, PY311).sentence
    assert "careful: other programs kept 0.9 cores busy while measuring" in sentence


def test_an_idle_machine_gets_no_warning():
    result = dataclasses.replace(_cpu_result(2.0, 1.05, NO_INTERPRETERS), other_programs_cores=0.05)
    assert "careful" not in explain(result, PY311).sentence


@pytest.mark.multiversion
def test_subinterpreter_row_is_measured_on_312_and_explained_before(no_leaks):
    from gilwise import _runtime as runtime

    facts = runtime.current()
    row = run_cpu(0.01, facts, repeats=1).row("sub-interpreters")
    if facts.own_gil_subinterpreters:
        assert row.available, row.note
        assert row.wall_s > 0 and row.gil_note == "n/a (own GIL)"
    else:
        assert row.note == f"needs Python 3.12+, this is {facts.version_text}"
