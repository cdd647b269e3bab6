"""The HTML report: one self-contained page: timeline, flame graphs, tables, locks, processes.

Nothing is loaded from elsewhere (no script file, font, stylesheet or image), so the file can
be mailed or attached to a ticket. Every text from the profile passes through ``html.escape``
(or, for the flame graphs' data, JSON with ``<``, ``>`` and ``&`` as \\u escapes; the inline
script of _flame.py puts names into the page as text nodes only).
Long timelines are drawn one pixel column at a time: each column takes the colour of the
state that filled most of it, so the page stays small whatever the number of spans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Iterable, Optional

from .._evidence import evidence_lines
from .._model import THREAD_STATES, Profile, StateSpan, ThreadStats
from . import _figures as fig
from ._flame import FLAME_CSS, FLAME_SCRIPT, FlameSet
from ._formats import Format, RenderOptions
from ._text import LOCK_HEADINGS, lock_cells

PLOT_WIDTH_PX = 900
LABEL_WIDTH_PX = 170
ROW_HEIGHT_PX = 18
ROW_GAP_PX = 6
AXIS_HEIGHT_PX = 28
HTML_TOP_FUNCTIONS = 50
_LABEL_CHARS = 24
# Bars narrower than this (a busy timeline's flicker) are drawn as one path per state and
# row, with one tooltip: a rect and a tooltip each would make such a page megabytes long.
NARROW_BAR_PX = 3

STATE_COLOURS: dict[str, str] = {
    "gil_held": "#d9534f",
    "gil_wait": "#f0ad4e",
    "native": "#337ab7",
    "io_wait": "#5cb85c",
    "lock_wait": "#8e44ad",
    "unknown": "#b4b4b4",
    "idle": "#e8e8e8",
    "join_wait": "#d0d7de",
    "result_wait": "#c6dbef",
}
STATE_LABELS: dict[str, str] = {
    "gil_held": "holding the GIL",
    "gil_wait": "waiting for the GIL",
    "native": "native code, GIL released",
    "io_wait": "I/O or sleep",
    "lock_wait": "waiting on a lock",
    "unknown": "not classified",
    "idle": "idle, waiting for work",
    "join_wait": "joining a thread or process",
    "result_wait": "waiting for a result",
}

PAGE_CSS = """
.gilwise-report { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #222; margin: 24px auto; max-width: 1140px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
dl.facts { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 0; }
dl.facts div { display: flex; gap: 6px; }
dl.facts dt { color: #777; }
dl.facts dd { margin: 0; font-weight: 600; }
.verdict { background: #f6f8fa; border-left: 4px solid #8e44ad; padding: 10px 14px; }
.verdict .kind { font-weight: 700; font-size: 16px; }
.verdict .reason { margin: 6px 0 0; }
dl.evidence { margin: 8px 0 0; display: grid; grid-template-columns: max-content 1fr;
              gap: 2px 12px; }
dl.evidence dt { color: #777; }
dl.evidence dd { margin: 0; }
section.process { margin: 36px 0 0; padding: 0 0 0 14px; border-left: 3px solid #ccc; }
h2.process-title { font-size: 19px; border: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; display: block;
        max-width: 100%; overflow-x: auto; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right;
         white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; }
th.text, td.text { text-align: left; white-space: normal; overflow-wrap: anywhere;
                   min-width: 7em; }
td.na { color: #999; font-style: italic; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0 0 8px; padding: 0;
          list-style: none; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; }
.note { color: #777; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .axis { stroke: #999; stroke-width: 1; }
svg .grid { stroke: #eee; stroke-width: 1; }
"""


def render_html(profile: Profile, *, fragment: bool = False) -> str:
    """The report as one HTML document (UTF-8, no external resources; one inline script
    draws the flame graphs). ``fragment=True`` gives the report alone, for embedding in a
    page of its own (a notebook's output): one ``div.gilwise-report`` whose styles apply
    to nothing outside it and whose script draws only its own flame graphs."""
    title = "gilwise profile" + (f": {profile.command}" if profile.command else "")
    flames = FlameSet()
    body = _sections(profile, flames, prefix="")
    block = report_block(PAGE_CSS + FLAME_CSS, [_header(profile), *body, *_scripts(flames)])
    return block + "\n" if fragment else html_page(title, block)


def report_block(css: str, body: list[str]) -> str:
    """``body`` (already HTML) in a ``div.gilwise-report`` with ``css`` inside it, every
    selector scoped to that div."""
    return "\n".join(
        ['<div class="gilwise-report">', f"<style>{scoped_css(css)}</style>", *body, "</div>"]
    )


def scoped_css(css: str) -> str:
    """Each rule of ``css`` limited to ``.gilwise-report`` (rules naming it are kept as is):
    a report embedded in someone else's page must not restyle that page."""
    rules = []
    for rule in css.split("}"):
        if "{" not in rule:
            continue
        selectors, declarations = rule.split("{", 1)
        scoped = [
            sel if sel.startswith(".gilwise-report") else f".gilwise-report {sel}"
            for sel in (part.strip() for part in selectors.split(","))
        ]
        rules.append(f"{', '.join(scoped)} {{{declarations.strip()}}}")
    return "\n".join(rules)


def html_page(title: str, block: str) -> str:
    """A whole HTML document around ``block`` (see report_block); ``title`` is escaped here."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        "</head>",
        "<body>",
        block,
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _scripts(flames: FlameSet) -> list[str]:
    """The flame graphs' data and script; none at all for a page without flame graphs."""
    if not flames.flames:
        return []
    return [
        '<script type="application/json" class="gilwise-flames">'
        f"{flames.to_json(STATE_COLOURS, STATE_LABELS)}</script>",
        f"<script>{FLAME_SCRIPT}</script>",
    ]


def _sections(profile: Profile, flames: FlameSet, prefix: str) -> list[str]:
    """The report's sections for one process; child processes follow, nested in order.
    ``prefix`` keeps the element ids of a child's sections apart from its parent's."""
    parts = [
        _verdict(profile, prefix),
        _timeline_section(profile, prefix),
        _flame_section(profile, flames, prefix),
        _threads_section(profile, prefix),
        _functions_section(profile, prefix),
        _locks_section(profile, prefix),
        f'<h2 id="{prefix}unavailable">Unavailable</h2>',
        _unavailable(profile),
    ]
    for child in profile.processes:
        child_prefix = f"{prefix}pid{child.pid if child.pid is not None else 'x'}-"
        parts.append(_process_header(child, child_prefix))
        parts.extend(_sections(child, flames, child_prefix))
        parts.append("</section>")
    return parts


def _process_header(profile: Profile, prefix: str) -> str:
    pid = "?" if profile.pid is None else str(profile.pid)
    title = f"Process {pid}" + (f": {profile.command}" if profile.command else "")
    return (
        f'<section class="process" id="{prefix}process">'
        f'<h2 class="process-title">{escape(title)}</h2>{_facts(profile)}'
    )


def _facts(profile: Profile) -> str:
    """The header's facts, then how the process ended and who started it, when known."""
    facts = list(fig.header_facts(profile))
    if profile.pid is not None:
        facts.append(("pid", str(profile.pid)))
    if profile.parent_pid is not None:
        facts.append(("parent pid", str(profile.parent_pid)))
    if profile.exit_code is not None:
        facts.append(("exit code", str(profile.exit_code)))
    if profile.end_reason:
        facts.append(("ended by", profile.end_reason))
    items = "".join(
        f"<div><dt>{escape(label)}</dt><dd>{escape(value)}</dd></div>" for label, value in facts
    )
    return f'<dl class="facts">{items}</dl>'


def _unavailable(profile: Profile) -> str:
    items = "".join(f"<li>{escape(item)}</li>" for item in fig.unavailable(profile))
    return f'<ul class="unavailable">{items}</ul>'


# --- header and verdict ------------------------------------------------------------------


def _header(profile: Profile) -> str:
    return f"<header><h1>gilwise profile</h1>{_facts(profile)}</header>"


def _verdict(profile: Profile, prefix: str = "") -> str:
    verdict = profile.verdict
    if verdict is None:
        body = '<p class="note">No verdict: this profile was not judged.</p>'
    else:
        body = (
            '<div class="verdict">'
            f'<span class="kind">{escape(verdict.kind)}</span>'
            f" &middot; recommended backend <b>{escape(verdict.recommended_backend)}</b>"
            f" &middot; expected speedup <b>{escape(fig.speedup(verdict.expected_speedup))}</b>"
            f'<p class="reason">{escape(verdict.reason)}</p>'
            f"{_evidence(profile)}</div>"
        )
    return f'<h2 id="{prefix}verdict">Verdict</h2>{body}'


def _evidence(profile: Profile) -> str:
    """The figures the verdict was made of, as the text report lists them under it."""
    lines = evidence_lines(profile)
    if not lines:
        return ""
    items = "".join(
        f"<div><dt>{escape(label)}</dt><dd>{escape(sentence)}</dd></div>"
        for label, sentence in lines
    )
    return f'<dl class="evidence">{items}</dl>'


# --- timeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bar:
    """A run of pixel columns drawn in one state's colour."""

    x_px: int
    width_px: int
    state: str
    start_s: float
    end_s: float
    purity: float  # share of the covered time that really was ``state``


def _timeline_section(profile: Profile, prefix: str = "") -> str:
    heading = f'<h2 id="{prefix}timeline">Timeline</h2>'
    end_s = max([profile.wall_s, *(span.end_s for span in profile.timeline)])
    if not profile.timeline or end_s <= 0:
        return heading + '<p class="note">No timeline: the probe recorded no thread states.</p>'
    return f"{heading}{_legend()}{timeline_svg(profile, end_s)}"


def _legend() -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{STATE_COLOURS[state]}"></span>'
        f'{escape(state)} <span class="note">({escape(STATE_LABELS[state])})</span></li>'
        for state in THREAD_STATES
    )
    return f'<ul class="legend">{items}</ul>'


# --- flame graphs -----------------------------------------------------------------------


def _flame_section(profile: Profile, flames: FlameSet, prefix: str) -> str:
    heading = f'<h2 id="{prefix}flames">Flame graphs</h2>'
    if not profile.stacks:
        return heading + (
            '<p class="note">No call stacks in this profile: it was recorded with '
            "--stack-rate 0, by attaching without stacks, or before schema gilwise.profile/2."
            "</p>"
        )
    added = flames.add(profile)
    note = (
        '<p class="note">One icicle per thread, callers above callees, each bar as wide as '
        "the frame's time and split by the state it was spent in. Click a frame to zoom to "
        "it, the top row to zoom back out; hover for seconds per state.</p>"
        '<noscript><p class="note">The flame graphs are drawn by the page\'s own script, '
        "which is disabled.</p></noscript>"
    )
    graphs = []
    for index, flame in added:
        folded = (
            f' <span class="note">({flame.folded} of its smallest frames folded into their '
            "callers to keep the page small)</span>"
            if flame.folded
            else ""
        )
        graphs.append(
            f'<h3 class="flame-title">{escape(flame.name)} '
            f'<span class="note">(tid {flame.native_id}, {fig.seconds(flame.total_s)} s)</span>'
            f"{folded}</h3>"
            f'<div class="flame" id="{prefix}flame-{index}" data-flame="{index}"></div>'
        )
    return heading + note + _legend() + "".join(graphs)


# --- locks --------------------------------------------------------------------------------


def _locks_section(profile: Profile, prefix: str) -> str:
    heading = f'<h2 id="{prefix}locks">Locks</h2>'
    if not profile.locks:
        return heading + '<p class="note">No contended locks recorded.</p>'
    # The same cells as the text report's locks table.
    head = "".join(_th(h, numeric=numeric) for h, numeric in LOCK_HEADINGS)
    rows = []
    for lock in sorted(profile.locks, key=lambda lock: -lock.wait_s):
        cells = lock_cells(lock)
        row = [
            _cell(cell, numeric=numeric, title=f"futex 0x{lock.address:x}" if i == 0 else "")
            for i, (cell, (_, numeric)) in enumerate(zip(cells, LOCK_HEADINGS))
        ]
        rows.append(f"<tr>{''.join(row)}</tr>")
    note = (
        '<p class="note">Threads blocked acquiring the same lock; "wait s" adds up every '
        "waiter's blocked time.</p>"
    )
    body = "".join(rows)
    return (
        f'{heading}{note}<table class="locks"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def timeline_svg(profile: Profile, end_s: float) -> str:
    """One row per thread, coloured by state, over ``0..end_s`` seconds."""
    rows = _rows(profile)
    height = len(rows) * (ROW_HEIGHT_PX + ROW_GAP_PX) + AXIS_HEIGHT_PX
    width = LABEL_WIDTH_PX + PLOT_WIDTH_PX + 24  # room for the last tick label
    scale = PLOT_WIDTH_PX / end_s
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" '
        'role="img" aria-label="thread states over time">'
    ]
    axis_y = len(rows) * (ROW_HEIGHT_PX + ROW_GAP_PX)
    for tick_s, label in _ticks(end_s):
        x = LABEL_WIDTH_PX + tick_s * scale
        out.append(f'<line class="grid" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{axis_y}"/>')
        out.append(
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<line class="axis" x1="{LABEL_WIDTH_PX}" y1="{axis_y}" '
        f'x2="{LABEL_WIDTH_PX + PLOT_WIDTH_PX}" y2="{axis_y}"/>'
    )
    for index, (native_id, name, spans) in enumerate(rows):
        y = index * (ROW_HEIGHT_PX + ROW_GAP_PX)
        label = name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"
        out.append(
            f'<text x="{LABEL_WIDTH_PX - 8}" y="{y + ROW_HEIGHT_PX - 5}" text-anchor="end">'
            f"{escape(label)}<title>{escape(name)} ({native_id})</title></text>"
        )
        narrow: dict[str, list[str]] = {}
        for bar in pixel_bars(spans, scale):
            x = LABEL_WIDTH_PX + bar.x_px
            if bar.width_px < NARROW_BAR_PX:
                narrow.setdefault(bar.state, []).append(
                    f"M{x} {y}h{bar.width_px}v{ROW_HEIGHT_PX}h-{bar.width_px}z"
                )
                continue
            mostly = "" if bar.purity >= 0.995 else f"mostly ({bar.purity:.0%}) "
            out.append(
                f'<rect x="{x}" y="{y}" width="{bar.width_px}" '
                f'height="{ROW_HEIGHT_PX}" fill="{STATE_COLOURS[bar.state]}">'
                f"<title>{escape(name)}: {mostly}{escape(bar.state)} "
                f"{bar.start_s:.4f}&#8211;{bar.end_s:.4f} s</title></rect>"
            )
        for state, parts in narrow.items():
            out.append(
                f'<path class="narrow" d="{"".join(parts)}" fill="{STATE_COLOURS[state]}">'
                f"<title>{escape(name)}: {escape(state)} in {len(parts)} short stretches "
                "(the threads table has its seconds)</title></path>"
            )
    out.append("</svg>")
    return "".join(out)


def _rows(profile: Profile) -> list[tuple[int, str, list[StateSpan]]]:
    """(native id, name, spans) per thread: the profile's threads first, then any thread
    that appears only in the timeline."""
    by_thread: dict[int, list[StateSpan]] = {}
    for span in profile.timeline:
        by_thread.setdefault(span.native_id, []).append(span)
    names = {t.native_id: t.name for t in profile.threads}
    for native_id in by_thread:
        names.setdefault(native_id, f"thread {native_id}")
    return [(nid, name, by_thread.get(nid, [])) for nid, name in names.items()]


def pixel_bars(spans: Iterable[StateSpan], px_per_s: float) -> list[_Bar]:
    """Merge one thread's spans into bars at most one per pixel column run.

    Each pixel column takes the state that covered most of it; neighbouring columns of the
    same state become one bar. Columns no span touches stay empty (the thread was not seen).
    """
    index_of = {state: i for i, state in enumerate(THREAD_STATES)}
    columns: dict[int, list[float]] = {}
    for span in spans:
        x0, x1 = span.start_s * px_per_s, span.end_s * px_per_s
        if x1 <= x0:
            continue
        state = index_of.get(span.state, index_of["unknown"])
        for px in range(max(0, math.floor(x0)), math.ceil(x1)):
            covered = min(x1, px + 1.0) - max(x0, float(px))
            if covered > 0:
                columns.setdefault(px, [0.0] * len(THREAD_STATES))[state] += covered
    bars: list[_Bar] = []
    # The open run: first and past-the-end pixel, state, time in that state, time covered.
    run: Optional[tuple[int, int, int, float, float]] = None
    for px in sorted(columns):
        times = columns[px]
        state = max(range(len(times)), key=times.__getitem__)
        if run is not None and run[2] == state and run[1] == px:
            run = (run[0], px + 1, state, run[3] + times[state], run[4] + sum(times))
            continue
        if run is not None:
            bars.append(_bar(run, px_per_s))
        run = (px, px + 1, state, times[state], sum(times))
    if run is not None:
        bars.append(_bar(run, px_per_s))
    return bars


def _bar(run: tuple[int, int, int, float, float], px_per_s: float) -> _Bar:
    first_px, end_px, state, state_px, covered_px = run
    return _Bar(
        x_px=first_px,
        width_px=end_px - first_px,
        state=THREAD_STATES[state],
        start_s=first_px / px_per_s,
        end_s=end_px / px_per_s,
        purity=state_px / covered_px if covered_px > 0 else 1.0,
    )


def _ticks(end_s: float, target: int = 8) -> list[tuple[float, str]]:
    """Round tick positions (1, 2 or 5 times a power of ten) from 0 to ``end_s``."""
    raw_step = end_s / target
    magnitude = 10.0 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    decimals = max(0, -math.floor(math.log10(step)))
    ticks = []
    count = int(end_s / step + 1e-9)
    for i in range(count + 1):
        tick_s = i * step
        ticks.append((tick_s, f"{tick_s:.{decimals}f} s"))
    return ticks


# --- tables ------------------------------------------------------------------------------


def _th(heading: str, *, numeric: bool) -> str:
    return f"<th>{escape(heading)}</th>" if numeric else f'<th class="text">{escape(heading)}</th>'


def _cell(value: str, *, numeric: bool, title: str = "") -> str:
    classes = [] if numeric else ["text"]
    if value == fig.NOT_MEASURED or value.startswith(fig.NOT_MEASURED + " "):
        classes.append("na")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    if title and title != value:
        attr += f' title="{escape(title)}"'
    return f"<td{attr}>{escape(value)}</td>"


def _threads_section(profile: Profile, prefix: str = "") -> str:
    heading = (
        f'<h2 id="{prefix}threads">Threads</h2><p class="note">Seconds in each state; % of each '
        "thread's own observed wall time.</p>"
    )
    if not profile.threads:
        return heading + '<p class="note">No threads observed.</p>'
    columns = fig.thread_columns(profile)
    head = "".join(_th(c.heading, numeric=c.numeric) for c in columns)
    rows = []
    for thread in profile.threads:
        cells = "".join(_cell(c.cell(thread), numeric=c.numeric) for c in columns)
        rows.append(f"<tr>{cells}<td>{state_bar(thread)}</td></tr>")
    return (
        f"{heading}<table><thead><tr>{head}<th>share of wall</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def state_bar(thread: ThreadStats, width_px: int = 120) -> str:
    """A small stacked bar of the thread's measured states over its wall time."""
    measured = fig.state_seconds(thread)
    values = [(state, measured.get(state)) for state in THREAD_STATES]
    out = [f'<svg width="{width_px}" height="10" role="img" aria-label="states">']
    x = 0.0
    for state, value in values:
        if value is None or value <= 0 or thread.wall_s <= 0:
            continue
        w = min(value / thread.wall_s, 1.0) * width_px
        w = min(w, width_px - x)
        if w <= 0:
            break
        out.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="10" '
            f'fill="{STATE_COLOURS[state]}"><title>{state} {fig.seconds(value)} s</title></rect>'
        )
        x += w
    out.append("</svg>")
    return "".join(out)


def _functions_section(profile: Profile, prefix: str = "") -> str:
    heading = f'<h2 id="{prefix}functions">Top functions</h2>'
    top = fig.top_functions(profile, HTML_TOP_FUNCTIONS)
    if not top:
        return heading + '<p class="note">No functions recorded.</p>'
    head = "".join(_th(h, numeric=i >= 2) for i, h in enumerate(fig.FUNCTION_HEADINGS))
    rows = []
    for function in top:
        # A page wraps long paths, so it can show them whole; hovering shows the full path.
        name, where, *figures = fig.function_cells(function, location_chars=400)
        numbers = "".join(_cell(figure, numeric=True) for figure in figures)
        rows.append(
            f"<tr>{_cell(name, numeric=False)}"
            f"{_cell(where, numeric=False, title=f'{function.file}:{function.line}')}"
            f"{numbers}</tr>"
        )
    note = (
        f'<p class="note">Top {len(top)} of {len(profile.functions)} by {fig.FUNCTION_RANKING} '
        "(self time of the innermost Python frame; lock waits are shown, not ranked).</p>"
    )
    body = "".join(rows)
    return f"{heading}{note}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _render_format(profile: Profile, options: RenderOptions) -> str:
    return render_html(profile)


FORMAT = Format(
    "html", (".html", ".htm"), _render_format, "one self-contained page for a browser", rank=20
)
