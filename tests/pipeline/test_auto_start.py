"""How a backend="auto" stage starts: it decides while its first calls still run, keeps the
pool it opened early when the finished calls agree, and starts process workers at once."""

from __future__ import annotations

import threading
from typing import Optional

from gilwise import _chooser
from gilwise._chooser import Chooser
from gilwise._measure import CallSample
from gilwise._verdict import Decision, TaskMeasurement
from gilwise.backends import _process
from gilwise.pipeline import Pipeline, _stage

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
