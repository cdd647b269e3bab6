"""backend="auto" never runs a CPU-bound function's calls in the caller beyond the few it
measures: each cause of a caller death found under fault injection (tests/stress), on
injected measurements (no timing).

A call that crashes its process (os._exit, SIGKILL, a segfault) kills the caller when it
runs there, so a function decided for processes must stay there, and a pure-Python call
must not look I/O-bound (threads) or overlapping (threads) because of something other
than the function: another thread holding the GIL, a loaded machine, the measuring itself.
"""

from __future__ import annotations

import sys
import threading

import pytest

from gilwise import _decide as verdict
from gilwise import _measure
from gilwise._chooser import Chooser, busy_pair_so_far
from gilwise._decide import TaskMeasurement
from gilwise._measure import CallSample, FunctionProbe, waiting_so_far


def _sample(wall, cpu, start=0.0, queued=0.0, others=0.0):
    """A CallSample; ``others``: seconds the process's other threads were on or waiting for
    a core meanwhile."""
    return CallSample(wall, cpu, start, start + wall, queued, others)


# --- another thread holding the GIL is not waiting for I/O ------------------------------


def test_a_call_that_slept_while_another_thread_was_busy_is_not_io():
    # Seen in the stress test: a 10 ms pure-Python call took 56 ms, 46 ms asleep, while
    # another thread of the program held the GIL (on a core, or preempted while holding it).
    alone = _sample(0.056, 0.010)
    blocked = _sample(0.056, 0.010, others=0.046)
    assert alone.cpu_share < _measure.IO_SHARE  # what it looked like before
    assert blocked.cpu_share == pytest.approx(1.0)
    assert blocked.idle_machine_wall_s == pytest.approx(0.010)


def test_other_threads_cpu_counts_only_up_to_the_calls_own_sleep():
    # A 20 ms wait for I/O with 1 ms of CPU, while another thread worked 5 ms: still waiting.
    call = _sample(0.020, 0.001, others=0.005)
    assert call.blocked_by_others_s == 0.0
    assert call.cpu_share < _measure.IO_SHARE
    # Others busy for 17 of its 18 ms of sleep, and it ran 2 of the other 3 ms: it may have
    # waited for the GIL all along.
    starved = _sample(0.020, 0.002, others=0.017)
    assert starved.blocked_by_others_s == pytest.approx(0.017)
    assert starved.cpu_share >= _measure.IO_SHARE
    # A 20 ms sleep with no CPU while new threads queued for a core (a loaded machine): the
    # call barely ran even apart from the others' time, so it stays a wait.
    sleeping = _sample(0.020, 0.00003, others=0.018)
    assert sleeping.blocked_by_others_s == 0.0
    assert sleeping.idle_machine_wall_s == pytest.approx(0.020)


def test_a_pair_that_slept_while_another_thread_held_the_gil_did_not_wait():
    # The stress test's case: one call ran alone (10 ms), the other took 56 ms for 10 ms of
    # CPU, with no run-queue wait: 46 ms asleep on a GIL that another thread held.
    # Each call's others_busy_s counts its partner's work (10 ms) and the third thread's.
    first = CallSample(0.0101, 0.010, 0.0, 0.0101, 0.0, 0.010)
    second = CallSample(0.0564, 0.010, 0.0102, 0.0666, 0.0, 0.0560)
    probe = FunctionProbe()
    probe.add_single(_sample(0.0198, 0.010, others=0.0098))
    probe.add_pair(first, second)
    decision = verdict.decide_for_task(probe.measurement())
    assert decision.backend == "process" or decision.kind == "gil-bound", decision.reason
    # Without the process clock (other threads' CPU unknown) it looked I/O-bound.
    blind = FunctionProbe()
    blind.add_single(_sample(0.0198, 0.010))
    blind.add_pair(
        CallSample(0.0101, 0.010, 0.0, 0.0101), CallSample(0.0564, 0.010, 0.0102, 0.0666)
    )
    assert verdict.decide_for_task(blind.measurement()).kind == "io-bound"


def test_a_pair_that_really_waited_is_io_bound_whatever_the_other_threads_did():
    # Two 20 ms waits with 0.1 ms of CPU each; the rest of the process was idle.
    first = CallSample(0.020, 0.0001, 0.0, 0.020, 0.0, 0.0003)
    second = CallSample(0.020, 0.0001, 0.0, 0.020, 0.0, 0.0003)
    probe = FunctionProbe()
    probe.add_pair(first, second)
    assert verdict.decide_for_task(probe.measurement()).kind == "io-bound"
    # Two 20 ms sleeps on a loaded machine, while the calls queued behind them (started
    # early on new threads) kept others busy 28 ms: the pair barely ran, it waited.
    first = CallSample(0.0386, 0.00003, 0.0, 0.0386, 0.0185, 0.0281)
    second = CallSample(0.0386, 0.00001, 0.0, 0.0386, 0.0186, 0.0282)
    probe = FunctionProbe()
    probe.add_pair(first, second)
    decision = verdict.decide_for_task(probe.measurement())
    assert (decision.kind, decision.backend) == ("io-bound", "thread"), decision.reason


class _Running:
    """A running measured call as the early peek sees it."""

    def __init__(self, sample):
        self._sample = sample

    def peek(self):
        return self._sample


def test_calls_starved_of_the_gil_are_not_judged_waiting_early():
    # 30 ms into two calls that got 1 ms of CPU each: another thread was busy 28 ms.
    starved = [
        _Running(CallSample(0.030, 0.001, 0.0, 0.030, 0.0, 0.029)),
        _Running(CallSample(0.030, 0.001, 0.0, 0.030, 0.0, 0.029)),
    ]
    assert not waiting_so_far(starved)
    waiting = [
        _Running(CallSample(0.030, 0.001, 0.0, 0.030, 0.0, 0.002)),
        _Running(CallSample(0.030, 0.001, 0.0, 0.030, 0.0, 0.002)),
    ]
    assert waiting_so_far(waiting)


# --- run-queue waits around the call's clocks --------------------------------------------


def test_run_queue_wait_is_never_more_than_the_time_off_the_cpu(monkeypatch):
    # A wait for the GIL or a core just before the start clocks (after the run-queue
    # counter was read) once counted as the call's: 16.5 ms queued in a 16.5 ms call that
    # ran 10 ms, which made two pure-Python calls look like they overlapped (1.66 cores).
    readings = iter([1.0, 1.5])
    monkeypatch.setattr(_measure, "_runqueue_wait_s", lambda native_id=None: next(readings))
    monkeypatch.setattr(_measure, "_others_busy", dict)
    start = _measure._clocks()
    sample = _measure._sample_since(start)
    assert sample.runqueue_s <= max(0.0, sample.wall_s - sample.cpu_s) + 1e-9


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="schedstat is Linux's")
def test_the_run_queue_counter_is_read_without_releasing_the_gil():
    reader = _measure._gil_holding_reader()
    if reader is None:
        pytest.skip("ctypes cannot call libc here")
    first = reader(_measure._SELF_PATH)
    assert first is not None and first[0] > 0.0 and first[1] >= 0.0
    second = _measure._runqueue_wait_s()
    assert second >= first[1]  # the same thread's counter, read two ways, only grows


def test_a_pair_judged_overlapping_only_after_taking_out_core_waits_is_not_clear_early():
    # 40 ms in, 10 ms of CPU each and 30 ms queued each: "2 cores" once the waits are taken
    # out, but together the calls never used more than one core: not clear enough to start
    # queued calls on threads in the caller before the pair finished.
    queued = [CallSample(0.040, 0.010, 0.0, 0.040, 0.030)] * 2
    assert busy_pair_so_far(queued) is None
    running = [CallSample(0.040, 0.035, 0.0, 0.040)] * 2  # 1.75 cores for real
    judged = busy_pair_so_far(running)
    assert judged is not None and judged.overlap >= 1.5


# --- once on processes, never back --------------------------------------------------------


def test_a_function_sent_to_processes_never_comes_back_to_threads(opened):
    chooser = Chooser("spin", max_workers=None)
    opened, open_backend = opened
    gil_bound = TaskMeasurement(
        wall_s=0.010, cpu_s=0.010, pair_wall_s=0.020, pair_cpu_s=0.020, calls=2
    )
    decision, _ = chooser.decide(open_backend, gil_bound, early=True)
    if decision.backend != "process":
        pytest.skip(f"processes are not available here: {decision.reason}")
    # The calls judged early finish and look I/O-bound (a load spike): decided again.
    waited = TaskMeasurement(wall_s=0.040, cpu_s=0.010, calls=2)
    decision, _ = chooser.decide(open_backend, waited)
    assert decision.backend == "process", decision.reason
    assert "never runs in this one again" in decision.reason
    assert opened == ["process", "process"]
    assert "never runs in this one again" in chooser.explain()


def test_a_function_that_cannot_be_sent_to_processes_may_run_on_threads(opened):
    chooser = Chooser("unpicklable")
    _, open_backend = opened
    gil_bound = TaskMeasurement(
        wall_s=0.010, cpu_s=0.010, pair_wall_s=0.020, pair_cpu_s=0.020, calls=2
    )
    decision, _ = chooser.decide(open_backend, gil_bound)
    if decision.backend != "process":
        pytest.skip(f"processes are not available here: {decision.reason}")
    chooser.fall_back_to_threads("it cannot be pickled")
    assert chooser.remote is None
    assert chooser.decision is not None and chooser.decision.backend == "thread"


def test_other_threads_busy_time_is_read_from_the_kernel():
    import threading
    import time

    if _measure._gil_holding_reader() is None:
        pytest.skip("no schedstat reader here")
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            pass

    before = _measure._others_busy()
    worker = threading.Thread(target=busy)
    worker.start()
    try:
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass  # this thread and the worker take turns on the GIL
        others_s = _measure._busy_since(before)
    finally:
        stop.set()
        worker.join()
    assert others_s >= 0.02  # the worker ran (or queued) while this thread waited


def test_a_call_starved_of_the_gil_between_two_peeks_is_not_judged_waiting_lately():
    chooser = Chooser("spin", pair_first=False)
    call = _Running(CallSample(0.012, 0.011, 0.0, 0.012, 0.0, 0.0))  # busy so far
    assert chooser.peek(chooser.generation, [call]) is None
    # 25 ms later: 0.5 ms more CPU, while another thread was busy 24 ms (held the GIL).
    call._sample = CallSample(0.037, 0.0115, 0.0, 0.037, 0.0, 0.024)
    assert chooser.peek(chooser.generation, [call]) is None
    # The same without the other thread: it waits now (a cold start, then I/O).
    chooser = Chooser("fetch", pair_first=False)
    call = _Running(CallSample(0.012, 0.011, 0.0, 0.012, 0.0, 0.0))
    assert chooser.peek(chooser.generation, [call]) is None
    call._sample = CallSample(0.037, 0.0115, 0.0, 0.037, 0.0, 0.0)
    judged = chooser.peek(chooser.generation, [call])
    assert judged is not None and judged.cpu_share < 0.5


# --- small work stays in this process (issue 10 item 3), but never after processes -------


def _gil_bound(per_call_s):
    return TaskMeasurement(
        wall_s=per_call_s,
        cpu_s=per_call_s,
        pair_wall_s=2 * per_call_s,
        pair_cpu_s=2 * per_call_s,
        calls=2,
    )


def _two_cores(monkeypatch):
    from gilwise import _runtime

    facts = _runtime.current()
    if facts.cores < 2 or not facts.gil_enabled:
        pytest.skip("GIL-bound work goes to processes only with 2+ cores and a GIL")


def test_small_work_stays_inline_and_explain_says_why(monkeypatch, start_cost, opened):
    _two_cores(monkeypatch)
    # bench_peers' "costly" row: 40 calls of 1 ms; processes would save 19 ms at most.
    chooser = Chooser("costly")
    chooser.expect(40)
    chooser.probe.add_pair(_sample(0.002, 0.001), _sample(0.002, 0.001))
    _, open_backend = opened
    decision, _ = chooser.decide(open_backend, _gil_bound(0.001))
    assert decision.backend == "inline", decision.reason
    assert "the work left is small: 38 calls of 1.00 ms = 38 ms" in chooser.explain()
    assert chooser.remote is None


def test_work_worth_a_start_goes_to_processes(monkeypatch, start_cost, opened):
    _two_cores(monkeypatch)
    chooser = Chooser("big")
    chooser.expect(1000)
    _, open_backend = opened
    decision, _ = chooser.decide(open_backend, _gil_bound(0.001))
    assert decision.backend == "process", decision.reason
    # Warm workers cost nothing to start: even small work goes to them.
    start_cost["s"] = 0.0
    chooser = Chooser("small-but-warm")
    chooser.expect(40)
    decision, _ = chooser.decide(open_backend, _gil_bound(0.001))
    assert decision.backend == "process", decision.reason


def test_small_work_never_comes_back_from_processes(monkeypatch, start_cost, opened):
    _two_cores(monkeypatch)
    chooser = Chooser("sent")
    _, open_backend = opened
    decision, _ = chooser.decide(open_backend, _gil_bound(0.010), early=True)
    assert decision.backend == "process"
    chooser.expect(3)  # a later map of 3 calls: small, but the function went to processes
    decision, _ = chooser.decide(open_backend, _gil_bound(0.010))
    assert decision.backend == "process", decision.reason


def test_a_map_announces_its_calls_to_auto(no_leaks, start_cost):
    import gilwise

    start_cost["s"] = 10.0  # nothing is worth a start: everything stays inline

    def square(x):
        return x * x

    # A program with threads: the map hands all 50 calls to the executor (with one thread,
    # auto runs the first call in the caller and announces 49: tests/executor/test_prefork.py).
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with gilwise.Executor() as executor:
            assert list(executor.map(square, range(50))) == [x * x for x in range(50)]
            plan = next(iter(executor._plans.values()))
            assert plan.chooser.expected_calls == 50
    finally:
        stop.set()
        other.join()


# --- overlap on a loaded machine: sleeping is what the GIL makes threads do ----------------


def _single_and_pair(single, first, second):
    probe = FunctionProbe()
    probe.add_single(single)
    probe.add_pair(first, second)
    return probe


def test_a_pair_that_ran_together_without_sleeping_overlapped_on_a_loaded_machine():
    # sha256 of 4 MiB on two threads with a CPU hog running (measured): each call waited for
    # a core a lot, so its CPU share says little (1.3 "cores"), but neither ever slept.
    probe = _single_and_pair(
        _sample(0.004, 0.004),
        CallSample(0.00842, 0.00388, 0.0, 0.00842, 0.00454),
        CallSample(0.00674, 0.00390, 0.00218, 0.00892, 0.00261),
    )
    decision = verdict.decide_for_task(probe.measurement())
    assert (decision.kind, decision.backend) == ("native-parallel", "thread"), decision.reason


def test_a_pure_python_pair_that_queued_for_cores_still_takes_turns():
    # Two 10 ms spins on a loaded machine: much of each one's wait for the GIL was spent
    # queued for a core, but together they still slept over a quarter of the time together.
    probe = _single_and_pair(
        _sample(0.010, 0.010),
        CallSample(0.0500, 0.010, 0.0, 0.0500, 0.030),
        CallSample(0.0480, 0.010, 0.002, 0.0500, 0.028),
    )
    assert probe.overlap() < 1.5
    assert verdict.decide_for_task(probe.measurement()).backend != "thread"


def test_a_pair_whose_calls_ran_one_after_the_other_is_measured_again():
    # On a loaded machine the second of two 1 ms calls often starts when the first ended.
    probe = FunctionProbe()
    probe.add_pair(_sample(0.001, 0.001, 0.0), _sample(0.001, 0.001, 0.0013))
    assert probe.next_step() == "pair"
    probe.add_pair(_sample(0.001, 0.001, 0.01), _sample(0.001, 0.001, 0.0102))
    assert probe.next_step() is None
    assert probe.overlap() == pytest.approx(2.0, abs=0.5)  # the pair that ran together
    # Tiny calls run inline whatever they overlap: one pair of them is enough.
    tiny = FunctionProbe()
    tiny.add_pair(_sample(0.00005, 0.00005, 0.0), _sample(0.00005, 0.00005, 0.0001))
    assert tiny.next_step() is None


def test_a_warm_worker_counts_against_the_start_cost(monkeypatch):
    # After Executor() forked its first worker: one of two is warm, so the work finishes
    # half a start later than with both ready at once, not a whole start.
    from gilwise import _chooser
    from gilwise.backends import _service

    monkeypatch.setattr(_service, "current", lambda: object())  # a service runs
    monkeypatch.setattr(_service, "start_cost_s", lambda: 0.060)
    monkeypatch.setattr(_service, "warm_workers", lambda: 1)
    cost_s, how = _chooser.process_start_cost_s(2)
    assert cost_s == pytest.approx(0.030)
    assert how == "the last worker start, for 1 of 2 workers (1 warm)"
    monkeypatch.setattr(_service, "warm_workers", lambda: 0)
    assert _chooser.process_start_cost_s(2) == (0.060, "the last worker start")
    monkeypatch.setattr(_service, "warm_workers", lambda: 3)
    assert _chooser.process_start_cost_s(2) == (0.0, "2 warm workers idle")


# --- a waiting call is not CPU-bound because it queued for a core (pipe3's fetch stage) ---


def test_the_run_queue_span_lies_inside_the_wall_span(monkeypatch):
    # A wait for a core at a system call's return between two readings must land inside
    # the wall time it is taken out of: read outside it, a 5 ms sleep measured 100% CPU.
    read = []

    class Clock:
        @staticmethod
        def perf_counter():
            read.append("wall")
            return 0.0

        @staticmethod
        def thread_time():
            read.append("cpu")
            return 0.0

    monkeypatch.setattr(_measure, "time", Clock)
    monkeypatch.setattr(_measure, "_runqueue_wait_s", lambda **_: read.append("queued") or 0.0)
    monkeypatch.setattr(_measure, "_others_busy", lambda: read.append("others") or {})
    call = _measure.MeasuredCall(lambda: read.append("call"))
    call()
    assert read == ["others", "wall", "cpu", "queued", "call", "queued", "cpu", "wall"]
    read.clear()
    _measure.span_since(_measure.span_start())
    assert read == ["wall", "cpu", "queued", "queued", "cpu", "wall"]


def _fetch_under_a_hog(single, first, second):
    probe = FunctionProbe()
    probe.add_single(single)
    probe.add_pair(first, second)
    return probe.measurement()


def test_a_pair_that_woke_from_waiting_and_queued_for_a_core_waited():
    # pipe3's scrape example beside one CPU hog (ms: wall, cpu, run-queue, others busy): a
    # cold first fetch whose queueing outran its wall (capped), then a warm pair that kept
    # 0.25 cores busy, not the ~1 of calls taking turns on the GIL, although one call's
    # queueing after its wake-ups made the pair "want" 0.61 cores.
    ms = 0.001
    single = CallSample(27.96 * ms, 6.70 * ms, 0.0, 27.96 * ms, 21.26 * ms, 6.74 * ms)
    first = CallSample(10.52 * ms, 0.58 * ms, 0.030, 0.030 + 10.52 * ms, 4.89 * ms, 4.71 * ms)
    second = CallSample(7.07 * ms, 0.78 * ms, 0.0302, 0.0302 + 7.07 * ms, 0.18 * ms, 0.47 * ms)
    measured = _fetch_under_a_hog(single, first, second)
    assert measured.cpu_share < _measure.IO_SHARE
    assert verdict.decide_for_task(measured).backend == "thread"
    # A costly cold first fetch (67% CPU), then a warm pair that waited: threads too.
    single = CallSample(30.59 * ms, 11.49 * ms, 0.0, 30.59 * ms, 13.39 * ms, 3.51 * ms)
    first = CallSample(9.35 * ms, 1.16 * ms, 0.040, 0.040 + 9.35 * ms, 1.75 * ms, 3.05 * ms)
    second = CallSample(11.16 * ms, 0.97 * ms, 0.040, 0.040 + 11.16 * ms, 2.08 * ms, 1.19 * ms)
    assert verdict.decide_for_task(_fetch_under_a_hog(single, first, second)).backend == "thread"


def test_calls_taking_turns_beside_hogs_still_take_turns():
    # Each call ran 80 ms of 450, queued 100 ms for a core and slept the rest (the GIL,
    # held by a partner that was often preempted): 0.64 cores busy outside the queueing.
    pair = (CallSample(0.45, 0.08, 0.0, 0.45, 0.1), CallSample(0.45, 0.08, 0.0, 0.45, 0.1))
    assert not _measure.pair_waited(pair)


def _warm_pair_after_a_cold_call(cold, first, second):
    """A pipeline stage's Chooser (one call first) fed a cold first call that looked like
    waiting, then the warm pair measured after it."""
    from gilwise._chooser import Measure
    from gilwise._measure import MeasuredCall

    chooser = Chooser("fetch", pair_first=False)
    measure = Measure(MeasuredCall(len))
    measure.call.sample = cold
    chooser.measuring = 1
    chooser.record(measure, ok=True)
    assert chooser.next_step() == "pair"
    pair = chooser.measured([len, len])
    pair[0].call.sample, pair[1].call.sample = first, second
    chooser.measuring = 2
    chooser.record(pair[0], ok=True)
    chooser.record(pair[1], ok=True)
    return chooser


def test_a_warm_pair_that_waited_is_judged_as_a_pair(opened):
    # pipe3's scrape example beside a CPU hog, 1 run in 25 after the fixes above (ms): the
    # second call of the warm pair slept 5.8 ms (the 5 ms latency) while the parse stage's
    # threads happened to be busy 5.1 ms: alone, that looked like waiting for the GIL (61%
    # CPU -> processes); judged together the pair kept 0.26 cores busy: it waited.
    ms = 0.001
    chooser = _warm_pair_after_a_cold_call(
        CallSample(16.80 * ms, 4.93 * ms, 0.0, 16.80 * ms),
        CallSample(8.28 * ms, 0.90 * ms, 0.0197, 0.0197 + 8.28 * ms, 0.38 * ms, 0.0),
        CallSample(14.48 * ms, 1.00 * ms, 0.0188, 0.0188 + 14.48 * ms, 7.71 * ms, 6.40 * ms),
    )
    assert len(chooser.probe.pairs) == 1
    decision, _ = chooser.decide(opened[1])
    assert decision.backend == "thread", decision.reason


def test_a_warm_pair_filed_as_singles_does_not_count_its_partner_as_another_thread(opened):
    # A warm pair that did not wait is filed as two singles. Each call's others_busy_s
    # counted its partner (cpu + run-queue), which is no third thread holding the GIL.
    ms = 0.001
    chooser = _warm_pair_after_a_cold_call(
        CallSample(34.72 * ms, 7.73 * ms, 0.0, 34.72 * ms, 14.08 * ms, 0.0),
        CallSample(9.0 * ms, 8.0 * ms, 0.040, 0.049, 0.5 * ms, 8.4 * ms),
        CallSample(8.5 * ms, 8.0 * ms, 0.040, 0.0485, 0.4 * ms, 8.5 * ms),
    )
    assert not chooser.probe.pairs
    filed = chooser.probe.singles[1]
    assert filed.others_busy_s == pytest.approx((8.4 - 8.0 - 0.4) * ms, abs=1e-9)


def test_a_call_that_crashed_its_worker_inside_a_chunk_never_runs_in_the_caller(no_leaks):
    # A crash inside a chunk of a map counts as a crash of a call handed over alone: the
    # function stays on processes even when a later call's argument cannot be pickled
    # (before, that call moved the function to threads in the caller, where the next
    # crashing call would kill the program).
    from executor_gates import exit_on_three

    import gilwise
    from gilwise._chooser import key
    from gilwise.errors import NotPicklableError, WorkerCrashedError

    gil_bound = TaskMeasurement(
        wall_s=0.010, cpu_s=0.010, pair_wall_s=0.020, pair_cpu_s=0.020, calls=2
    )
    with gilwise.Executor(max_workers=2) as executor:
        with executor._lock:
            plan = executor._plan_for(key(exit_on_three), exit_on_three)
            executor._decide(plan, gil_bound)
        if plan.chooser.decision.backend != "process":
            pytest.skip(f"processes are not available here: {plan.chooser.decision.reason}")
        results = executor.map(exit_on_three, range(8), chunksize=4)
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(WorkerCrashedError):
            next(results)
        assert plan.chooser.crashed
        with pytest.raises(NotPicklableError):
            executor.submit(exit_on_three, threading.Lock()).result(30)
        assert plan.lane is not None and plan.lane.name == "process"
    assert "crashed its worker process" in plan.chooser.explain()
