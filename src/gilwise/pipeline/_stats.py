"""Per-stage statistics of a pipeline run, as frozen data and JSON, and the bottleneck line.

Each running stage owns a ``StageCounters`` whose every field has one writer at a time (the
submitter, the collector, or the submitter alone once an inline stage took over), so no
lock is needed; ``snapshot`` turns it into a frozen
``StageStats`` at any moment, while running or after.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

SCHEMA = "gilwise.pipeline-stats/1"
# Below this utilisation (or share of time with input and room for output) no stage counts
# as the bottleneck.
SATURATED = 0.6

_WORKER_NOUNS = {
    "process": "process",
    "thread": "thread",
    "inline": "inline worker",
    "asyncio": "event-loop task",
    "interpreter": "sub-interpreter",
    "dask": "dask worker",
}


@dataclass
class StageCounters:
    """Live, mutable counters of one running stage (private to the pipeline)."""

    name: str
    kind: str
    backend: str = "pending"
    workers: int = 0
    reason: str = ""
    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    retried: int = 0
    busy_s: float = 0.0
    input_wait_s: float = 0.0
    output_wait_s: float = 0.0
    started_at: float = field(default_factory=time.perf_counter)
    finished_at: Optional[float] = None

    def snapshot(self) -> StageStats:
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return StageStats(
            name=self.name,
            kind=self.kind,
            backend=self.backend,
            workers=self.workers,
            reason=self.reason,
            items_in=self.items_in,
            items_out=self.items_out,
            failed=self.failed,
            retried=self.retried,
            busy_s=self.busy_s,
            input_wait_s=self.input_wait_s,
            output_wait_s=self.output_wait_s,
            wall_s=max(end - self.started_at, 0.0),
        )


@dataclass(frozen=True)
class StageStats:
    """One stage's run: items, time busy in its function, time blocked on its neighbours.

    ``busy_s`` sums the time the function ran (across workers); ``input_wait_s`` is time the
    stage had a free worker but no item; ``output_wait_s`` is time it held a result the next
    stage (or the consumer) was not ready to take.
    """

    name: str
    kind: str
    backend: str
    workers: int
    reason: str
    items_in: int
    items_out: int
    failed: int
    retried: int
    busy_s: float
    input_wait_s: float
    output_wait_s: float
    wall_s: float

    @property
    def utilisation(self) -> float:
        """Share of the stage's worker time spent running its function (0..1)."""
        capacity = self.wall_s * max(self.workers, 1)
        return min(1.0, self.busy_s / capacity) if capacity > 0 else 0.0

    @property
    def pressed_share(self) -> float:
        """Share of the time the stage had input and room for its output (0..1)."""
        if self.wall_s <= 0:
            return 0.0
        return max(0.0, 1.0 - (self.input_wait_s + self.output_wait_s) / self.wall_s)

    @property
    def rate_per_s(self) -> float:
        return self.items_out / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def workers_text(self) -> str:
        noun = _WORKER_NOUNS.get(self.backend, self.backend)
        if self.kind == "batch":
            return "the batching thread"
        plural = "" if self.workers == 1 else "es" if noun.endswith("s") else "s"
        return f"{self.workers} {noun}{plural}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["utilisation"] = round(self.utilisation, 4)
        return data


@dataclass(frozen=True)
class RunStats:
    """A whole run: its stages in order, wall time, items in from the source and out."""

    stages: tuple[StageStats, ...]
    wall_s: float
    source_items: int
    delivered_items: int
    dead_letters: int
    finished: bool
    error: Optional[str] = None

    def stage(self, name: str) -> StageStats:
        """The stage called ``name``; KeyError naming the stages there are."""
        for stats in self.stages:
            if stats.name == name:
                return stats
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def _pressure(self) -> list[tuple[float, StageStats]]:
        """Each working stage with how saturated it looks: its utilisation, or the share of
        the time it neither waited for input nor for the next stage to take its output (a
        stage that always had work and could always hand it on limits throughput, even when
        hand-over costs keep its workers from being busy)."""
        return [
            (max(stage.utilisation, stage.pressed_share), stage)
            for stage in self.stages
            if stage.kind != "batch"
        ]

    @property
    def bottleneck(self) -> Optional[StageStats]:
        """The stage that limits throughput, if one does (None: source, consumer or none)."""
        scored = self._pressure()
        if not scored:
            return None
        score, stage = max(scored, key=lambda pair: pair[0])
        return stage if score >= SATURATED else None

    @property
    def bottleneck_text(self) -> str:
        """One line naming what limits throughput, e.g. "stage parse is the bottleneck: ..."."""
        working = [s for s in self.stages if s.kind != "batch"]
        if not working:
            return "no working stage: the pipeline only moves items from the source"
        top = self.bottleneck
        if top is not None:
            others = [s.name for s in working if s is not top]
            text = (
                f"stage {top.name} is the bottleneck: {top.utilisation:.0%} busy on "
                f"{top.workers_text}"
            )
            if top.utilisation < SATURATED:
                text += (
                    f" running its function, though it had input and room for output "
                    f"{top.pressed_share:.0%} of the time: handing items to its workers and "
                    f"back costs more than the work (send bigger items, e.g. with .batch() or "
                    f"chunksize=), or the run was too short to fill them"
                )
            if others:
                verb = "waits" if len(others) == 1 else "wait"
                noun = "stage" if len(others) == 1 else "stages"
                text += f"; {noun} {_join(others)} {verb} on it"
            return text
        busiest = max(working, key=lambda s: s.utilisation)
        first, last = working[0], working[-1]
        if last.output_wait_s >= 0.5 * self.wall_s > 0:
            return (
                f"the consumer is the bottleneck: stage {last.name} spent "
                f"{last.output_wait_s:.2f}s of {self.wall_s:.2f}s waiting to hand results over"
            )
        if first.input_wait_s >= 0.5 * self.wall_s > 0:
            return (
                f"the source is the bottleneck: stage {first.name} spent "
                f"{first.input_wait_s:.2f}s of {self.wall_s:.2f}s waiting for items"
            )
        return (
            f"no stage is saturated (busiest: {busiest.name}, {busiest.utilisation:.0%} busy); "
            f"hand-over overhead or too few items limit throughput"
        )

    def describe(self) -> str:
        """A plain-text table of the stages and the bottleneck line (for a caller to print)."""
        header = (
            f"{'stage':<12} {'runs on':<22} {'in':>8} {'out':>8} {'busy':>6} "
            f"{'in-wait':>9} {'out-wait':>9}"
        )
        lines = [header]
        for s in self.stages:
            lines.append(
                f"{s.name[:12]:<12} {s.workers_text[:22]:<22} {s.items_in:>8} {s.items_out:>8} "
                f"{s.utilisation:>6.0%} {s.input_wait_s:>8.2f}s {s.output_wait_s:>8.2f}s"
            )
        lines.append(
            f"{self.source_items} items in, {self.delivered_items} out, "
            f"{self.dead_letters} dead letters, {self.wall_s:.2f}s"
        )
        lines.append(self.bottleneck_text)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "wall_s": self.wall_s,
            "source_items": self.source_items,
            "delivered_items": self.delivered_items,
            "dead_letters": self.dead_letters,
            "finished": self.finished,
            "error": self.error,
            "bottleneck": self.bottleneck_text,
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _join(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"
