"""The demo's results for a terminal: a rich table per experiment and its sentence."""

from __future__ import annotations

from typing import Optional

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._explain import SCALES_AT, speedup_text
from ._results import DemoResult, ExperimentResult, Row


def render_text(result: DemoResult, console: Console) -> None:
    """Draw every experiment of ``result`` on ``console``."""
    console.print(
        Text(
            f"gilwise demo: Python {result.python_version}, {result.cores} cores, GIL "
            f"{'enabled' if result.gil_enabled else 'disabled'}, scale {result.scale:g}",
            style="bold",
        )
    )
    for experiment in result.experiments:
        console.print()
        console.print(experiment_view(experiment, show_gil=result.gil_measured))
    if not result.gil_measured:
        console.print()
        console.print(
            Text("(GIL held share not shown: gilwise's probe is not available here.)", style="dim")
        )


def experiment_view(experiment: ExperimentResult, *, show_gil: bool) -> RenderableType:
    """One experiment as a titled table followed by its sentence."""
    several_workloads = len({row.workload for row in experiment.rows}) > 1
    table = Table(
        title=Text(f"{experiment.name}: {experiment.title}", style="bold"),
        caption=Text(experiment.work),
        title_justify="left",
        caption_justify="left",
    )
    if several_workloads:
        table.add_column("work")
    table.add_column("way")
    table.add_column("workers", justify="right")
    table.add_column("wall s", justify="right")
    table.add_column("CPU s", justify="right")
    table.add_column("speedup", justify="right")
    if show_gil:
        table.add_column("GIL held", justify="right")
    table.add_column("note")
    for row in experiment.rows:
        # Text cells, not markup strings: a note like "pip install 'gilwise[numpy]'" must
        # print as written.
        cells = [Text(row.workload)] if several_workloads else []
        cells += [
            Text(row.way),
            Text(str(row.workers)),
            Text(_seconds(row.wall_s)),
            Text(_seconds(row.cpu_s)),
            _speedup(row),
        ]
        if show_gil:
            cells.append(Text(_gil(row)))
        cells.append(Text(row.note))
        table.add_row(*cells, style=None if row.available else "dim")
    return Group(table, Text(experiment.sentence))


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _speedup(row: Row) -> Text:
    if row.speedup_vs_sequential is None:
        return Text("-")
    scaled = row.speedup_vs_sequential >= SCALES_AT
    return Text(speedup_text(row.speedup_vs_sequential), style="bold" if scaled else "")


def _gil(row: Row) -> str:
    if row.gil_held_fraction is not None:
        return f"{row.gil_held_fraction:.0%}"
    return row.gil_note or "-"
