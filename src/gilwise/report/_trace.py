"""The timeline as Chrome Trace Event Format JSON, for Perfetto or chrome://tracing.

One process (``TRACE_PID``), one track per thread (tid = native id), one complete event
("ph": "X") per StateSpan named after its state, a counter of the threads waiting for the
GIL, and the verdict as a global instant event at the end of the run. Times are
microseconds since the profile began.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from ..model import Profile, StateSpan
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
    events: list[dict[str, Any]] = [
        _metadata("process_name", 0, {"name": _process_name(profile)}),
    ]
    names = {t.native_id: t.name for t in profile.threads}
    for span in profile.timeline:
        names.setdefault(span.native_id, f"thread {span.native_id}")
    for order, (native_id, name) in enumerate(names.items()):
        events.append(_metadata("thread_name", native_id, {"name": name}))
        events.append(_metadata("thread_sort_index", native_id, {"sort_index": order}))

    spans = sorted(profile.timeline, key=lambda s: (s.native_id, s.start_s, s.end_s))
    for span in spans:
        events.append(
            {
                "name": span.state,
                "cat": CATEGORY,
                "ph": "X",
                "pid": TRACE_PID,
                "tid": span.native_id,
                "ts": _us(span.start_s),
                "dur": _us(max(0.0, span.end_s - span.start_s)),
            }
        )
    events.extend(_waiter_counter(spans))
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


def _waiter_counter(spans: list[StateSpan]) -> list[dict[str, Any]]:
    """A counter track of how many threads wait for the GIL at each moment: the queue that
    a GIL-bound program builds, visible at a glance above the thread tracks."""
    change: dict[float, int] = defaultdict(int)
    for span in spans:
        if span.state == "gil_wait" and span.end_s > span.start_s:
            change[_us(span.start_s)] += 1
            change[_us(span.end_s)] -= 1
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
                "pid": TRACE_PID,
                "ts": ts,
                "args": {"threads": waiting},
            }
        )
    return counter


def _metadata(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": TRACE_PID, "tid": tid, "args": args}


def _process_name(profile: Profile) -> str:
    return f"gilwise: {profile.command}" if profile.command else "gilwise profile"


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
