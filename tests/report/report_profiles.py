"""Synthetic Profiles for the renderers: built by hand, so every expected number is known.

Five kinds: a 2-thread GIL-bound run, an I/O-bound run, a free-threaded run (GIL off, nothing
about the GIL measured), one whose names are hostile to HTML, JSON and rich markup, and a
schema /2 run with call stacks, a contended lock and a child process (``stacked_profile``).
"""

from __future__ import annotations

from gilwise._model import (
    Frame,
    FunctionStats,
    LockStats,
    Profile,
    PythonInfo,
    StackStats,
    StateSpan,
    ThreadStats,
    Verdict,
)

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
        stacks=(
            StackStats(4000, "gil_held", (Frame(HOSTILE_NAME, HOSTILE_FILE, 7),), 0.9, 900),
            StackStats(4001, "io_wait", (Frame("</script><!--", HOSTILE_FILE, 8),), 0.8, 800),
        ),
        verdict=Verdict("serial", "process", 1.9, "R&D said <b>so</b>"),
        timeline=(
            StateSpan(4000, "gil_held", 0.0, 0.9),
            StateSpan(4001, "io_wait", 0.1, 0.9),
        ),
        command="python -c 'print(\"</title><script>x</script>\")'",
    )


APP = "/home/user/project/app/main.py"
THREADING = "/usr/lib/python3.11/threading.py"
BOOT = Frame("_bootstrap", THREADING, 995)
RUN = Frame("run", THREADING, 975)
WORK = Frame("work", APP, 20)
SPIN = Frame("spin", APP, 5)
DIGEST = Frame("digest", APP, 30)
FETCH = Frame("fetch", APP, 40)
MODULE = Frame("<module>", APP, 50)
JOIN = Frame("join", THREADING, 1100)


def stacked_profile() -> Profile:
    """Schema /2: two workers sharing the GIL with known stacks, a main thread joining them,
    one contended lock and one child process.

    worker-1 (1001): held 1.0 s (spin 0.8, work itself 0.2), waits 0.9 s in spin, native 0.1
    s in digest. worker-2 (1002): held 0.9 s in spin, waits 1.0 s (0.6 s in spin, 0.4 s with
    no stack read), I/O 0.1 s in fetch. MainThread (1000): held 0.1 s at module level, then
    joins for 1.9 s.
    """
    wall_s = 2.0
    threads = (
        ThreadStats("MainThread", 1000, wall_s, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, join_wait_s=1.9),
        ThreadStats("worker-1", 1001, wall_s, 1.1, 1.0, 0.9, 0.1, 0.0, 0.0),
        ThreadStats("worker-2", 1002, wall_s, 0.9, 0.9, 1.0, 0.0, 0.1, 0.0),
    )
    stacks = (
        StackStats(1000, "gil_held", (MODULE,), 0.1, 100),
        StackStats(1000, "join_wait", (MODULE, JOIN), 1.9, 1900),
        StackStats(1001, "gil_held", (BOOT, RUN, WORK, SPIN), 0.8, 800),
        StackStats(1001, "gil_held", (BOOT, RUN, WORK), 0.2, 200),
        StackStats(1001, "gil_wait", (BOOT, RUN, WORK, SPIN), 0.9, 900),
        StackStats(1001, "native", (BOOT, RUN, WORK, DIGEST), 0.1, 100),
        StackStats(1002, "gil_held", (BOOT, RUN, WORK, SPIN), 0.9, 900),
        StackStats(1002, "gil_wait", (BOOT, RUN, WORK, SPIN), 0.6, 600),
        StackStats(1002, "io_wait", (BOOT, RUN, FETCH), 0.1, 100),
    )
    timeline = []
    turns = int(1.8 / SWITCH_S)
    for turn in range(turns):
        start, end = turn * SWITCH_S, (turn + 1) * SWITCH_S
        holder, waiter = (1001, 1002) if turn % 2 == 0 else (1002, 1001)
        timeline.append(StateSpan(holder, "gil_held", start, end))
        timeline.append(StateSpan(waiter, "gil_wait", start, end))
    timeline.append(StateSpan(1000, "gil_held", 0.0, 0.1))
    timeline.append(StateSpan(1000, "join_wait", 0.1, wall_s))
    lock = LockStats(
        address=0x7F00DEAD,
        label="write_record (app/main.py:60)",
        waiters=("worker-1", "worker-2"),
        wait_s=0.25,
        longest_wait_s=0.05,
        waiting_functions=("write_record",),
        holder_states={"io_wait": 0.2, "gil_held": 0.05},
        held_across="io_wait in write_record (app/main.py:62)",
    )
    child = Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=0.5,
        held_fraction=0.9,
        threads=(ThreadStats("MainThread", 5000, 0.5, 0.45, 0.45, 0.0, 0.0, 0.05, 0.0),),
        stacks=(
            StackStats(5000, "gil_held", (Frame("<module>", "child.py", 1), SPIN), 0.45, 450),
            StackStats(5000, "io_wait", (Frame("<module>", "child.py", 1),), 0.05, 50),
        ),
        verdict=Verdict("serial", "inline", 1.0, "One thread holds the GIL."),
        timeline=(
            StateSpan(5000, "gil_held", 0.0, 0.45),
            StateSpan(5000, "io_wait", 0.45, 0.5),
        ),
        extra={"started_at_s": 0.5},
        pid=5000,
        parent_pid=999,
        command="python child.py",
        exit_code=0,
    )
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=wall_s,
        held_fraction=0.95,
        threads=threads,
        functions=(
            FunctionStats("spin", APP, 5, 1.7, 1.5),
            FunctionStats("work", APP, 20, 0.2, 0.0),
            FunctionStats("digest", APP, 30, 0.0, 0.0, native_s=0.1),
            FunctionStats("fetch", APP, 40, 0.0, 0.0, io_wait_s=0.1),
        ),
        verdict=Verdict("gil-bound", "process", 1.9, "GIL-bound: use processes."),
        timeline=tuple(timeline),
        sample_interval_s=0.001,
        samples=2000,
        command="python main.py",
        stacks=stacks,
        locks=(lock,),
        pid=999,
        processes=(child,),
        exit_code=0,
    )


def big_profile(threads: int = 10, wall_s: float = 10.0, stacks_per_thread: int = 800) -> Profile:
    """A 10-thread, 10 s run at its most detailed: a state change every millisecond on every
    thread, hundreds of distinct stacks per thread (depth 3 to 40, 400 functions in 40 files),
    for the size limit of the HTML report."""
    import random

    rng = random.Random(13)
    states = ("gil_held", "gil_wait", "native", "io_wait", "lock_wait", "idle")
    functions = [
        Frame(f"function_{i}_with_a_longish_name", f"/srv/app/package/module_{i % 40}.py", i)
        for i in range(400)
    ]
    thread_stats = []
    stacks = []
    timeline = []
    for t in range(threads):
        native_id = 7000 + t
        per_state = dict.fromkeys(states, 0.0)
        for _ in range(stacks_per_thread):
            depth = rng.randint(3, 40)
            frames = (BOOT, RUN, *rng.sample(functions, depth - 2))
            state = rng.choice(states)
            seconds = wall_s / stacks_per_thread
            per_state[state] += seconds
            stacks.append(StackStats(native_id, state, frames, seconds, 10))
        thread_stats.append(
            ThreadStats(
                f"worker-{t}",
                native_id,
                wall_s,
                wall_s / 2,
                per_state["gil_held"],
                per_state["gil_wait"],
                per_state["native"],
                per_state["io_wait"],
                per_state["lock_wait"],
                idle_s=per_state["idle"],
            )
        )
        step_s = 0.001
        for k in range(int(wall_s / step_s)):
            timeline.append(StateSpan(native_id, states[k % 4], k * step_s, (k + 1) * step_s))
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=wall_s,
        held_fraction=0.9,
        threads=tuple(thread_stats),
        functions=tuple(
            FunctionStats(f.function, f.file, f.line, 0.01 * (i % 7), 0.01)
            for i, f in enumerate(functions)
        ),
        timeline=tuple(timeline),
        stacks=tuple(stacks),
        sample_interval_s=0.001,
        samples=int(wall_s * 1000),
        command="python big.py",
    )
