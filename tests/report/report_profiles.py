"""Synthetic Profiles for the renderers: built by hand, so every expected number is known.

Four kinds: a 2-thread GIL-bound run, an I/O-bound run, a free-threaded run (GIL off, nothing
about the GIL measured) and one whose names are hostile to HTML, JSON and rich markup.
"""

from __future__ import annotations

from gilwise.model import FunctionStats, Profile, PythonInfo, StateSpan, ThreadStats, Verdict

SWITCH_S = 0.005  # CPython's default switch interval


def gil_bound_profile() -> Profile:
    """Two pure-Python workers taking turns on the GIL for 2 s while the main thread joins."""
    wall_s = 2.0
    timeline = []
    turns = int(wall_s / SWITCH_S)
    for turn in range(turns):
        start, end = turn * SWITCH_S, (turn + 1) * SWITCH_S
        holder, waiter = (1001, 1002) if turn % 2 == 0 else (1002, 1001)
        timeline.append(StateSpan(holder, "gil_held", start, end))
        timeline.append(StateSpan(waiter, "gil_wait", start, end))
    timeline.append(StateSpan(1000, "lock_wait", 0.0, wall_s))
    threads = (
        ThreadStats("MainThread", 1000, wall_s, 0.002, 0.001, 0.0, 0.0, 0.0, 1.998),
        ThreadStats("worker-1", 1001, wall_s, 1.002, 1.0, 1.0, 0.0, 0.0, 0.0),
        ThreadStats("worker-2", 1002, wall_s, 0.998, 1.0, 1.0, 0.0, 0.0, 0.0),
    )
    source = "/home/user/project/app/compute.py"
    functions = [FunctionStats("spin", source, 3, 1.234, 1.111)]
    functions += [
        FunctionStats(f"helper_{i}", source, 10 + i, 0.01 * i, 0.005 * i) for i in range(1, 21)
    ]
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=wall_s,
        held_fraction=0.9876,
        threads=threads,
        functions=tuple(functions),
        verdict=Verdict(
            "gil-bound",
            "process",
            1.92,
            "GIL-bound: 2 threads take turns holding the GIL. Use processes.",
        ),
        timeline=tuple(timeline),
        sample_interval_s=0.001,
        samples=2000,
        command="python spin.py",
    )


def io_profile() -> Profile:
    """Four threads sleeping on sockets, barely touching the GIL."""
    wall_s = 1.0
    threads = tuple(
        ThreadStats(f"fetch-{i}", 2000 + i, wall_s, 0.01, 0.01, 0.0, 0.0, 0.98, 0.0, 0.01)
        for i in range(4)
    )
    timeline = []
    for i in range(4):
        timeline.append(StateSpan(2000 + i, "gil_held", 0.0, 0.01))
        timeline.append(StateSpan(2000 + i, "io_wait", 0.01, 0.99))
        timeline.append(StateSpan(2000 + i, "unknown", 0.99, 1.0))
    return Profile(
        python=PythonInfo("3.12.1", "CPython", True),
        cores=2,
        wall_s=wall_s,
        held_fraction=0.04,
        threads=threads,
        functions=(FunctionStats("recv", "socket.py", 700, 0.02, 0.0, io_wait_s=3.9),),
        verdict=Verdict("io-bound", "thread", 8.0, "I/O-bound: threads overlap the waits."),
        timeline=tuple(timeline),
    )


def free_threaded_profile() -> Profile:
    """A 3.13t run with the GIL off: nothing about the GIL can be measured."""
    threads = (
        # As the probe does with the GIL off: time on a CPU counts as native (no GIL to hold).
        ThreadStats("MainThread", 3000, 1.5, 0.01, None, None, 0.01, 0.0, 1.49),
        ThreadStats("cruncher", 3001, 1.5, 1.49, None, None, 1.49, 0.0, 0.0),
    )
    return Profile(
        python=PythonInfo("3.13.0", "CPython", False),
        cores=2,
        wall_s=1.5,
        held_fraction=None,
        threads=threads,
        verdict=Verdict("serial", "thread", 1.9, "The GIL is off: threads run in parallel."),
        unavailable=("gil_held", "gil_wait"),
    )


HOSTILE_NAME = "<script>alert(\"x\" & 'y')</script>"
HOSTILE_FILE = '/tmp/we"ird & <odd>.py'
HOSTILE_MARKUP = "[bold red]not markup[/] :smile:"


def hostile_profile() -> Profile:
    """Names full of characters that HTML, JavaScript, JSON and rich markup treat specially."""
    threads = (
        ThreadStats(HOSTILE_NAME, 4000, 1.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0),
        ThreadStats(HOSTILE_MARKUP, 4001, 1.0, 0.1, 0.1, 0.0, 0.0, 0.8, 0.0),
    )
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=1.0,
        held_fraction=1.0,
        threads=threads,
        functions=(FunctionStats("<lambda>", HOSTILE_FILE, 7, 0.9, 0.0),),
        verdict=Verdict("serial", "process", 1.9, "R&D said <b>so</b>"),
        timeline=(
            StateSpan(4000, "gil_held", 0.0, 0.9),
            StateSpan(4001, "io_wait", 0.1, 0.9),
        ),
        command="python -c 'print(\"</title><script>x</script>\")'",
    )
