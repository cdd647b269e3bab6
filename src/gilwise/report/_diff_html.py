"""The comparison of two profiles as one self-contained HTML page (no script, no network).

The same ProfileDiff and the same cells as the text diff (``_diff``): a run table with the
speedup, the two verdicts side by side, each thread's seconds before → after with its state
bar on each side, and the functions whose time changed most (less time in green, more in red).
"""

from __future__ import annotations

from html import escape
from typing import Optional

from .._model import ThreadStats
from . import _diff as d
from . import _figures as fig
from ._html import PAGE_CSS, html_page, report_block, state_bar

DIFF_HTML_FUNCTIONS = 50

_DIFF_CSS = """
.pair { display: flex; gap: 16px; flex-wrap: wrap; }
.pair > div { flex: 1 1 420px; }
.pair h3 { font-size: 14px; margin: 0 0 4px; color: #555; }
td.less { color: #1e7e34; font-weight: 600; }
td.more { color: #b02a37; font-weight: 600; }
.bars td.text { min-width: 60px; }
"""


def render_diff_html(diff: d.ProfileDiff) -> str:
    """The comparison as one HTML document (UTF-8, no external resources, no JavaScript)."""
    body = [
        _header(diff),
        _run_section(diff),
        _verdicts_section(diff),
        _threads_section(diff),
        _functions_section(diff),
    ]
    return html_page("gilwise diff", report_block(PAGE_CSS + _DIFF_CSS, body))


def _header(diff: d.ProfileDiff) -> str:
    facts = (
        ("before", diff.before.command or "(no command recorded)"),
        ("after", diff.after.command or "(no command recorded)"),
        ("result", d.speedup_words(diff)),
    )
    items = "".join(
        f"<div><dt>{escape(label)}</dt><dd>{escape(value)}</dd></div>" for label, value in facts
    )
    return f'<header><h1>gilwise diff</h1><dl class="facts">{items}</dl></header>'


def _change_class(change: str, *, less_is_better: bool = True) -> str:
    """``less``/``more`` for a signed change (green when it went the good way)."""
    if change.startswith("-"):
        return "less" if less_is_better else "more"
    if change.startswith("+"):
        return "more" if less_is_better else "less"
    return ""


def _run_section(diff: d.ProfileDiff) -> str:
    rows = []
    for row in d.run_rows(diff):
        if row.label == "wall s":
            faster = diff.speedup is not None and diff.speedup > 1.005
            slower = diff.speedup is not None and diff.speedup < 0.995
            css = "less" if faster else "more" if slower else ""
        elif row.label in ("threads", "child processes") or row.label.startswith("CPU"):
            # Neither more nor less is better in itself: parallel work burns more CPU.
            css = ""
        else:
            css = _change_class(row.change)
        rows.append(
            f'<tr><td class="text">{escape(row.label)}</td><td>{escape(row.before)}</td>'
            f"<td>{escape(row.after)}</td>"
            f'<td class="{css}">{escape(row.change)}</td></tr>'
        )
    head = '<tr><th class="text"></th><th>before</th><th>after</th><th>change</th></tr>'
    return (
        f'<h2 id="run">Run</h2><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _verdicts_section(diff: d.ProfileDiff) -> str:
    boxes = []
    for side, profile in (("before", diff.before), ("after", diff.after)):
        kind, backend, speedup, reason = d.verdict_lines(profile)
        if profile.verdict is None:
            body = f'<p class="note">{escape(reason)}</p>'
        else:
            body = (
                f'<div class="verdict"><span class="kind">{escape(kind)}</span>'
                f" &middot; recommended backend <b>{escape(backend)}</b>"
                f" &middot; expected speedup <b>{escape(speedup)}</b>"
                f'<p class="reason">{escape(reason)}</p></div>'
            )
        boxes.append(f"<div><h3>{side}</h3>{body}</div>")
    return f'<h2 id="verdicts">Verdicts</h2><div class="pair">{"".join(boxes)}</div>'


def _bar(thread: Optional[ThreadStats]) -> str:
    return d.ABSENT if thread is None else state_bar(thread, width_px=90)


def _threads_section(diff: d.ProfileDiff) -> str:
    heading = (
        '<h2 id="threads">Threads</h2><p class="note">Seconds before &rarr; after, threads '
        "matched by name; - where a thread did not exist.</p>"
    )
    if not diff.threads:
        return heading + '<p class="note">No threads observed.</p>'
    head = (
        '<th class="text">thread</th>'
        + "".join(f"<th>{escape(c.heading)}</th>" for c in d.THREAD_DIFF_COLUMNS)
        + "<th>before</th><th>after</th>"
    )
    rows = []
    for change in diff.threads:
        cells = "".join(
            f"<td>{escape(d.thread_cell(change, column))}</td>" for column in d.THREAD_DIFF_COLUMNS
        )
        rows.append(
            f'<tr><td class="text">{escape(change.name)}</td>{cells}'
            f"<td>{_bar(change.before)}</td><td>{_bar(change.after)}</td></tr>"
        )
    return (
        f'{heading}<table class="bars"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _functions_section(diff: d.ProfileDiff) -> str:
    heading = '<h2 id="functions">Functions</h2>'
    changed = d.changed_functions(diff, DIFF_HTML_FUNCTIONS)
    if not changed:
        return heading + '<p class="note">No function changed by 0.5 ms or more.</p>'
    head = "".join(
        f'<th class="text">{escape(h)}</th>' if i < 2 else f"<th>{escape(h)}</th>"
        for i, h in enumerate(d.FUNCTION_DIFF_HEADINGS)
    )
    rows = []
    for change in changed:
        name, where, before, after, delta, held, wait = d.function_cells(change, 400)
        rows.append(
            f'<tr><td class="text">{escape(name)}</td><td class="text">{escape(where)}</td>'
            f"<td>{escape(before)}</td><td>{escape(after)}</td>"
            f'<td class="{_change_class(delta)}">{escape(delta)}</td>'
            f"<td>{escape(held)}</td><td>{escape(wait)}</td></tr>"
        )
    note = (
        f'<p class="note">{len(changed)} of {len(diff.functions)} functions, largest change of '
        f"{escape(fig.FUNCTION_RANKING)} first; matched by name and file.</p>"
    )
    return (
        f"{heading}{note}<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
