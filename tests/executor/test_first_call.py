"""auto decides from a map's first call, run in the caller with a GIL probe beside it
(gilwise._first_call, Chooser.first_call, Executor._first_call_ran).

The probe's readings are checked on workloads with known answers (pure Python holds the
GIL; hashlib on a big buffer and sleep release it): a reading that says it is clear must be
right; on a crowded machine it may say nothing (then the test has nothing to check and says
so). What the Executor does with a reading is checked with the reading forced, in fresh
interpreters (a program with one thread, as a script is): the order of events, not times.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import fresh_python
import pytest
from test_executor_auto import cpu_work, iterations_for

from gilwise import _first_call, _runtime
from gilwise._chooser import GIL_HELD_CLEAR, Chooser
from gilwise._decide import TaskMeasurement
from gilwise._executor._core import GIL_RELEASED_CLEAR
from gilwise._first_call import PROBE_MAX_WAKES, run_first_call
from workloads import hasher, sleeper

TWO_CORES = _runtime.current().cores >= 2 and _runtime.current().gil_enabled


def _clear_readings(fn, arg, attempts=5):
    readings = []
    for _ in range(attempts):
        first = run_first_call(fn, (arg,))
        assert first.outcome.done() and first.outcome.exception() is None
        if first.gil is not None and first.gil.clear:
            readings.append(first.gil)
    if not readings:
        pytest.skip("the machine was too busy for the probe to say anything")
    return readings


def test_a_pure_python_call_reads_as_holding_the_gil():
    readings = _clear_readings(cpu_work, iterations_for(0.02))
    assert all(reading.held_share >= GIL_HELD_CLEAR for reading in readings), readings


@pytest.mark.skipif(not TWO_CORES, reason="the probe needs a core of its own beside the call")
def test_native_code_that_releases_the_gil_reads_as_releasing_it():
    readings = _clear_readings(hasher, 0.02)
    assert all(reading.held_share <= GIL_RELEASED_CLEAR for reading in readings), readings


def test_a_sleep_reads_as_releasing_the_gil():
    readings = _clear_readings(sleeper, 0.01)
    assert all(reading.held_share <= GIL_RELEASED_CLEAR for reading in readings), readings


def _recording_probes(monkeypatch) -> list:
    """The GilProbes run_first_call makes, kept (to find their threads afterwards)."""
    probes = []

    class Recording(_first_call.GilProbe):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            probes.append(self)

    monkeypatch.setattr(_first_call, "GilProbe", Recording)
    return probes


def _thread_gone(native_id: int) -> bool:
    # Hang guard 5 s: an ended thread leaves /proc/self/task at once. (This looks at the
    # probe's own thread, not at the process's thread count, which threads left by other
    # tests may change meanwhile.)
    deadline = time.monotonic() + 5.0
    while os.path.exists(f"/proc/self/task/{native_id}") and time.monotonic() < deadline:
        time.sleep(0.001)
    return not os.path.exists(f"/proc/self/task/{native_id}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="looks in /proc")
def test_the_probe_thread_is_gone_when_the_first_call_returns(monkeypatch):
    probes = _recording_probes(monkeypatch)
    first = run_first_call(cpu_work, (iterations_for(0.005),))
    assert first.outcome.result() == cpu_work(iterations_for(0.005))
    assert len(probes) == 1 and probes[0]._native_id is not None
    assert _thread_gone(probes[0]._native_id)


def test_a_long_first_call_is_watched_only_until_the_probe_has_enough():
    # The call waits (hang guard: 10 s) until the switch interval is back to the program's:
    # the probe put it back itself, while the call still ran, after PROBE_MAX_WAKES.
    original = sys.getswitchinterval()

    def long_call(_):
        deadline = time.monotonic() + 10.0
        while sys.getswitchinterval() != original and time.monotonic() < deadline:
            time.sleep(0.005)
        return sys.getswitchinterval() == original

    first = run_first_call(long_call, (None,))
    assert first.outcome.result() is True
    assert first.gil is not None and first.gil.wakes <= PROBE_MAX_WAKES, first.gil
    assert sys.getswitchinterval() == original


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="looks in /proc")
def test_the_first_calls_exception_is_its_outcome_and_the_probe_ends(monkeypatch):
    def fails(_):
        raise KeyError("boom")

    probes = _recording_probes(monkeypatch)
    first = run_first_call(fails, (1,))
    assert isinstance(first.outcome.exception(), KeyError)
    assert len(probes) == 1
    # It may not have run before the call failed (nothing to watch then); if it ran, it ended.
    assert probes[0]._native_id is None or _thread_gone(probes[0]._native_id)


# --- the Chooser: which first calls are enough to decide --------------------------------------


class _Reading:
    wakes = 8

    def __init__(self, held_share, clear=True):
        self.held_share = held_share
        self.clear = clear


def _sample(wall_s, cpu_s=None):
    from gilwise._measure import CallSample

    return CallSample(wall_s, wall_s if cpu_s is None else cpu_s, 0.0, wall_s)


def test_a_busy_first_call_that_held_the_gil_is_enough(start_cost):
    chooser = Chooser("coarse")
    chooser.expect(120)
    measured = chooser.first_call(_sample(0.005), _Reading(0.95))
    assert measured is not None and measured.calls == 1
    assert measured.overlap == pytest.approx(1.05)  # calls on threads would take turns
    decision = chooser.prospect(measured)
    if TWO_CORES:
        assert decision.backend == "process", decision.reason
        assert "held the GIL through its first call" in decision.reason
    assert chooser.calls_done == 1 and chooser.probe.calls == 1  # filed: never run again


def test_a_busy_first_call_that_released_the_gil_is_enough():
    chooser = Chooser("digest")
    chooser.expect(32)
    measured = chooser.first_call(_sample(0.005), _Reading(0.0))
    assert measured is not None and measured.calls == 1
    assert measured.overlap == pytest.approx(2.0)  # calls on threads would overlap
    decision = chooser.prospect(measured)
    if TWO_CORES:
        assert (decision.kind, decision.backend) == ("native-parallel", "thread"), decision
        assert "released the GIL through its first call" in decision.reason
    assert chooser.calls_done == 1 and chooser.probe.calls == 1  # filed: never run again


@pytest.mark.parametrize(
    ("sample", "reading", "imported"),
    [
        (_sample(0.005), _Reading(0.95, clear=False), False),  # the probe could not say
        (_sample(0.005), _Reading(0.4), False),  # in between: a pair tells
        (_sample(0.005, cpu_s=0.001), _Reading(0.95), False),  # mostly waiting
        (_sample(0.005), _Reading(0.95), True),  # a cold call (it imported modules)
        (_sample(0.005), None, False),  # no probe (other threads ran)
    ],
)
def test_other_first_calls_leave_it_to_a_pair(sample, reading, imported):
    chooser = Chooser("f")
    assert chooser.first_call(sample, reading, imported=imported) is None
    assert chooser.deciding and chooser.probe.calls == 1  # counted as the first single


@pytest.mark.skipif(not TWO_CORES, reason="processes pay only with 2+ cores and a GIL")
def test_a_short_busy_first_call_of_a_big_map_decides_processes_without_the_probe(start_cost):
    start_cost["s"] = 0.03
    chooser = Chooser("fine")
    chooser.expect(400)
    measured = chooser.first_call(_sample(0.0006), None)  # the probe: too short to say
    assert measured is not None
    decision = chooser.prospect(measured)
    assert decision.backend == "process" and "But there are many: 399 calls" in decision.reason
    few = Chooser("fine")
    few.expect(20)
    assert few.prospect(few.first_call(_sample(0.0006), None)).backend == "inline"
    # ... unless the probe found the GIL released: a pair on threads tells then.
    assert Chooser("fine").first_call(_sample(0.0006), _Reading(0.0)) is None


def test_a_tiny_first_call_decides_inline_without_the_probe():
    chooser = Chooser("inc")
    measured = chooser.first_call(_sample(0.000002), None)
    assert measured is not None
    assert chooser.prospect(measured).backend == "inline"
    assert "shorter than any hand-over" in " ".join(chooser.notes)


# --- tiny calls, but many: processes in chunks ------------------------------------------------


def _tiny_decision(call_s, expected, start_cost_s, start_cost, **measured):
    start_cost["s"] = start_cost_s
    chooser = Chooser("fine")
    if expected is not None:
        chooser.expect(expected)
    return chooser.prospect(TaskMeasurement(wall_s=call_s, cpu_s=call_s, calls=2, **measured))


@pytest.mark.skipif(not TWO_CORES, reason="processes pay only with 2+ cores and a GIL")
def test_many_small_calls_go_to_processes(start_cost):
    decision = _tiny_decision(0.0008, 400, 0.03, start_cost)
    assert (decision.kind, decision.backend) == ("tiny", "process"), decision.reason
    assert decision.chunksize > 1 and "But there are many: 400 calls" in decision.reason


@pytest.mark.parametrize(
    ("call_s", "expected", "measured"),
    [
        (0.0008, 40, {}),  # 32 ms of work: saves less than the 30 ms start
        (0.0008, None, {}),  # unknown length: the inline watch decides later
        (0.00005, 100_000, {}),  # too short for a hand-over each, however many
        (0.0008, 400, {"pair_wall_s": 0.0008, "pair_cpu_s": 0.0016}),  # overlap on threads
    ],
)
def test_few_or_tiny_or_overlapping_small_calls_stay_inline(start_cost, call_s, expected, measured):
    decision = _tiny_decision(call_s, expected, 0.03, start_cost, **measured)
    assert decision.backend == "inline", decision.reason


# --- the Executor, with the probe's reading forced (fresh interpreters) ---------------------

DRIVER = """
import json, os, sys, threading, gilwise
from gilwise import _chooser, _first_call
from gilwise._executor import _core, _map

events = []
LOG = sys.argv[1]

def spin(x):
    with open(LOG, "a") as log:  # one line per call: no call runs twice or is dropped
        log.write(f"{x}\\n")
    total = 0
    for i in range(40_000):
        total += i
    return x

BUFFER = bytes(range(256)) * (4 << 12)

def digest(x):
    import hashlib
    with open(LOG, "a") as log:
        log.write(f"{x}\\n")
    for _ in range(3):
        hashlib.sha256(BUFFER).digest()  # releases the GIL
    return x

def forced(held_share):
    real = _first_call.run_first_call
    def run(fn, args, *, probe=True):
        first = real(fn, args, probe=probe)
        first.gil = _first_call.GilReading(held_share, 0.01, True, 8)
        events.append("first call ran")
        return first
    _map.run_first_call = run

real_prepare = _core._prepare_process_workers
def prepare(backend, scale_out, options, workers=1):
    events.append(f"workers started: {workers}")
    return real_prepare(backend, scale_out, options, workers)
_core._prepare_process_workers = prepare

real_decide = _chooser.Chooser.decide
def decide(self, *args, **kwargs):
    decision, opened = real_decide(self, *args, **kwargs)
    events.append(f"decided {decision.backend}")
    return decision, opened
_chooser.Chooser.decide = decide

real_start = threading.Thread.start
def start(self):
    events.append(f"thread {self.name}")
    return real_start(self)
threading.Thread.start = start
"""


def _driven(code: str, tmp_path) -> tuple[list[str], list[int]]:
    log = tmp_path / "calls.log"
    out = fresh_python.run(DRIVER + textwrap.dedent(code), str(log))
    calls = sorted(int(line) for line in log.read_text().split())
    return out, calls


@pytest.mark.skipif(not TWO_CORES, reason="processes pay only with 2+ cores and a GIL")
@pytest.mark.parametrize("how", ["executor", "gilwise.map"])
def test_a_first_call_that_held_the_gil_starts_the_workers_then_decides(how, tmp_path):
    run = (
        "with gilwise.Executor() as ex:\n    out = list(ex.map(spin, range(60)))\n"
        "    print(ex.explain(spin).replace(chr(10), ' | '))"
        if how == "executor"
        else "out = list(gilwise.map(spin, range(60)))\nprint('-')"
    )
    out, calls = _driven(
        "forced(0.97)\n" + run + "\nassert out == list(range(60))\nprint(json.dumps(events))\n",
        tmp_path,
    )
    events = json.loads(out[-1])
    workers = _runtime.current().cores
    threads = [event for event in events if event.startswith("thread ")]
    # The worker service's own thread only: no thread measured a pair.
    assert threads == ["thread gilwise-process-service"], events
    steps = [event for event in events if not event.startswith("thread ")]
    assert steps[:3] == ["first call ran", f"workers started: {workers}", "decided process"]
    assert calls == list(range(60))
    if how == "executor":
        assert "without a pair" in out[0] and "measured 1 real call" in out[0], out[0]


@pytest.mark.skipif(not TWO_CORES, reason="needs 2 cores to see two calls overlap")
def test_a_first_call_that_released_the_gil_decides_threads_and_forks_nothing(tmp_path):
    out, calls = _driven(
        """
        import hashlib  # as a script would at its top: the first call imports nothing
        forced(0.0)
        with gilwise.Executor() as ex:
            assert list(ex.map(digest, range(20))) == list(range(20))
            decision = ex.decisions[_chooser.label(digest)]
            print(decision.backend, decision.measured.calls, decision.measured.pair_wall_s)
        print("gilwise.backends._service" in sys.modules)
        print(json.dumps(events))
        """,
        tmp_path,
    )
    events = json.loads(out[-1])
    # Decided from the first call alone: threads, with no pair measured and nothing forked.
    assert out[0].split() == ["thread", "1", "None"], out  # one call measured, no pair
    assert out[1] == "False", out  # no zygote, no process machinery
    assert events[0] == "first call ran", events
    assert [e for e in events if e.startswith("decided")] == ["decided thread"], events
    assert not [e for e in events if e.startswith("workers started")], events
    assert calls == list(range(20))
