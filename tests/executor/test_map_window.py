"""The map window on process workers: tasks that finish behind a long one at the front free
their places in the window (buffersize "auto"), so the other workers are not left idle
while the consumer waits for the front (issue 10, bench_peers' "mixed" row: a 20 ms call at
the front, 0.3 ms calls behind it, and one worker idle until the front returned).

Tasks are held with a FileGate (works across processes), never with sleeps: each test says
what the window must have read while the front task was still held.
"""

from __future__ import annotations

import pytest
from executor_gates import FileGate, wait_then

import gilwise
from gilwise import _chooser
from gilwise._decide import TaskMeasurement
from gilwise._executor import _map

# buffersize "auto" on 2 workers: 4 unfinished tasks, 4 x FINISHED_AHEAD in the window.
WORKERS = 2
LIMIT = max(4, 2 * WORKERS)


def _gates(front_gate, open_gate, count, read, at_read):
    """The gates of ``count`` calls: #0 waits for ``front_gate``, the others return at
    once. Each read index is appended to ``read``; ``at_read(index)`` runs as it is read."""
    for index in range(count):
        read.append(index)
        at_read(index)
        yield front_gate if index == 0 else open_gate


@pytest.fixture
def gates(tmp_path):
    open_gate = FileGate(str(tmp_path / "open"))
    open_gate.open()
    return FileGate(str(tmp_path / "front")), open_gate


def _process_executor(how):
    if how == "process":
        return gilwise.Executor("process", max_workers=WORKERS)
    # auto, for a function an earlier Executor of this program sent to processes: it
    # decides so at its first task, with nothing measured (Chooser.recall).
    measured = TaskMeasurement(wall_s=0.02, cpu_s=0.02, calls=2)
    with _chooser._memory_lock:
        _chooser._memory[_chooser.key(wait_then)] = _chooser._Remembered(
            measured, "process", "process", False
        )
    return gilwise.Executor(max_workers=WORKERS)


@pytest.mark.parametrize("how", ["process", "auto"])
def test_tasks_finished_behind_a_held_front_let_the_window_read_on(
    how, gates, monkeypatch, no_leaks
):
    # With the window counting every task it holds, it read 4 inputs and stopped: the
    # workers idled until the front returned. Here the front is held until the window has
    # read as many inputs as its cap allows, which it can only do while the front is held.
    front, open_gate = gates
    cap = _map.FINISHED_AHEAD * LIMIT
    read: list[int] = []
    consumed = [0]
    held = []  # tasks in the window before each task was added
    submit_one = _map._Window._submit_one

    def counted(self):
        held.append(len(self.window))
        return submit_one(self)

    monkeypatch.setattr(_map._Window, "_submit_one", counted)

    def at_read(index):
        if index == cap - 1:
            front.open()  # every place but the front's was freed by a finished task

    with _process_executor(how) as executor:
        gates_read = _gates(front, open_gate, 3 * cap, read, at_read)
        results = executor.map(wait_then, gates_read, range(3 * cap), chunksize=1)
        for position, value in enumerate(results):
            assert value == position
            consumed[0] += 1
    assert consumed[0] == 3 * cap
    assert read == list(range(3 * cap)), "an input was read twice or skipped"
    if how == "auto":
        assert executor.decisions[_chooser.label(wait_then)].backend == "process"
    assert max(held) == cap - 1, f"the window held more than {cap} tasks"


def test_lazy_chunks_read_ahead_are_joined_in_order_and_only_when_adjacent():
    # Planned again for a new backend, the lazy chunks read ahead become one run of inputs
    # (chunks sized for the new backend), in order; a task (with a future) or a gap keeps
    # them apart, and nothing is lost or repeated.
    from concurrent.futures import Future

    lazy = _map._Entry
    task = lazy(Future(), True, 40, list(range(40, 50)))
    entries = [
        lazy(None, True, 0, range(0, 8)),
        lazy(None, True, 8, range(8, 40)),
        task,
        lazy(None, True, 50, ["a", "b"]),
        lazy(None, True, 52, ["c"]),
        lazy(None, True, 60, ["d"]),
    ]
    joined = _map._joined(entries)
    assert [(entry.first, entry.inputs) for entry in joined] == [
        (0, range(0, 40)),
        (40, list(range(40, 50))),
        (50, ["a", "b", "c"]),
        (60, ["d"]),
    ]
    assert joined[1] is task
