"""auto remembers what it decided per function for the program's later Executors
(Chooser.recall): a program's second job with the same function takes the decision instead
of measuring again (bench_peers' "second job" row), and a function sent to worker processes,
or that crashed one, never runs in the caller in a later job either.

Chooser tests on injected measurements; Executor tests in fresh interpreters (a program's
jobs), checking what ran where by events and a call log, not by time.
"""

from __future__ import annotations

import json
import textwrap

import fresh_python
import pytest

from gilwise import _chooser, _runtime
from gilwise._chooser import Chooser
from gilwise._decide import TaskMeasurement

TWO_CORES = _runtime.current().cores >= 2 and _runtime.current().gil_enabled
GIL_BOUND = TaskMeasurement(wall_s=0.005, cpu_s=0.005, calls=4, pair_wall_s=0.01, pair_cpu_s=0.01)


def _decided(opened, measured=GIL_BOUND, *, key="spin", expected=None):
    chooser = Chooser("spin", memory_key=key)
    if expected is not None:
        chooser.expect(expected)
    if measured is not None:
        chooser.decide(opened[1], measured)
    return chooser


@pytest.mark.skipif(not TWO_CORES, reason="GIL-bound work goes to processes with 2+ cores")
def test_a_later_chooser_of_the_same_function_takes_the_decision(opened, start_cost):
    start_cost["s"] = 0.0
    first = _decided(opened, expected=120)
    assert first.decision.backend == "process"
    later = Chooser("spin", memory_key="spin")
    assert later.recall()
    assert later.recalled == GIL_BOUND  # what to decide from: nothing to measure
    assert later.remote == "process"  # sent to processes once: never run here again
    later.expect(100)
    decision, _ = later.decide(opened[1], later.recalled)
    assert decision.backend == "process" and later.recalled is None
    text = later.explain()
    assert "decided as before in this program" in text
    assert "measured 4 real calls" in text and "not measured again" in text


def test_other_functions_and_forgotten_decisions_are_measured(opened):
    _decided(opened)
    assert not Chooser("other", memory_key="other").recall()
    assert not Chooser("spin").recall()  # no memory key: the pipeline's choosers
    _chooser.forget_decisions()
    assert not Chooser("spin", memory_key="spin").recall()


def test_an_early_judgement_is_not_remembered_until_confirmed(opened):
    chooser = Chooser("spin", memory_key="spin")
    chooser.decide(opened[1], GIL_BOUND, early=True)
    assert not Chooser("spin", memory_key="spin").recall()


def test_a_crash_is_remembered(opened):
    chooser = _decided(opened)
    chooser.note_crash(RuntimeError("worker died"))
    later = Chooser("spin", memory_key="spin")
    assert later.recall() and later.crashed
    decision, _ = later.decide(opened[1], TaskMeasurement(wall_s=0.00001, cpu_s=0.00001))
    assert decision.backend == "process"  # even a tiny call: never in this process again


def test_the_memory_is_bounded(opened):
    for number in range(_chooser.MEMORY_SIZE + 5):
        _decided(opened, key=("f", number))
    assert not Chooser("f", memory_key=("f", 0)).recall()  # the oldest went first
    assert Chooser("f", memory_key=("f", _chooser.MEMORY_SIZE + 4)).recall()


# --- a program's jobs (fresh interpreters) ------------------------------------------------

JOBS = """
import json, sys, gilwise
from gilwise import _chooser, _first_call
from gilwise._executor import _map

LOG = sys.argv[1]
events = []

def spin(x):
    with open(LOG, "a") as log:  # one line per call: none runs twice or is dropped
        log.write(f"{x}\\n")
    total = 0
    for i in range(60_000):
        total += i
    return x

real_measured = _chooser.Chooser.measured
def measured(self, fns):
    events.append(f"measured {len(fns)}")
    return real_measured(self, fns)
_chooser.Chooser.measured = measured

real_first = _map.run_first_call
def first(fn, args, *, probe=True):
    events.append("first call here")
    return real_first(fn, args, probe=probe)
_map.run_first_call = first
"""


def _jobs(code: str, tmp_path) -> tuple[list[str], list[int]]:
    log = tmp_path / "calls.log"
    out = fresh_python.run(JOBS + code, str(log))
    return out, sorted(int(line) for line in log.read_text().split())


@pytest.mark.parametrize("second", ["executor", "gilwise.map"])
def test_a_second_job_takes_the_first_jobs_decision_without_measuring(second, tmp_path):
    run = (
        "with gilwise.Executor() as ex:\n"
        "    assert list(ex.map(spin, range(100, 180))) == list(range(100, 180))\n"
        "    print(ex.explain(spin).replace(chr(10), ' | '))\n"
        "    print(ex.decisions[_chooser.label(spin)].backend)"
        if second == "executor"
        else "assert list(gilwise.map(spin, range(100, 180))) == list(range(100, 180))\n"
        "print('-')\nprint('-')"
    )
    out, calls = _jobs(
        textwrap.dedent(
            """
            with gilwise.Executor() as ex:
                assert list(ex.map(spin, range(80))) == list(range(80))
                print(ex.decisions[_chooser.label(spin)].backend)
            first_job = ex.explain(spin).replace(chr(10), " | ")
            events.append("second job")
            """
        )
        + run
        + "\nprint(first_job)\nprint(json.dumps(events))\n",
        tmp_path,
    )
    events = json.loads(out[-1])
    second_job = events[events.index("second job") + 1 :]
    assert second_job == [], out  # no first call here, no pair: nothing measured
    if second == "executor":
        assert "decided as before in this program" in out[1], out[1]
        assert out[2] == out[0]  # the same backend as the first job
    assert calls == list(range(80)) + list(range(100, 180))
