"""How a Profile's numbers and names read, the same in every human-facing format.

None means "not measured" and always reads as ``n/a``, never as 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from .._model import FunctionStats, Profile, ThreadStats

NOT_MEASURED = "n/a"
TOP_FUNCTIONS = 15


def seconds(value: Optional[float]) -> str:
    """``1.234`` for a number of seconds, ``n/a`` for None."""
    if value is None:
        return NOT_MEASURED
    return f"{value:.3f}"


def percent(fraction: Optional[float]) -> str:
    """``97.5%`` for a fraction, ``n/a`` for None."""
    if fraction is None:
        return NOT_MEASURED
    return f"{fraction * 100:.1f}%"


def share(part_s: Optional[float], whole_s: Optional[float]) -> str:
    """``part_s / whole_s`` as a percentage; ``n/a`` if either is unknown or the whole is 0."""
    if part_s is None or whole_s is None or whole_s <= 0:
        return NOT_MEASURED
    return percent(part_s / whole_s)


def speedup(value: float) -> str:
    """``1.9x``: one decimal, as _verdict.py writes speedups in its reasons."""
    return f"{value:.1f}x"


def gil_state(profile: Profile) -> str:
    return "on" if profile.python.gil_enabled else "off (free-threaded)"


def held_fraction(profile: Profile) -> str:
    """The share of wall time some thread held the GIL, saying why when it is unknown."""
    if profile.held_fraction is not None:
        return percent(profile.held_fraction)
    if not profile.python.gil_enabled:
        return f"{NOT_MEASURED} (no GIL)"
    return NOT_MEASURED


# Installed code reads best relative to its import root: ``threading.py``,
# ``numpy/linalg/linalg.py``. The profile may come from another machine, so this looks at
# the path's shape only, never at this interpreter's prefixes.
_IMPORT_ROOTS = re.compile(r".*/(?:site-packages|dist-packages|lib/python\d+\.\d+t?)/")


def location(function: FunctionStats, max_chars: int = 48) -> str:
    """``file.py:12`` for installed code, else the path; a long one keeps its end (the part
    that tells files apart) behind an ellipsis."""
    where = f"{_IMPORT_ROOTS.sub('', function.file)}:{function.line}"
    if len(where) <= max_chars:
        return where
    return "…" + where[-(max_chars - 1) :]


# What the functions table ranks by. Lock waits are shown but not ranked: they are mostly
# idle workers waiting for work and threads waiting in join, which would crowd out the
# functions that run.
FUNCTION_RANKING = "GIL held + wait + native + I/O"


def function_busy_s(function: FunctionStats) -> float:
    """The time a function is ranked by (see FUNCTION_RANKING)."""
    return function.gil_held_s + function.gil_wait_s + function.native_s + function.io_wait_s


def top_functions(profile: Profile, limit: int = TOP_FUNCTIONS) -> list[FunctionStats]:
    """The ``limit`` functions with the most FUNCTION_RANKING time, largest first."""
    ranked = sorted(profile.functions, key=function_busy_s, reverse=True)
    return ranked[:limit]


@dataclass(frozen=True)
class Column:
    """One column of the threads table: its heading and how a thread's cell reads."""

    heading: str
    cell: Callable[[ThreadStats], str]
    numeric: bool = True


THREAD_COLUMNS: tuple[Column, ...] = (
    Column("thread", lambda t: t.name, numeric=False),
    Column("native id", lambda t: str(t.native_id)),
    Column("wall s", lambda t: seconds(t.wall_s)),
    Column("cpu s", lambda t: seconds(t.cpu_s)),
    Column("cpu %", lambda t: share(t.cpu_s, t.wall_s)),
    Column("GIL held s", lambda t: seconds(t.gil_held_s)),
    Column("held %", lambda t: share(t.gil_held_s, t.wall_s)),
    Column("GIL wait s", lambda t: seconds(t.gil_wait_s)),
    Column("wait %", lambda t: share(t.gil_wait_s, t.wall_s)),
    Column("native s", lambda t: seconds(t.native_s)),
    Column("I/O s", lambda t: seconds(t.io_wait_s)),
    Column("lock s", lambda t: seconds(t.lock_wait_s)),
)
# Shown only when some thread waited noticeably for a CPU (a busy machine, or more runnable
# threads than cores): the kernel's run-queue wait, also counted in held or native above.
CPU_WAIT_COLUMN = Column("CPU wait s", lambda t: seconds(t.cpu_wait_s))
CPU_WAIT_SHOWN = 0.05  # of a thread's wall time


# Blocked for a reason that is never contention (schema /2): each shown only when some
# thread spent at least CPU_WAIT_SHOWN of its wall time so.
WAIT_REASON_COLUMNS: tuple[tuple[str, Column], ...] = (
    ("idle_s", Column("idle s", lambda t: seconds(t.idle_s))),
    ("join_wait_s", Column("join s", lambda t: seconds(t.join_wait_s))),
    ("result_wait_s", Column("result s", lambda t: seconds(t.result_wait_s))),
)


def thread_columns(profile: Profile) -> tuple[Column, ...]:
    """THREAD_COLUMNS, plus the wait-reason columns (idle, join, result) and CPU_WAIT_COLUMN
    each when some thread spent a noticeable share of its time that way."""

    def noticeable(attr: str) -> bool:
        return any(
            getattr(t, attr) is not None and getattr(t, attr) > CPU_WAIT_SHOWN * max(t.wall_s, 1e-9)
            for t in profile.threads
        )

    columns = THREAD_COLUMNS + tuple(
        column for attr, column in WAIT_REASON_COLUMNS if noticeable(attr)
    )
    if noticeable("cpu_wait_s"):
        columns += (CPU_WAIT_COLUMN,)
    return columns


def function_cells(function: FunctionStats, location_chars: int = 48) -> tuple[str, ...]:
    """The function table's cells: function, file:line (at most ``location_chars``), then
    seconds GIL held, GIL wait, native, I/O and lock wait (see FUNCTION_HEADINGS)."""
    return (
        function.function,
        location(function, location_chars),
        seconds(function.gil_held_s),
        seconds(function.gil_wait_s),
        seconds(function.native_s),
        seconds(function.io_wait_s),
        seconds(function.lock_wait_s),
    )


FUNCTION_HEADINGS = (
    "function",
    "file:line",
    "GIL held s",
    "GIL wait s",
    "native s",
    "I/O s",
    "lock s",
)


def header_facts(profile: Profile) -> list[tuple[str, str]]:
    """The header's (label, value) pairs, in reading order."""
    facts = [
        ("python", f"{profile.python.implementation} {profile.python.version}"),
        ("GIL", gil_state(profile)),
        ("cores", str(profile.cores)),
        ("wall", f"{seconds(profile.wall_s)} s"),
        ("GIL held", held_fraction(profile)),
    ]
    if profile.samples:
        interval = profile.sample_interval_s
        every = "" if interval is None else f" every {interval * 1000:.2f} ms"
        facts.append(("samples", f"{profile.samples}{every}"))
    facts.append(("source", profile.source))
    if profile.command:
        facts.append(("command", profile.command))
    return facts


def state_seconds(stats: ThreadStats) -> dict[str, float]:
    """The thread's measured seconds per state (unmeasured states left out)."""
    values = {
        "gil_held": stats.gil_held_s,
        "gil_wait": stats.gil_wait_s,
        "native": stats.native_s,
        "io_wait": stats.io_wait_s,
        "lock_wait": stats.lock_wait_s,
        "idle": stats.idle_s,
        "join_wait": stats.join_wait_s,
        "result_wait": stats.result_wait_s,
        "unknown": stats.unknown_s,
    }
    return {state: value for state, value in values.items() if value}


def unavailable(profile: Profile) -> list[str]:
    """What the probe could not measure here (the probe's own notes), or ``["none"]``."""
    return list(profile.unavailable) if profile.unavailable else ["none"]
