"""How a backend="auto" stage starts: it decides while its first calls still run, keeps the
pool it opened early when the finished calls agree, and starts process workers at once."""

from __future__ import annotations

import threading
from typing import Optional

from gilwise import _chooser
from gilwise._chooser import Chooser
from gilwise._decide import Decision, TaskMeasurement
from gilwise._measure import CallSample
from gilwise.backends import _process
from gilwise.pipeline import Pipeline, _channel, _stage

WAIT_S = 30  # hang guard only


def _first_waits_for_a_later_one() -> tuple:
    """A stage function whose first call waits (no CPU) until a later item's call ran;
    returns (fn, released). Run one item at a time, the first call would wait WAIT_S."""
    released = threading.Event()

    def fetch(item: int) -> object:
        if item == 0:
            return ("first", released.wait(WAIT_S))
        released.set()
        return item

    return fetch, released


def test_items_after_a_waiting_first_call_run_before_it_returns():
    fetch, _ = _first_waits_for_a_later_one()
    pipe = Pipeline(range(8)).map(fetch, name="fetch")
    assert list(pipe) == [("first", True), *range(1, 8)]
    assert pipe.stats.stage("fetch").backend == "thread"


def test_an_early_decision_that_the_finished_call_confirms_keeps_its_pool(monkeypatch):
    created: list[str] = []
    create = _stage.backends.create

    def counting_create(name, workers=None, **options):
        created.append(name)
        return create(name, workers, **options)

    monkeypatch.setattr(_stage.backends, "create", counting_create)
    fetch, _ = _first_waits_for_a_later_one()
    pipe = Pipeline(range(8)).map(fetch, name="fetch")
    assert list(pipe) == [("first", True), *range(1, 8)]
    assert created == ["thread"]


def test_an_io_stage_decided_early_runs_at_most_early_io_workers_calls_until_its_first_returns(
    monkeypatch,
):
    # The early judgement of a first call waiting asks for the 128-thread maximum (fixed here,
    # so that the test does not depend on this machine's timings); until that call returns,
    # the stage hands out only EARLY_IO_WORKERS items at a time, then as many as decided.
    waiting = TaskMeasurement(wall_s=0.1, cpu_s=0.001)
    decision = Decision("io-bound", "thread", 128, 100.0, "waits (test)", waiting)
    monkeypatch.setattr(_chooser, "decide_for_task", lambda *args, **kwargs: decision)
    later_started = threading.Semaphore(0)
    release = threading.Event()
    seen: dict[str, object] = {}
    pipe = Pipeline(range(100))

    def fetch(item: int) -> int:
        if item == 0:
            # The first call's slot counts: EARLY_IO_WORKERS - 1 later items may start.
            for _ in range(_stage.EARLY_IO_WORKERS - 1):
                assert later_started.acquire(timeout=WAIT_S)
            runner = pipe._run.runners[0]  # type: ignore[union-attr]
            seen["limit"] = runner._slots._limit
            stage = pipe.stats.stage("fetch")  # type: ignore[union-attr]
            seen["workers"], seen["reason"] = stage.workers, stage.reason
            release.set()
            return item
        later_started.release()
        assert release.wait(WAIT_S)
        return item

    pipe = pipe.map(fetch, name="fetch")
    assert list(pipe) == list(range(100))
    assert seen["limit"] == _stage.EARLY_IO_WORKERS
    assert seen["workers"] == _stage.EARLY_IO_WORKERS
    assert f"At most {_stage.EARLY_IO_WORKERS} at a time" in str(seen["reason"])
    final = pipe.stats.stage("fetch")
    assert final.backend == "thread" and final.workers == 128
    assert "At most" not in final.reason


class _ScriptedCall:
    """A measured call still running, whose peek() returns what the test set."""

    def __init__(self) -> None:
        self.now: Optional[CallSample] = None

    def peek(self) -> Optional[CallSample]:
        return self.now


def test_a_call_busy_at_first_and_waiting_since_is_judged_waiting_before_it_returns():
    chooser = Chooser("fetch", pair_first=False)
    call = _ScriptedCall()
    call.now = CallSample(0.012, 0.010, 0.0, 0.012)  # a cold start: 10 ms CPU in 12 ms
    assert chooser.peek(chooser.generation, [call]) is None
    call.now = CallSample(0.040, 0.010, 0.0, 0.040)  # no CPU since: waiting
    so_far = chooser.peek(chooser.generation, [call])
    assert so_far is not None
    decision, opened = chooser.decide(lambda name, workers: name, so_far, early=True)
    assert decision.kind == "io-bound" and opened == "thread"


def test_a_call_busy_all_along_is_not_judged_before_it_returns():
    chooser = Chooser("parse", pair_first=False)
    call = _ScriptedCall()
    for elapsed_s in (0.004, 0.012, 0.040, 0.100):
        call.now = CallSample(elapsed_s, 0.95 * elapsed_s, 0.0, elapsed_s)
        assert chooser.peek(chooser.generation, [call]) is None


def count_letters(text: str) -> int:
    return sum(1 for char in text if char.isalpha())


def _recording(method: str, events: list, cls: type):
    original = getattr(cls, method)

    def record(self, *args, **kwargs):
        events.append(method)
        return original(self, *args, **kwargs)

    return record


def test_a_stage_decided_for_processes_starts_its_workers_before_its_first_task(monkeypatch):
    gil_bound = TaskMeasurement(wall_s=0.05, cpu_s=0.05, pair_wall_s=0.1, pair_cpu_s=0.1)
    decision = Decision("gil-bound", "process", 2, 1.8, "pure Python (test)", gil_bound)
    monkeypatch.setattr(_chooser, "decide_for_task", lambda *args, **kwargs: decision)
    events: list[str] = []
    for method in ("warm_up", "submit", "submit_batch"):
        monkeypatch.setattr(
            _process.ProcessBackend, method, _recording(method, events, _process.ProcessBackend)
        )
    pipe = Pipeline(["ab1", "c2", "def", "g", "hi", "jkl3"] * 3).map(count_letters, name="parse")
    assert list(pipe) == [2, 1, 3, 1, 2, 3] * 3
    assert pipe.stats.stage("parse").backend == "process"
    assert events[0] == "warm_up" and len(events) > 1


class _RunControl:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.measure_lock = threading.Lock()
        self.errors: list[BaseException] = []

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()

    def cut_upstream(self, inbox, error: BaseException) -> None:
        self.errors.append(error)

    def add_dead_letter(self, letter) -> None:
        pass


class _MeetingLock:
    """The stage's chooser lock, except that the two measure helpers meet at a barrier
    before they take it: both measured calls have returned before either files its call."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._meet = threading.Barrier(2)
        self._met: set[threading.Thread] = set()

    def __enter__(self) -> None:
        helper = threading.current_thread()
        if helper.name == "gilwise-pipeline-measure" and helper not in self._met:
            self._met.add(helper)
            self._meet.wait(WAIT_S)
        self._lock.__enter__()

    def __exit__(self, *exc_info) -> None:
        self._lock.__exit__(*exc_info)


def test_a_measured_pair_that_returns_together_is_delivered_once_after_the_decision():
    control = _RunControl()
    inbox, outbox = _channel.Channel(8, control.stop), _channel.Channel(8, control.stop)
    runner = _stage.StageRunner(
        _stage.StageSpec("upper", "map", fn=str.upper), control, inbox, outbox
    )
    runner._choosing = runner._measuring.lock = _MeetingLock()  # type: ignore[assignment]
    runner._chooser.probe.add_single(CallSample(0.05, 0.05, 0.0, 0.05))  # a pair is next
    order: list[object] = []
    deliver, decide = runner._deliver, runner._measuring.decide
    runner._deliver = lambda task, future: (order.append(task.seq), deliver(task, future))[1]
    runner._measuring.decide = lambda *args, **kwargs: (  # type: ignore[method-assign]
        order.append("decided"),
        decide(*args, **kwargs),
    )[1]
    runner._measure([_stage._Task(1, "a"), _stage._Task(2, "b")])
    assert order == ["decided", 1, 2]
    assert runner._backend is not None and not control.errors
    runner.shutdown()


def test_a_stage_with_one_worker_never_measures_two_calls_at_once():
    # The measuring driver measures a pair only when two workers are allowed, for a stage as
    # for an Executor(max_workers=1): a stage of workers=1 used to measure a busy pair on two
    # helper threads, two calls of a function the caller asked to run one at a time.
    lock = threading.Lock()
    inside = [0]
    most = [0]

    def spin(item: int) -> int:  # local: cannot go to processes, so threads (one) run it
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        total = 0
        for step in range(200_000):  # busy, holding the GIL: a pair would be asked for
            total += step
        with lock:
            inside[0] -= 1
        return item

    pipe = Pipeline(range(8)).map(spin, workers=1, name="spin")
    assert list(pipe) == list(range(8))
    assert most[0] == 1
    assert pipe.stats.stage("spin").workers == 1
