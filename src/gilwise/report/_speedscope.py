"""The profile as a speedscope file: one sampled profile per thread, stacks ending in the state.

speedscope (an open-source flame graph viewer in the browser) reads the file as written by its
file-format schema: ``shared.frames`` is one table of frames, each profile lists its stacks as
indices into it (root first) with a weight in seconds. Every stack ends in a frame naming
what the thread was doing at those samples, ``[GIL held]``, ``[waiting for the GIL]`` and so
on (STATE_FRAMES), so speedscope's flame graph and sandwich views show where each state
happens. A thread's time that no stack accounts for (no Python frame was read, or the
profile has no stacks: schema /1, ``--stack-rate 0``) is one stack of just its state frame,
so each thread's weights add up to the seconds the threads table shows.

Child processes (``Profile.processes``) add their threads as more profiles, named with their
pid. Stacks are sorted by their frames, so the time-order view reads like a classic flame
graph (folded samples carry no order of their own).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from .. import __version__
from .._model import Frame, Profile, StackStats, ThreadStats
from . import _figures as fig
from ._formats import Format, RenderOptions

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"

#: The frame that ends every stack: the thread's state at those samples.
STATE_FRAMES: dict[str, str] = {
    "gil_held": "[GIL held]",
    "gil_wait": "[waiting for the GIL]",
    "native": "[native]",
    "io_wait": "[I/O]",
    "lock_wait": "[lock]",
    "idle": "[idle]",
    "join_wait": "[join]",
    "result_wait": "[waiting for result]",
    "unknown": "[unknown]",
}
# Time shorter than this that no stack explains is rounding, not a missing stack.
_RESIDUAL_S = 1e-6
# The states a thread does work in: the busiest thread is shown first.
_BUSY_STATES = ("gil_held", "gil_wait", "native", "io_wait")


def render_speedscope(profile: Profile) -> str:
    """The speedscope document as compact JSON."""
    return json.dumps(speedscope_document(profile), separators=(",", ":")) + "\n"


def speedscope_document(profile: Profile) -> dict[str, Any]:
    """The speedscope document as a dict (see the module docstring)."""
    frames = _FrameTable()
    profiles: list[dict[str, Any]] = []
    busy_s: list[float] = []
    for process in _processes(profile):
        for native_id, name, stats in _threads(process):
            label = f"{name} (tid {native_id})"
            if process is not profile or profile.processes:
                label = f"pid {process.pid if process.pid is not None else '?'} · {label}"
            samples, weights = _samples(process, native_id, stats, frames)
            profiles.append(
                {
                    "type": "sampled",
                    "name": label,
                    "unit": "seconds",
                    "startValue": 0,
                    "endValue": _round(sum(weights)),
                    "samples": samples,
                    "weights": weights,
                }
            )
            busy_s.append(_busy_s(process, native_id, stats))
    active = max(range(len(busy_s)), key=busy_s.__getitem__) if busy_s else 0
    name = f"gilwise: {profile.command}" if profile.command else "gilwise profile"
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames.rows},
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": active,
        "exporter": f"gilwise {__version__}",
    }


class _FrameTable:
    """speedscope's ``shared.frames``: each distinct frame once, found by index."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._index: dict[Any, int] = {}

    def frame(self, frame: Frame) -> int:
        key = (frame.function, frame.file, frame.line)
        if key not in self._index:
            self._index[key] = len(self.rows)
            self.rows.append({"name": frame.function, "file": frame.file, "line": frame.line})
        return self._index[key]

    def state(self, state: str) -> int:
        key = ("state", state)
        if key not in self._index:
            self._index[key] = len(self.rows)
            self.rows.append({"name": STATE_FRAMES.get(state, f"[{state}]")})
        return self._index[key]


def _processes(profile: Profile) -> list[Profile]:
    """The profile and every child process profile, depth first."""
    out = [profile]
    for child in profile.processes:
        out.extend(_processes(child))
    return out


def _threads(profile: Profile) -> list[tuple[int, str, Optional[ThreadStats]]]:
    """(native id, name, stats) for each thread: the threads table's first, then any thread
    that only has stacks."""
    rows: list[tuple[int, str, Optional[ThreadStats]]] = [
        (t.native_id, t.name, t) for t in profile.threads
    ]
    known = {t.native_id for t in profile.threads}
    for stack in profile.stacks:
        if stack.native_id not in known:
            known.add(stack.native_id)
            rows.append((stack.native_id, f"thread {stack.native_id}", None))
    return rows


def _samples(
    profile: Profile, native_id: int, stats: Optional[ThreadStats], frames: _FrameTable
) -> tuple[list[list[int]], list[float]]:
    stacks: list[StackStats] = [s for s in profile.stacks if s.native_id == native_id]
    stacks.sort(key=lambda s: ([(f.function, f.file, f.line) for f in s.frames], s.state))
    samples: list[list[int]] = []
    weights: list[float] = []
    stacked_s: dict[str, float] = {}
    for stack in stacks:
        if stack.seconds <= 0:
            continue
        samples.append([*(frames.frame(f) for f in stack.frames), frames.state(stack.state)])
        weights.append(_round(stack.seconds))
        stacked_s[stack.state] = stacked_s.get(stack.state, 0.0) + stack.seconds
    if stats is not None:
        for state, seconds in fig.state_seconds(stats).items():
            residual_s = seconds - stacked_s.get(state, 0.0)
            if residual_s > _RESIDUAL_S:
                samples.append([frames.state(state)])
                weights.append(_round(residual_s))
    return samples, weights


def _busy_s(profile: Profile, native_id: int, stats: Optional[ThreadStats]) -> float:
    if stats is not None:
        seconds = fig.state_seconds(stats)
        return sum(seconds.get(state, 0.0) for state in _BUSY_STATES)
    return sum(
        s.seconds for s in profile.stacks if s.native_id == native_id and s.state in _BUSY_STATES
    )


def _round(seconds: float) -> float:
    # Microsecond resolution is finer than any sample interval and keeps the file short.
    return round(seconds, 6)


def _render_format(profile: Profile, options: RenderOptions) -> str:
    return render_speedscope(profile)


FORMAT = Format(
    "speedscope",
    (".speedscope.json",),
    _render_format,
    "call stacks per thread ending in the GIL state, for speedscope",
    rank=30,
)
