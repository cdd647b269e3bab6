"""The one measuring driver (gilwise._measuring) shared by the Executor and pipeline stages."""

from __future__ import annotations

import threading
from dataclasses import replace

from gilwise._chooser import Chooser
from gilwise._measure import CallSample
from gilwise._measuring import Measuring
from gilwise.errors import WorkerCrashedError

WAIT_S = 30  # hang guard only
BUSY_CALL = CallSample(0.05, 0.05, 0.0, 0.05)  # 50 ms, all of it on a CPU


class _Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.warmed = False

    def warm_up(self) -> None:
        self.warmed = True


def _driver(max_workers=None, opened=None, decided=None) -> Measuring:
    opened = [] if opened is None else opened
    decided = [] if decided is None else decided

    def open_backend(name: str, workers: int, early: bool) -> _Backend:
        opened.append(_Backend(name))
        return opened[-1]

    chooser = Chooser("f", max_workers=max_workers, pair_first=False)
    return Measuring(
        chooser,
        threading.RLock(),
        open_backend,
        lambda decision, backend, early: decided.append(backend),
    )


def test_a_pair_is_measured_only_when_two_workers_are_allowed():
    for max_workers, step in ((None, "pair"), (2, "pair"), (1, "single")):
        driver = _driver(max_workers)
        driver.chooser.probe.add_single(BUSY_CALL)  # a busy call: the Chooser asks for a pair
        assert driver.chooser.next_step() == "pair"
        assert driver.next_step() == step, max_workers


def test_the_last_measured_call_filed_decides_and_tells_the_owner_once():
    opened: list = []
    decided: list = []
    driver = _driver(opened=opened, decided=decided)
    driver.chooser.probe.add_single(BUSY_CALL)
    first, second = driver.start([len, len])
    assert driver.chooser.measuring == 2
    threads = [  # a pair starts together (a barrier): one thread each
        threading.Thread(target=measure.call, args=(text,))
        for measure, text in ((first, "ab"), (second, "abc"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not driver.finished(first, ok=True)  # its partner is still out
    assert opened == [] and decided == []
    assert driver.finished(second, ok=True)
    assert driver.chooser.measuring == 0 and driver.chooser.decision is not None
    assert decided == opened and [backend.name for backend in opened] == [
        driver.chooser.decision.backend
    ]
    # a process pool decided once the calls are in starts its workers at once
    assert opened[0].warmed == (opened[0].name == "process")


def test_a_measured_call_never_run_is_not_waited_for():
    decided: list = []
    driver = _driver(decided=decided)
    driver.start([len])
    driver.not_started()
    assert driver.chooser.measuring == 0
    assert decided == []


def test_a_finished_watch_returns_at_once_without_deciding():
    decided: list = []
    driver = _driver(decided=decided)
    (measure,) = driver.start([len])
    finished = threading.Event()
    finished.set()
    assert driver.watch([measure], finished, started_s=0.0) is False
    assert decided == []


def _decided_for(backend: str, decided: list) -> Measuring:
    driver = _driver(decided=decided)
    driver.chooser.probe.add_single(BUSY_CALL)
    decision = driver.chooser.prospect()
    driver.chooser.decide(lambda name, workers: name, decision.measured)
    driver.chooser.decision = replace(driver.chooser.decision, backend=backend)
    return driver


def test_a_crashed_worker_decides_again_for_processes_once_unless_there_already():
    crash = WorkerCrashedError("worker died (signal 9) running f")
    decided: list = []
    on_threads = _decided_for("thread", decided)
    assert on_threads.failed(crash)
    assert on_threads.chooser.decision.backend == "process"
    assert [backend.name for backend in decided] == ["process"]
    assert not on_threads.failed(crash)  # noted once: nothing more to do
    on_processes = _decided_for("process", decided)
    assert not on_processes.failed(crash)
    assert on_processes.chooser.crashed and len(decided) == 1


def test_an_ordinary_exception_decides_nothing_again():
    decided: list = []
    driver = _decided_for("thread", decided)
    assert not driver.failed(ValueError("bad input"))
    assert not driver.chooser.crashed and decided == []
