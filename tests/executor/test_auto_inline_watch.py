"""backend="auto" watches calls it decided to run inline: their running mean per call can
decide again (issue 10, bench_peers' "mixed" row: first calls of 0.3 ms, every tenth call
20 ms, so the long calls are most of the work and the first calls told nothing of them).

Inline calls run in the consumer's thread as lazy chunks, with no task to time them; the
map window times each chunk and reports it to the Chooser (``Chooser.ran_inline``). The
Chooser tests use injected timings (no clock); the map tests inject the time of the long
calls into the timer the window uses, and check that no call runs twice when the function
moves to another backend mid-map.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import gilwise
from gilwise import _chooser, _runtime
from gilwise._chooser import Chooser
from gilwise._decide import TaskMeasurement
from gilwise._executor import _map
from gilwise._measure import TimedCalls

SMALL_S = 0.0003
LARGE_S = 0.020


def _tiny(calls=2, call_s=SMALL_S):
    return TaskMeasurement(wall_s=call_s, cpu_s=call_s, calls=calls)


@pytest.fixture
def start_cost(start_cost):
    """Starting process workers costs 20 ms here (a worker forked from a warm zygote)."""
    start_cost["s"] = 0.02
    return start_cost


@pytest.fixture
def two_cores():
    facts = _runtime.current()
    if facts.cores < 2 or not facts.gil_enabled:
        pytest.skip("GIL-bound work goes to processes only with 2+ cores and a GIL")


def _inline_chooser(opened, expected=None, call_s=SMALL_S):
    """A Chooser that decided inline from a measured pair of 0.3 ms calls."""
    chooser = Chooser("mixed")
    if expected is not None:
        chooser.expect(expected)
    _, open_backend = opened
    decision, _ = chooser.decide(open_backend, _tiny(call_s=call_s))
    assert decision.backend == "inline", decision.reason
    chooser.calls_done = 2  # the measured pair
    return chooser, open_backend


def _chunk(small, large=0):
    """(calls, wall s) of a chunk of ``small`` 0.3 ms calls and ``large`` 20 ms calls."""
    return small + large, small * SMALL_S + large * LARGE_S


# --- the Chooser, on injected timings ------------------------------------------------------


def test_long_calls_among_inline_ones_decide_again_for_processes(start_cost, two_cores, opened):
    chooser, open_backend = _inline_chooser(opened, expected=80)
    calls, wall_s = _chunk(7)
    assert chooser.ran_inline(calls, wall_s, wall_s, timed=True) is None  # still tiny
    calls, wall_s = _chunk(6, 1)  # the tenth call: 20 ms
    measured = chooser.ran_inline(calls, wall_s, wall_s, timed=True)
    assert measured is not None
    # The running mean of every call so far: 2 + 7 + 7 calls, one of them 20 ms.
    assert measured.wall_s == pytest.approx((15 * SMALL_S + LARGE_S) / 16)
    assert measured.calls == 16
    decision, _ = chooser.decide(open_backend, measured)
    assert decision.backend == "process", decision.reason
    assert "decided again after 16 calls ran inline at 1.53 ms per call" in chooser.explain()
    assert chooser.remote == "process"


def test_a_rare_long_call_keeps_the_function_inline(start_cost, two_cores, opened):
    # One 20 ms call in 196, after the first hundred calls: the running mean stays under
    # a millisecond (tiny). (A long call among the very first ones moves the function; for
    # CPU-bound work worth a start that is no loss: chunked, processes run it ~2x.) Input
    # of unknown length: a sized one this long goes to processes at once (many calls).
    chooser, _ = _inline_chooser(opened)
    for number in range(1, 57):
        calls, wall_s = _chunk(7) if number % 28 else _chunk(6, 1)
        assert chooser.ran_inline(calls, wall_s, wall_s, timed=True) is None, number
    assert chooser.decision.backend == "inline"


def test_small_work_left_stays_inline(start_cost, two_cores, opened):
    # 24 calls in all: after the first long call, 8 calls are left (~17 ms of work at the
    # running mean): two processes would save ~8 ms, less than their 20 ms start.
    chooser, _ = _inline_chooser(opened, expected=24)
    calls, wall_s = _chunk(6)
    assert chooser.ran_inline(calls, wall_s, wall_s, timed=True) is None
    calls, wall_s = _chunk(7, 1)
    assert chooser.ran_inline(calls, wall_s, wall_s, timed=True) is None
    start_cost["s"] = 0.0  # warm workers idle: nothing to start
    calls, wall_s = _chunk(1)
    assert chooser.ran_inline(calls, wall_s, wall_s, timed=True) is not None


def test_input_of_unknown_length_waits_until_the_work_so_far_would_pay_a_start(
    start_cost, two_cores, opened
):
    # Unknown length: as much work again as ran inline may come. A 50 ms start is worth it
    # once two processes would have saved more than that on the work so far.
    start_cost["s"] = 0.05
    chooser, _ = _inline_chooser(opened)
    decided_after = None
    for number in range(1, 20):
        calls, wall_s = _chunk(9, 1)
        if chooser.ran_inline(calls, wall_s, wall_s, timed=True) is not None:
            decided_after = number
            break
    # (2 + 10n) calls: 20.5n ms ran inline after n chunks; half of it saved > 50 ms at n = 5.
    assert decided_after == 5


def test_waits_for_a_core_are_not_the_calls_time(start_cost, two_cores, opened):
    # A loaded machine: 7 calls of 0.3 ms took 23 ms, 21 ms of it queued for a core.
    chooser, _ = _inline_chooser(opened, expected=60)
    calls, cpu_s = _chunk(7)
    wall_s = cpu_s + 0.021
    assert chooser.ran_inline(calls, wall_s, cpu_s, 0.021, timed=True) is None
    # The same without the queueing is long calls that wait: threads.
    measured = chooser.ran_inline(calls, wall_s, cpu_s, 0.0, timed=True)
    assert measured is not None and measured.cpu_share < 0.5
    decision, _ = chooser.decide(opened[1], measured)
    assert decision.backend == "thread", decision.reason


def test_untimed_chunks_only_ever_ask_for_a_re_measure(start_cost, two_cores, opened):
    # Chunks of tiny calls are timed by their span, the consumer's time included: a slow
    # consumer must not send tiny calls elsewhere. A lasting change asks for a re-measure
    # (real calls measured again), never a decision from the span. (20 us calls: many of
    # them go to processes at once only from 0.3 ms, SMALL_CALL_MIN_S.)
    chooser, _ = _inline_chooser(opened, expected=100_000, call_s=0.00002)
    for _ in range(15):
        assert chooser.ran_inline(10, 0.030, 0.030, timed=False) is None
        assert not chooser.deciding
    assert chooser.ran_inline(10, 0.030, 0.030, timed=False) is None
    assert chooser.deciding  # the 16th chunk: 3 ms per call against 0.3 measured
    assert "re-measured after calls took 3.00 ms against 0.02 ms" in "\n".join(chooser.notes)


def test_lazy_chunks_last_about_ten_milliseconds(opened):
    chooser, _ = _inline_chooser(opened)
    assert chooser.lazy_chunksize() == 34  # 0.3 ms calls
    assert chooser.times_inline_calls()
    # ... and a call four times as long, at least a millisecond, ends its chunk
    assert chooser.long_inline_call_s() == pytest.approx(0.0012)
    chooser.per_call_s = 0.0001
    assert chooser.long_inline_call_s() == 0.001
    chooser.per_call_s = 0.001
    assert chooser.lazy_chunksize() == 10
    assert chooser.long_inline_call_s() == pytest.approx(0.004)
    chooser.per_call_s = 1e-7  # x + 1
    assert chooser.lazy_chunksize() == _chooser.MAX_LAZY_CHUNKSIZE
    assert not chooser.times_inline_calls()  # 0.3 us of timing per call would double it
    chooser.per_call_s = 0.02
    assert chooser.lazy_chunksize() == 1


def test_timed_calls_leave_out_the_time_between_calls():
    timer = TimedCalls(lambda x: x + 1)
    results = map(timer, range(3))
    assert next(results) == 1
    time.sleep(0.05)  # the consumer's time
    assert list(results) == [2, 3]
    assert timer.calls == 3
    assert timer.wall_s < 0.02


# --- the map window: lazy chunks not started go to the new backend -------------------------


def log_call(path_and_item):
    """A tiny call that leaves a line per call (in whichever process runs it)."""
    path, item = path_and_item
    with open(path, "a") as log:
        log.write(f"{item}\n")
    return item * 2


class _FakeClock:
    """The map window's clocks, with every tenth call 20 ms long on paper and the others
    0.3 ms more than they took (a call that writes a line takes ~20 us: lazy chunks of
    such calls go untimed, and a long one among them would go unseen)."""

    def __init__(self, cpu_too):
        self.cpu_too = cpu_too
        self.extra_s = 0.0
        self.lock = threading.Lock()

    def timed_calls(self, fn):
        clock = self

        class Timed(TimedCalls):
            __slots__ = ()

            def __call__(self, /, *args):
                result = TimedCalls.__call__(self, *args)
                extra_s = LARGE_S if args[0][1] % 10 == 9 else SMALL_S
                self.wall_s += extra_s
                if clock.cpu_too:
                    with clock.lock:
                        clock.extra_s += extra_s
                return result

        return Timed(fn)

    def span_start(self):
        return time.perf_counter(), time.thread_time() + self.extra_s

    def span_since(self, start):
        wall0, cpu0 = start
        return time.perf_counter() - wall0, time.thread_time() + self.extra_s - cpu0, 0.0


def _fake_clock(monkeypatch, start_cost, cpu_too):
    """The map window's clocks say every tenth call took 20 ms (of CPU if ``cpu_too``);
    starting processes costs nothing."""
    clock = _FakeClock(cpu_too)
    monkeypatch.setattr(_map, "TimedCalls", clock.timed_calls)
    monkeypatch.setattr(_map, "span_start", clock.span_start)
    monkeypatch.setattr(_map, "span_since", clock.span_since)
    start_cost["s"] = 0.0


def _decided_inline(executor):
    """log_call's plan, decided from its first calls only (no measuring noise): inline."""
    plan_key = _chooser.key(log_call)
    executor._expect_calls(plan_key, log_call, 0)
    plan = executor._plans[plan_key]
    with executor._lock:
        executor._decide(plan, _tiny(calls=0))
    assert plan.lane.name == "inline"
    return plan


@pytest.mark.parametrize("cpu_too", [True, False], ids=["cpu-bound:process", "waiting:thread"])
def test_a_function_decided_again_mid_map_runs_each_call_once(
    monkeypatch, tmp_path, no_leaks, start_cost, two_cores, cpu_too
):
    _fake_clock(monkeypatch, start_cost, cpu_too)
    log = str(tmp_path / "calls.log")
    items = [(log, item) for item in range(400)]
    with gilwise.Executor() as executor:
        plan = _decided_inline(executor)
        results = list(executor.map(log_call, items))
        chooser = plan.chooser
    assert results == [2 * item for item in range(400)]
    with open(log) as lines:
        ran = sorted(int(line) for line in lines)
    assert ran == list(range(400)), "a call ran twice or never"
    notes = "\n".join(chooser.notes)
    if cpu_too:
        assert chooser.decision is not None and chooser.decision.backend == "process", notes
        assert "the work left is worth process" in notes
    else:
        # On threads the calls take their real (tiny) time, so the drift watch may have
        # re-measured them since (and brought them back inline): both moves plan the lazy
        # chunks not yet started again.
        assert "the work left is worth thread" in notes


def test_every_lazy_chunk_read_ahead_moves_to_the_new_backend_at_once(
    monkeypatch, tmp_path, no_leaks, start_cost, two_cores
):
    # Moved one at a time, as each reached the front of the window, the process workers got
    # one chunk's calls at a time and idled while the consumer waited for them.
    _fake_clock(monkeypatch, start_cost, cpu_too=True)
    consumed = [0]
    planned_at = []
    lazy_joined = []
    plan_again = _map._Window._plan_again
    joined = _map._joined

    def record(self, entry):
        planned_at.append(consumed[0])
        return plan_again(self, entry)

    def record_joined(entries):
        lazy_joined.append(sum(entry.future is None for entry in entries))
        return joined(entries)

    monkeypatch.setattr(_map._Window, "_plan_again", record)
    monkeypatch.setattr(_map, "_joined", record_joined)
    log = str(tmp_path / "calls.log")
    with gilwise.Executor() as executor:
        _decided_inline(executor)
        for value in executor.map(log_call, [(log, item) for item in range(400)]):
            assert value == 2 * consumed[0]
            consumed[0] += 1
    assert lazy_joined, "the decision never changed"
    assert lazy_joined[0] >= 2, "expected lazy chunks read ahead when the decision changed"
    # ... planned again at once, as one whole (chunks for the new backend from all of their
    # inputs, not each old chunk split on its own).
    assert len(planned_at) == 1, planned_at


def log_where(path_and_item):
    """A tiny call that leaves a line per call: its input and the process that ran it."""
    path, item = path_and_item
    with open(path, "a") as log:
        log.write(f"{item} {os.getpid()}\n")
    return item * 2


@pytest.mark.parametrize("sized", [True, False], ids=["list", "generator"])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "as-completed"])
def test_a_long_call_ends_its_lazy_chunk_and_no_later_call_runs_here(
    ordered, sized, monkeypatch, tmp_path, no_leaks, start_cost, two_cores
):
    # Lazy chunks last ~10 ms (34 calls of 0.3 ms): the first 20 ms call (input #9) ends
    # its chunk, the watch weighs it at once and sends the rest to processes. With the
    # chunk run to its end, inputs #10-#38 ran here after it. (A list's lazy chunks are
    # ranges of its indices, a generator's are lists of its items: the calls after the
    # long one are planned again from either.)
    _fake_clock(monkeypatch, start_cost, cpu_too=True)
    plan_key = _chooser.key(log_where)
    log = str(tmp_path / "calls.log")
    with gilwise.Executor() as executor:
        with executor._lock:
            plan = executor._plan_for(plan_key, log_where)
            executor._decide(plan, _tiny(calls=0))
        assert plan.chooser.lazy_chunksize() > 10
        items = [(log, item) for item in range(200)]
        inputs = (items if sized else iter(items),)
        results = list(
            _map.map_results(executor, log_where, inputs, None, "auto", "auto", ordered=ordered)
        )
        assert executor.decisions[_chooser.label(log_where)].backend == "process"
    if not ordered:
        results.sort()
    assert results == [2 * item for item in range(200)]
    with open(log) as lines:
        ran = [tuple(map(int, line.split())) for line in lines]
    assert sorted(item for item, _ in ran) == list(range(200)), "a call ran twice or never"
    here = sorted(item for item, pid in ran if pid == os.getpid())
    assert here == list(range(10)), here
