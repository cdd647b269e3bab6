"""The data model of a GIL profile: what happened, per thread, per function and over time.

A Profile is a plain frozen value built by the probe, judged by verdict.py and drawn by
report/. It knows nothing of how samples were taken. ``to_dict``/``from_dict`` implement the
versioned JSON schema ``gilwise.profile/1``; extra keys beyond the contract are allowed, the
contract's keys are never renamed within a schema version.

Numbers that could not be measured are ``None`` (JSON null), never 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Optional

SCHEMA = "gilwise.profile/1"

ThreadState = Literal["gil_held", "gil_wait", "native", "io_wait", "lock_wait", "unknown"]
THREAD_STATES: tuple[str, ...] = (
    "gil_held",
    "gil_wait",
    "native",
    "io_wait",
    "lock_wait",
    "unknown",
)

VerdictKind = Literal[
    "serial",
    "gil-bound",
    "native-parallel",
    "io-bound",
    "lock-contention",
    "mixed",
    "idle",
]
VERDICT_KINDS: tuple[str, ...] = (
    "serial",
    "gil-bound",
    "native-parallel",
    "io-bound",
    "lock-contention",
    "mixed",
    "idle",
)
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
class Verdict:
    """What the profile means and what to do: see verdict.py for how it is decided."""

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

    def with_verdict(self, verdict: Verdict) -> Profile:
        return replace(self, verdict=verdict)

    def thread(self, name_or_id: str | int) -> ThreadStats:
        """The thread with this name or native id; raises KeyError naming the known threads."""
        for stats in self.threads:
            if name_or_id in (stats.name, stats.native_id):
                return stats
        known = ", ".join(f"{t.name} ({t.native_id})" for t in self.threads)
        raise KeyError(f"no thread {name_or_id!r} in this profile; threads: {known}")

    # -- JSON schema gilwise.profile/1 -------------------------------------------------

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
        }
        if include_timeline:
            data["timeline"] = [asdict(span) for span in self.timeline]
        return data

    def to_json(self, *, indent: int | None = 2, include_timeline: bool = True) -> str:
        return json.dumps(self.to_dict(include_timeline=include_timeline), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a Profile from ``to_dict`` output; raises ValueError on another schema."""
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ValueError(f"expected a {SCHEMA!r} document, got schema {schema!r}")
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
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        return cls.from_dict(json.loads(text))


def _build(kind: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(kind)}
    return kind(**{key: value for key, value in data.items() if key in known})
