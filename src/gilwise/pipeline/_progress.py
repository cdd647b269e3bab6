"""A live rich table of a running pipeline's stages, on stderr, only when it is a terminal."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

from ._stats import RunStats


def live(stats: Callable[[], RunStats]) -> ContextManager[Any]:
    """A context manager showing ``stats()`` four times a second; a no-op off a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return contextlib.nullcontext()
    from rich.live import Live

    return Live(
        get_renderable=lambda: render(stats()),
        console=console,
        refresh_per_second=4,
        transient=False,
    )


def render(run: RunStats) -> Any:
    """A rich Table of per-stage rates, utilisation and waits, captioned with the bottleneck."""
    from rich.table import Table

    table = Table(title=f"pipeline: {run.source_items} items read, {run.wall_s:.1f}s")
    for column in ("stage", "runs on", "in", "out", "out/s", "busy", "waiting in", "waiting out"):
        table.add_column(column, justify="left" if column in ("stage", "runs on") else "right")
    for stage in run.stages:
        table.add_row(
            stage.name,
            stage.workers_text,
            str(stage.items_in),
            str(stage.items_out),
            f"{stage.rate_per_s:.1f}",
            f"{stage.utilisation:.0%}",
            f"{stage.input_wait_s:.1f}s",
            f"{stage.output_wait_s:.1f}s",
        )
    table.caption = run.bottleneck_text
    return table
