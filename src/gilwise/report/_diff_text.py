"""The comparison of two profiles as plain text (rich tables, no colour), from the same
ProfileDiff and cells as the HTML and JSON forms (see ``_diff``)."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import _diff as d
from . import _figures as fig
from ._console import plain_text

#: Functions shown, largest change first (the HTML shows DIFF_HTML_FUNCTIONS).
DIFF_FUNCTIONS = 15
#: A terminal has no room for held and wait before -> after beside a path: text keeps the
#: first five function columns (HTML and JSON have them all).
TEXT_FUNCTION_COLUMNS = 5


def render_diff_text(diff: d.ProfileDiff, *, width: int = 120) -> str:
    """The comparison as plain text, ``width`` columns wide."""
    return plain_text(_renderable(diff), width)


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False
    )


def _renderable(diff: d.ProfileDiff) -> RenderableType:
    headline = Text.assemble(
        ("gilwise diff", "bold"),
        "\nbefore: ",
        diff.before.command or "(no command recorded)",
        "\nafter:  ",
        diff.after.command or "(no command recorded)",
    )
    run = _table("run")
    for heading in ("", "before", "after", "change"):
        run.add_column(heading, justify="left" if not heading else "right", no_wrap=True)
    for row in d.run_rows(diff):
        run.add_row(Text(row.label), Text(row.before), Text(row.after), Text(row.change))

    return Group(
        headline,
        Text(""),
        run,
        _threads_table(diff),
        _functions_table(diff),
        Text(""),
        _verdicts_table(diff),
    )


def _threads_table(diff: d.ProfileDiff) -> Table:
    table = _table("threads (seconds, before → after; - where the thread did not exist)")
    table.add_column("thread", overflow="fold", min_width=12)
    for column in d.THREAD_DIFF_COLUMNS:
        table.add_column(column.heading, justify="right", no_wrap=True)
    for thread in diff.threads:
        table.add_row(
            Text(thread.name), *(Text(d.thread_cell(thread, c)) for c in d.THREAD_DIFF_COLUMNS)
        )
    return table


def _functions_table(diff: d.ProfileDiff) -> RenderableType:
    changed = d.changed_functions(diff, DIFF_FUNCTIONS)
    if not changed:
        return Text("functions: no change of 0.5 ms or more", style="dim")
    table = _table(
        f"functions, largest change of {fig.FUNCTION_RANKING} first "
        f"({len(changed)} of {len(diff.functions)})"
    )
    for index, heading in enumerate(d.FUNCTION_DIFF_HEADINGS[:TEXT_FUNCTION_COLUMNS]):
        numeric = index >= 2
        table.add_column(
            heading, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric
        )
    for function in changed:
        table.add_row(*(Text(cell) for cell in d.function_cells(function)[:TEXT_FUNCTION_COLUMNS]))
    return table


def _verdicts_table(diff: d.ProfileDiff) -> Table:
    verdicts = _table("verdicts")
    verdicts.add_column("")
    verdicts.add_column("before", overflow="fold", ratio=1)
    verdicts.add_column("after", overflow="fold", ratio=1)
    old, new = d.verdict_lines(diff.before), d.verdict_lines(diff.after)
    for label, b, a in zip(("kind", "recommended", "expected speedup", "reason"), old, new):
        verdicts.add_row(Text(label), Text(b), Text(a))
    return verdicts
