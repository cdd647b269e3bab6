"""The data model of a GIL profile: what happened, per thread, per function and over time.

A Profile is a plain frozen value built by the probe, judged by _verdict.py and drawn by
report/. It knows nothing of how samples were taken. ``to_dict``/``from_dict`` implement the
versioned JSON schema ``gilwise.profile/2`` (``from_dict`` still reads ``gilwise.profile/1``:
every field /2 added has a default); extra keys beyond the contract are allowed, the
contract's keys are never renamed within a schema version.

Schema /2 added (agreed once for the verdict and the report work):
- thread states ``idle`` (a worker waiting for work: queue get / Condition.wait / Event.wait
  with nothing to do), ``join_wait`` (Thread.join, process join) and ``result_wait``
  (Future.result, wait, as_completed, AsyncResult.get): blocked, but never contention. They
  are carved out of what /1 called ``lock_wait``, which now means acquiring a lock only;
- ``LockStats``: contended locks grouped by futex address, with waiters and holder states;
- ``StackStats``: folded Python call stacks per thread and state (root first); in JSON the
  frames are one deduplicated table and each stack lists indices into it;
- ``processes``: one Profile per followed child process (``pid``, ``parent_pid``), and
  ``exit_code`` / ``end_reason`` of the profiled program;
- verdict kinds ``too-short``, ``lock-held-across-io`` and ``loop-blocked``.

Numbers that could not be measured are ``None`` (JSON null), never 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Optional, get_args

SCHEMA = "gilwise.profile/2"
#: Older documents ``from_dict`` still reads.
READABLE_SCHEMAS: tuple[str, ...] = ("gilwise.profile/1", SCHEMA)

ThreadState = Literal[
    "gil_held",
    "gil_wait",
    "native",
    "io_wait",
    "lock_wait",
    "unknown",
    "idle",
    "join_wait",
    "result_wait",
]
# New states go at the end: the probe's state codes are indices into this tuple.
THREAD_STATES: tuple[str, ...] = get_args(ThreadState)
#: Blocked states that are never a problem in themselves (no contention, nothing to speed up).
QUIET_STATES: tuple[str, ...] = ("idle", "join_wait", "result_wait")

VerdictKind = Literal[
    "serial",
    "gil-bound",
    "native-parallel",
    "io-bound",
    "lock-contention",
    "mixed",
    "idle",
    "too-short",
    "lock-held-across-io",
    "loop-blocked",
]
VERDICT_KINDS: tuple[str, ...] = get_args(VerdictKind)
BackendName = Literal["inline", "thread", "process", "asyncio", "interpreter"]
RECOMMENDABLE_BACKENDS: tuple[str, ...] = ("inline", "thread", "process", "asyncio", "interpreter")


@dataclass(frozen=True)
class PythonInfo:
    version: str
    implementation: str
    gil_enabled: bool


@dataclass(frozen=True)
class ThreadStats:
    """Seconds one thread spent in each state while it was observed (``wall_s``)."""

    name: str
    native_id: int
    wall_s: float
    cpu_s: Optional[float]
    gil_held_s: Optional[float]
    gil_wait_s: Optional[float]
    native_s: Optional[float]
    io_wait_s: Optional[float]
    lock_wait_s: Optional[float]
    unknown_s: float = 0.0
    # Runnable but waiting for a CPU (the kernel's run-queue wait; other programs or more
    # runnable threads than cores). Not a state of its own: this time is also inside
    # gil_held_s (a preempted holder) or native_s (a thread between wake-up and running).
    cpu_wait_s: Optional[float] = None
    # Schema /2: blocked for a reason that is not contention (see QUIET_STATES). None where
    # no stack was read to tell the reason (then such time is still in lock_wait_s).
    idle_s: Optional[float] = None
    join_wait_s: Optional[float] = None
    result_wait_s: Optional[float] = None


@dataclass(frozen=True)
class FunctionStats:
    """Self time of one Python function (the innermost frame) while holding or awaiting the GIL."""

    function: str
    file: str
    line: int
    gil_held_s: float
    gil_wait_s: float
    native_s: float = 0.0
    io_wait_s: float = 0.0
    lock_wait_s: float = 0.0


@dataclass(frozen=True)
class Frame:
    """One Python frame of a call stack."""

    function: str
    file: str
    line: int


@dataclass(frozen=True)
class StackStats:
    """Time one thread spent in one state with this call stack (``frames`` root first)."""

    native_id: int
    state: ThreadState
    frames: tuple[Frame, ...]
    seconds: float
    samples: int = 0


@dataclass(frozen=True)
class LockStats:
    """One contended lock (threads blocked on the same futex address to acquire it)."""

    address: int
    #: Where it is acquired, e.g. "write_record (app.py:12)"; the most-waited site.
    label: str
    waiters: tuple[str, ...]  # thread names
    wait_s: float  # all waiters' blocked seconds added up
    longest_wait_s: float  # the longest single uninterrupted wait
    waiting_functions: tuple[str, ...] = ()
    #: What the other threads (the holder among them) were doing while someone waited:
    #: seconds per ThreadState, e.g. {"io_wait": 1.2, "gil_held": 0.1}.
    holder_states: dict[str, float] = field(default_factory=dict)
    #: The holder's state and function while it held the lock, when it could be told,
    #: e.g. "io_wait in write_record (app.py:14)".
    held_across: Optional[str] = None


@dataclass(frozen=True)
class Verdict:
    """What the profile means and what to do: see _verdict.py for how it is decided."""

    kind: VerdictKind
    recommended_backend: BackendName
    expected_speedup: float
    reason: str


@dataclass(frozen=True)
class StateSpan:
    """One thread in one state from ``start_s`` to ``end_s`` (seconds since the profile began)."""

    native_id: int
    state: ThreadState
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Profile:
    """A GIL profile of a run. ``held_fraction`` is the share of wall time some thread held
    the GIL; None where it could not be measured (a free-threaded build with the GIL off, an
    attach without the GIL's address)."""

    python: PythonInfo
    cores: int
    wall_s: float
    held_fraction: Optional[float]
    threads: tuple[ThreadStats, ...]
    functions: tuple[FunctionStats, ...] = ()
    verdict: Optional[Verdict] = None
    timeline: tuple[StateSpan, ...] = ()
    sample_interval_s: Optional[float] = None
    samples: int = 0
    source: str = "in-process"
    unavailable: tuple[str, ...] = ()
    command: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Schema /2.
    stacks: tuple[StackStats, ...] = ()
    locks: tuple[LockStats, ...] = ()
    pid: Optional[int] = None
    parent_pid: Optional[int] = None
    processes: tuple[Profile, ...] = ()
    exit_code: Optional[int] = None
    #: How the program ended when not by returning: "os._exit", "signal SIGSEGV", "SIGINT".
    end_reason: Optional[str] = None

    def with_verdict(self, verdict: Verdict) -> Profile:
        return replace(self, verdict=verdict)

    def __repr__(self) -> str:
        """Short, for a REPL: the full value is ``to_dict()``, the report ``gilwise.report``."""
        held = "n/a" if self.held_fraction is None else f"{self.held_fraction:.0%}"
        verdict = f", verdict {self.verdict.kind}" if self.verdict is not None else ""
        threads = f"{len(self.threads)} thread{'s' if len(self.threads) != 1 else ''}"
        return f"<gilwise.Profile {self.wall_s:.2f} s, {threads}, GIL held {held}{verdict}>"

    def _repr_html_(self) -> str:
        """The HTML report, inline in a Jupyter notebook."""
        from gilwise._ipython import notebook_html

        return notebook_html(self)

    def thread(self, name_or_id: str | int) -> ThreadStats:
        """The thread with this name or native id; raises KeyError naming the known threads."""
        for stats in self.threads:
            if name_or_id in (stats.name, stats.native_id):
                return stats
        known = ", ".join(f"{t.name} ({t.native_id})" for t in self.threads)
        raise KeyError(f"no thread {name_or_id!r} in this profile; threads: {known}")

    # -- JSON schema gilwise.profile/2 -------------------------------------------------

    def to_dict(self, *, include_timeline: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "python": asdict(self.python),
            "cores": self.cores,
            "wall_s": self.wall_s,
            "gil": {"held_fraction": self.held_fraction},
            "threads": [asdict(t) for t in self.threads],
            "functions": [asdict(f) for f in self.functions],
            "verdict": asdict(self.verdict) if self.verdict is not None else None,
            "sample_interval_s": self.sample_interval_s,
            "samples": self.samples,
            "source": self.source,
            "unavailable": list(self.unavailable),
            "command": self.command,
            "extra": self.extra,
            "locks": [asdict(lock) for lock in self.locks],
            "pid": self.pid,
            "parent_pid": self.parent_pid,
            "exit_code": self.exit_code,
            "end_reason": self.end_reason,
            "processes": [
                child.to_dict(include_timeline=include_timeline) for child in self.processes
            ],
        }
        data.update(_stacks_to_dict(self.stacks))
        if include_timeline:
            data["timeline"] = [asdict(span) for span in self.timeline]
        return data

    def to_json(self, *, indent: int | None = 2, include_timeline: bool = True) -> str:
        return json.dumps(self.to_dict(include_timeline=include_timeline), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a Profile from ``to_dict`` output (schema /2 or /1); raises ValueError on
        another schema."""
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ValueError(
                f"expected a {SCHEMA!r} (or {READABLE_SCHEMAS[0]!r}) document, "
                f"got schema {schema!r}"
            )
        verdict = data.get("verdict")
        return cls(
            python=PythonInfo(**data["python"]),
            cores=int(data["cores"]),
            wall_s=float(data["wall_s"]),
            held_fraction=data["gil"]["held_fraction"],
            threads=tuple(_build(ThreadStats, t) for t in data["threads"]),
            functions=tuple(_build(FunctionStats, f) for f in data.get("functions", ())),
            verdict=_build(Verdict, verdict) if verdict is not None else None,
            timeline=tuple(_build(StateSpan, s) for s in data.get("timeline", ())),
            sample_interval_s=data.get("sample_interval_s"),
            samples=int(data.get("samples", 0)),
            source=data.get("source", "in-process"),
            unavailable=tuple(data.get("unavailable", ())),
            command=data.get("command"),
            extra=dict(data.get("extra") or {}),
            stacks=_stacks_from_dict(data),
            locks=tuple(_build_lock(lock) for lock in data.get("locks", ())),
            pid=data.get("pid"),
            parent_pid=data.get("parent_pid"),
            processes=tuple(cls.from_dict(child) for child in data.get("processes", ())),
            exit_code=data.get("exit_code"),
            end_reason=data.get("end_reason"),
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        return cls.from_dict(json.loads(text))


def _build(kind: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(kind)}
    return kind(**{key: value for key, value in data.items() if key in known})


def _build_lock(data: dict[str, Any]) -> LockStats:
    lock = _build(LockStats, data)
    return replace(
        lock,
        waiters=tuple(lock.waiters),
        waiting_functions=tuple(lock.waiting_functions),
        holder_states=dict(lock.holder_states),
    )


def _stacks_to_dict(stacks: tuple[StackStats, ...]) -> dict[str, Any]:
    """JSON form of the stacks: one table of distinct frames, stacks as indices into it."""
    index: dict[Frame, int] = {}
    rows = []
    for stack in stacks:
        ids = [index.setdefault(frame, len(index)) for frame in stack.frames]
        rows.append(
            {
                "native_id": stack.native_id,
                "state": stack.state,
                "frames": ids,
                "seconds": stack.seconds,
                "samples": stack.samples,
            }
        )
    table = [[frame.function, frame.file, frame.line] for frame in index]
    return {"frames": table, "stacks": rows}


def _stacks_from_dict(data: dict[str, Any]) -> tuple[StackStats, ...]:
    table = [Frame(str(f), str(path), int(line)) for f, path, line in data.get("frames", ())]
    return tuple(
        StackStats(
            native_id=int(row["native_id"]),
            state=row["state"],
            frames=tuple(table[i] for i in row["frames"]),
            seconds=float(row["seconds"]),
            samples=int(row.get("samples", 0)),
        )
        for row in data.get("stacks", ())
    )
