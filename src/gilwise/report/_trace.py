"""The timeline as Chrome Trace Event Format JSON, for Perfetto or chrome://tracing.

One process (``TRACE_PID``), one track per thread (tid = native id), one complete event
("ph": "X") per StateSpan named after its state, a counter of the threads waiting for the
GIL, and the verdict as a global instant event at the end of the run. Each followed child
process is one more process (its own pid), its spans shifted to when it started. Times are
microseconds since the profile began.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from .._model import Profile, StateSpan
from ._formats import Format, RenderOptions

TRACE_PID = 1
CATEGORY = "gil"
WAITERS_COUNTER = "threads waiting for the GIL"
_US_PER_S = 1_000_000


def render_trace(profile: Profile) -> str:
    """The trace as a JSON document ``{"traceEvents": [...], "displayTimeUnit": "ms"}``."""
    return json.dumps(trace_document(profile), indent=None, separators=(",", ":")) + "\n"


def trace_document(profile: Profile) -> dict[str, Any]:
    """The trace as a dict, before serialisation (for callers that add events of their own)."""
    events: list[dict[str, Any]] = []
    for trace_pid, process, offset_s in _processes(profile):
        events.extend(_process_events(process, trace_pid, offset_s, root=process is profile))
    if profile.verdict is not None:
        verdict = profile.verdict
        events.append(
            {
                "name": f"verdict: {verdict.kind}",
                "cat": CATEGORY,
                "ph": "i",
                "s": "g",
                "pid": TRACE_PID,
                "tid": 0,
                "ts": _us(profile.wall_s),
                "args": {
                    "kind": verdict.kind,
                    "recommended_backend": verdict.recommended_backend,
                    "expected_speedup": verdict.expected_speedup,
                    "reason": verdict.reason,
                },
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "gilwise",
            "python": f"{profile.python.implementation} {profile.python.version}",
            "gil_enabled": profile.python.gil_enabled,
            "cores": profile.cores,
            "wall_s": profile.wall_s,
            "held_fraction": profile.held_fraction,
            "unavailable": list(profile.unavailable),
        },
    }


def _processes(profile: Profile) -> list[tuple[int, Profile, float]]:
    """(trace pid, profile, start offset s) for the profile and each child process, depth
    first. The profiled program is TRACE_PID; a child keeps its own pid (its order after
    TRACE_PID if unknown) and starts where the probe saw it start (``started_at_s``, on the
    profiled program's time axis)."""
    out: list[tuple[int, Profile, float]] = []

    def visit(process: Profile, offset_s: float) -> None:
        if not out:
            trace_pid = TRACE_PID
        elif process.pid is not None and process.pid != TRACE_PID:
            trace_pid = process.pid
        else:
            trace_pid = TRACE_PID + len(out)
        out.append((trace_pid, process, offset_s))
        for child in process.processes:
            visit(child, float(child.extra.get("started_at_s") or 0.0))

    visit(profile, 0.0)
    return out


def _process_events(
    profile: Profile, trace_pid: int, offset_s: float, *, root: bool
) -> list[dict[str, Any]]:
    """One process's tracks: its name, a named track per thread, its spans and its counter."""
    name = _process_name(profile) if root else _child_name(profile)
    events: list[dict[str, Any]] = [_metadata("process_name", trace_pid, 0, {"name": name})]
    names = {t.native_id: t.name for t in profile.threads}
    for span in profile.timeline:
        names.setdefault(span.native_id, f"thread {span.native_id}")
    for order, (native_id, thread_name) in enumerate(names.items()):
        events.append(_metadata("thread_name", trace_pid, native_id, {"name": thread_name}))
        events.append(_metadata("thread_sort_index", trace_pid, native_id, {"sort_index": order}))
    spans = sorted(profile.timeline, key=lambda s: (s.native_id, s.start_s, s.end_s))
    for span in spans:
        events.append(
            {
                "name": span.state,
                "cat": CATEGORY,
                "ph": "X",
                "pid": trace_pid,
                "tid": span.native_id,
                "ts": _us(offset_s + span.start_s),
                "dur": _us(max(0.0, span.end_s - span.start_s)),
            }
        )
    events.extend(_waiter_counter(spans, trace_pid, offset_s))
    return events


def _waiter_counter(
    spans: list[StateSpan], trace_pid: int = TRACE_PID, offset_s: float = 0.0
) -> list[dict[str, Any]]:
    """A counter track of how many threads wait for the GIL at each moment: the queue that
    a GIL-bound program builds, visible at a glance above the thread tracks."""
    change: dict[float, int] = defaultdict(int)
    for span in spans:
        if span.state == "gil_wait" and span.end_s > span.start_s:
            change[_us(offset_s + span.start_s)] += 1
            change[_us(offset_s + span.end_s)] -= 1
    waiting = 0
    counter = []
    for ts in sorted(change):
        if change[ts] == 0:
            continue
        waiting += change[ts]
        counter.append(
            {
                "name": WAITERS_COUNTER,
                "cat": CATEGORY,
                "ph": "C",
                "pid": trace_pid,
                "ts": ts,
                "args": {"threads": waiting},
            }
        )
    return counter


def _metadata(name: str, trace_pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": trace_pid, "tid": tid, "args": args}


def _process_name(profile: Profile) -> str:
    return f"gilwise: {profile.command}" if profile.command else "gilwise profile"


def _child_name(profile: Profile) -> str:
    pid = "?" if profile.pid is None else str(profile.pid)
    return f"child process {pid}" + (f": {profile.command}" if profile.command else "")


def _us(seconds: float) -> float:
    # Nanosecond resolution is plenty and keeps the file short.
    return round(seconds * _US_PER_S, 3)


def _render_format(profile: Profile, options: RenderOptions) -> str:
    return render_trace(profile)


FORMAT = Format(
    "trace",
    (".trace.json", ".perfetto"),
    _render_format,
    "the timeline as Chrome Trace Event JSON, for Perfetto or chrome://tracing",
    rank=40,
)
