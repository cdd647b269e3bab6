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
from gilwise._chooser import GIL_HELD_CLEAR, Chooser, probe_more
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


def _map_sixty(how: str) -> str:
    """A driver's lines mapping spin over range(60) with Executor.map (then printing its
    explain() on one line) or gilwise.map (then "-")."""
    return (
        "with gilwise.Executor() as ex:\n    out = list(ex.map(spin, range(60)))\n"
        "    print(ex.explain(spin).replace(chr(10), ' | '))"
        if how == "executor"
        else "out = list(gilwise.map(spin, range(60)))\nprint('-')"
    )


@pytest.mark.skipif(not TWO_CORES, reason="processes pay only with 2+ cores and a GIL")
@pytest.mark.parametrize("how", ["executor", "gilwise.map"])
def test_a_first_call_that_held_the_gil_starts_the_workers_then_decides(how, tmp_path):
    run = _map_sixty(how)
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


# --- several first calls, when one is too short for the probe ---------------------------------

HELD_LATE_S = 0.9 * _first_call.PROBE_SWITCH_S  # a wake-up kept waiting by a call holding the GIL
needs_schedstat = pytest.mark.skipif(
    not _first_call._SCHEDSTAT_OK, reason="a clear reading needs Linux run-queue counters"
)


def _one_wake(late_s=HELD_LATE_S, call_s=0.001):
    return _first_call._reading([late_s], call_s, call_s)


@needs_schedstat
def test_the_readings_of_calls_run_one_after_another_add_up():
    one = _one_wake()
    assert not one.clear and one.wakes == 1  # one wake-up alone says nothing
    both = _first_call.merged([one, _one_wake()])
    assert both.clear and both.wakes == 2 and both.held_share == 1.0
    assert both.window_s == pytest.approx(0.002)
    mixed = _first_call.merged([one, _one_wake(late_s=0.0)])  # one held, one free
    assert not mixed.clear and mixed.held_share == 0.5
    starved = _one_wake()
    starved.starved = True  # its call's thread waited for a core: a busy machine
    assert not _first_call.merged([one, starved]).clear
    assert _first_call.merged([one, None]) is None  # a call ran without the probe
    assert _first_call.merged([one]) is one


@needs_schedstat
@pytest.mark.parametrize(
    ("walls", "readings", "imported", "failed", "more"),
    [
        ([0.0015], [_one_wake()], False, False, True),  # busy, 1 wake-up: run another here
        ([0.0015, 0.0015], [_one_wake(), _one_wake()], False, False, False),  # clear now
        ([0.0015], [_one_wake()], False, True, False),  # it raised: a pair, as before
        ([0.0015], [None], False, False, False),  # no probe (other threads run Python)
        ([0.0006], [_one_wake()], False, False, False),  # 0.3-1 ms busy: decided without it
        ([0.00002], [_one_wake()], False, False, False),  # tiny: decided inline
        ([0.004, 0.004], [_one_wake(), _one_wake(late_s=0.0)], False, False, False),  # 6 ms spent
        ([0.02], [_one_wake()], True, False, False),  # a long cold call: a pair, as before
        ([0.003], [_one_wake()], True, False, True),  # a short cold call: one warm call next
    ],
)
def test_when_the_caller_runs_one_more_first_call(walls, readings, imported, failed, more):
    samples = [_sample(wall_s) for wall_s in walls]
    assert probe_more(samples, readings, imported=imported, failed=failed) is more


@needs_schedstat
def test_waiting_or_starved_calls_leave_it_to_a_pair():
    waiting = _sample(0.002, cpu_s=0.0002)  # mostly waiting: a pair's peeks tell
    assert not probe_more([waiting], [_one_wake()], imported=False, failed=False)
    starved = _one_wake()
    starved.starved = True
    assert not probe_more([_sample(0.002)], [starved], imported=False, failed=False)


def test_the_chooser_decides_from_several_first_calls(start_cost):
    chooser = Chooser("coarse")
    chooser.expect(120)
    merged = _Reading(0.95)
    merged.wakes = 2
    measured = chooser.first_call(_sample(0.002), merged, before=(_sample(0.004),))
    assert measured is not None and measured.calls == 2
    assert measured.wall_s == pytest.approx(0.003)  # the calls' mean
    assert chooser.calls_done == 2 and chooser.probe.calls == 2  # both filed: never run again
    assert "decided from its first 2 calls" in " ".join(chooser.notes)
    # A cold first call and a warm one: the warm one decides.
    cold = Chooser("coarse")
    measured = cold.first_call(_sample(0.002), merged, imported=True, before=(_sample(0.05),))
    assert measured is not None and measured.wall_s == pytest.approx(0.002)


FORCED_WAKES = """
def wakes_each(lateness):
    real = _first_call.run_first_call
    def run(fn, args, *, probe=True):
        first = real(fn, args, probe=probe)
        first.gil = _first_call._reading(list(lateness), first.sample.wall_s, first.sample.wall_s)
        events.append("first call ran")
        return first
    _map.run_first_call = run
"""
UNCLEAR_FIRST_CALLS = (
    FORCED_WAKES
    + "_chooser.PROBE_MORE_S = 10.0  # however slow this machine is today\n"
    + "wakes_each([0.00045])  # one held wake-up each: unclear alone; two add up to clear\n"
)


@needs_schedstat
@pytest.mark.skipif(not TWO_CORES, reason="processes pay only with 2+ cores and a GIL")
@pytest.mark.parametrize("how", ["executor", "gilwise.map"])
def test_an_unclear_first_call_is_followed_by_another_here_not_by_a_pair(how, tmp_path):
    run = _map_sixty(how)
    out, calls = _driven(
        UNCLEAR_FIRST_CALLS
        + run
        + "\nassert out == list(range(60)), out\nprint(json.dumps(events))\n",
        tmp_path,
    )
    events = json.loads(out[-1])
    # Two calls run here, their readings added up: held, so processes, and no pair on threads.
    threads = [event for event in events if event.startswith("thread ")]
    assert threads == ["thread gilwise-process-service"], events
    steps = [event for event in events if not event.startswith("thread ")]
    workers = _runtime.current().cores
    assert steps[:4] == [
        "first call ran",
        "first call ran",
        f"workers started: {workers}",
        "decided process",
    ], steps
    assert calls == list(range(60))  # each once
    if how == "executor":
        assert "decided from its first 2 calls" in out[0] and "measured 2 real calls" in out[0]


@pytest.mark.parametrize("how", ["executor", "gilwise.map"])
def test_a_later_first_call_that_raises_is_delivered_in_order(how, tmp_path):
    make = "gilwise.Executor().map" if how == "executor" else "gilwise.map"
    out, calls = _driven(
        UNCLEAR_FIRST_CALLS
        + textwrap.dedent(
            f"""
            def spin_or_fail(x):
                if x == 1:
                    with open(LOG, "a") as log:
                        log.write(f"{{x}}\\n")
                    raise ValueError("input one")
                return spin(x)
            got = []
            try:
                for value in {make}(spin_or_fail, range(10)):
                    got.append(value)
            except ValueError as error:
                print(got, error, getattr(error, "gilwise_index", None))
            print(json.dumps(events))
            """
        ),
        tmp_path,
    )
    # The first call ran here, the second too (the probe could not tell yet) and raised: the
    # first result is yielded, then the error, named as input #1; nothing ran twice.
    assert out[0] == "[0] input one 1", out
    assert json.loads(out[-1])[:2] == ["first call ran", "first call ran"]
    assert calls == sorted(set(calls)) and calls[:2] == [0, 1]


@needs_schedstat
def test_several_busy_calls_the_probe_cannot_read_are_decided_as_cpu_work(start_cost):
    start_cost["s"] = 0.03
    unclear = _first_call._reading([HELD_LATE_S, 0.0, HELD_LATE_S, 0.0], 0.02, 0.02)
    assert not unclear.clear  # half held, half free: the probe cannot tell
    many = Chooser("mixed")
    many.expect(80)
    # Ten calls ran here (one of 20 ms among 0.3 ms ones): 2.27 ms each on average.
    before = (*[_sample(0.0003) for _ in range(8)], _sample(0.02))
    measured = many.first_call(_sample(0.0003), unclear, before=before)
    assert measured is not None and measured.calls == 10
    assert measured.wall_s == pytest.approx(0.00227)
    assert "the GIL probe could not tell" in " ".join(many.notes)
    if TWO_CORES:  # 70 calls of 2.27 ms left: processes pay
        assert many.prospect(measured).backend == "process"
    few = Chooser("mixed")
    few.expect(12)  # 2 calls left: not worth a start
    assert (
        few.prospect(few.first_call(_sample(0.002), unclear, before=(_sample(0.002),))).backend
        == "inline"
    )
    # One call alone, or one cold and one warm call: a pair tells, as before.
    assert Chooser("f").first_call(_sample(0.002), unclear) is None
    cold = Chooser("f")
    assert cold.first_call(_sample(0.002), unclear, imported=True, before=(_sample(0.03),)) is None


NEVER_CLEAR = (
    FORCED_WAKES + "wakes_each([0.00045, 0.0])  # one held, one free each: never a clear reading\n"
)


@needs_schedstat
@pytest.mark.skipif(not TWO_CORES, reason="processes pay only with 2+ cores and a GIL")
def test_busy_first_calls_the_probe_never_reads_go_to_processes_without_a_pair(tmp_path):
    code = """
        _chooser.PROBE_MORE_S, _chooser.PROBE_MORE_CALLS = 10.0, 3  # whatever this machine's speed
        def spin_long(x):  # ~5 ms here: over 1 ms on any machine
            with open(LOG, "a") as log:
                log.write(f"{x}\\n")
            total = 0
            for i in range(200_000):
                total += i
            return x
        with gilwise.Executor() as ex:
            out = list(ex.map(spin_long, range(60)))
            print(ex.explain(spin_long).replace(chr(10), " | "))
        assert out == list(range(60)), out
        print(json.dumps(events))
    """
    out, calls = _driven(NEVER_CLEAR + textwrap.dedent(code), tmp_path)
    events = json.loads(out[-1])
    threads = [event for event in events if event.startswith("thread ")]
    assert threads == ["thread gilwise-process-service"], events  # no pair on threads
    steps = [event for event in events if not event.startswith("thread ")]
    assert steps[:5] == [
        "first call ran",
        "first call ran",
        "first call ran",  # PROBE_MORE_CALLS
        f"workers started: {_runtime.current().cores}",
        "decided process",
    ], steps
    assert "the GIL probe could not tell" in out[0], out[0]
    assert calls == list(range(60))


@needs_schedstat
def test_a_first_call_a_little_under_the_small_bound_on_threads_still_decides_alone():
    # 0.3 ms calls read 0.25-0.30 ms in the caller (threads add ~0.1 ms of measuring): such a
    # call decides from itself, as a 0.3 ms one does, instead of probing on through the
    # calls after it (the mixed row: on into its first 20 ms call).
    assert not probe_more([_sample(0.00026)], [_one_wake()], imported=False, failed=False)
    chooser = Chooser("mixed")
    chooser.expect(80)
    measured = chooser.first_call(_sample(0.00026), _one_wake())
    assert measured is not None and measured.calls == 1
    assert chooser.prospect(measured).backend == "inline"  # 21 ms of work left: stays here
    assert probe_more([_sample(0.0001)], [_one_wake()], imported=False, failed=False)
