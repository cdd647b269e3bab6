"""The results model of ``gilwise demo``: plain frozen values, no measuring, no rendering.

Numbers that were not measured are ``None`` (JSON null), never 0. A row that could not run
here (e.g. sub-interpreters on Python 3.11) stays in the table with ``note`` saying why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

SCHEMA = "gilwise.demo/1"


@dataclass(frozen=True)
class Row:
    """One way of running one workload: how long it took and how much it gained."""

    workload: str
    way: str
    workers: int
    wall_s: Optional[float]
    cpu_s: Optional[float]
    speedup_vs_sequential: Optional[float] = None
    #: Share of the timed region during which some thread of the demo's process held the
    #: GIL; None when no probe measured it (or the work ran in other processes: see gil_note).
    gil_held_fraction: Optional[float] = None
    gil_note: str = ""
    note: str = ""

    @property
    def available(self) -> bool:
        """False for a row that could not run here; ``note`` then says why."""
        return self.wall_s is not None

    @property
    def is_sequential(self) -> bool:
        return self.way == "sequential"


def unavailable(workload: str, way: str, workers: int, why: str) -> Row:
    """A row that stays in the table to say why this way cannot run here."""
    return Row(workload=workload, way=way, workers=workers, wall_s=None, cpu_s=None, note=why)


def with_speedups(rows: tuple[Row, ...]) -> tuple[Row, ...]:
    """Fill ``speedup_vs_sequential`` from the sequential row of the same workload."""
    baseline = {row.workload: row.wall_s for row in rows if row.is_sequential and row.available}
    filled = []
    for row in rows:
        base_s = baseline.get(row.workload)
        if row.available and base_s and row.wall_s:
            row = replace(row, speedup_vs_sequential=base_s / row.wall_s)
        filled.append(row)
    return tuple(filled)


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment (cpu, io or native): what ran, the rows, and what they mean."""

    name: str
    title: str
    work: str
    rows: tuple[Row, ...]
    sentence: str = ""
    #: Average cores other programs kept busy while this experiment ran (None: unknown).
    other_programs_cores: Optional[float] = None

    def row(self, way: str, workload: Optional[str] = None) -> Row:
        """The row of this way (and workload, when the experiment has several); KeyError if none."""
        for candidate in self.rows:
            if candidate.way == way and (workload is None or candidate.workload == workload):
                return candidate
        raise KeyError(f"no row {way!r} (workload {workload!r}) in experiment {self.name!r}")


@dataclass(frozen=True)
class DemoResult:
    """Every experiment of one ``gilwise demo`` run, with the facts that explain them."""

    experiments: tuple[ExperimentResult, ...]
    python_version: str
    cores: int
    gil_enabled: bool
    scale: float
    #: True when a GIL probe measured ``gil_held_fraction``; renderers drop the column otherwise.
    gil_measured: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA
        return data
