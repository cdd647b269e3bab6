"""The HTML report is one self-contained, well-formed page; every name is escaped; long
timelines are merged to at most one bar per pixel column."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html import escape
from html.parser import HTMLParser

import pytest
from report_profiles import (
    HOSTILE_FILE,
    HOSTILE_MARKUP,
    HOSTILE_NAME,
    free_threaded_profile,
    gil_bound_profile,
    hostile_profile,
    io_profile,
)

from gilwise._model import FunctionStats, Profile, StateSpan, ThreadStats
from gilwise.report import render
from gilwise.report._html import PLOT_WIDTH_PX, STATE_COLOURS, pixel_bars

SVG_NS = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"}


class _Page(HTMLParser):
    """Collects the text and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


def _timeline(page: str) -> ET.Element:
    match = re.search(r'<svg xmlns="http://www.w3.org/2000/svg".*?</svg>', page, re.S)
    assert match, "no timeline svg"
    return ET.fromstring(match.group(0))


def test_page_is_well_formed_and_self_contained(any_profile: Profile):
    page = render(any_profile, "html")
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "link" not in parsed.tags and "img" not in parsed.tags
    # Scripts only inline, and only to draw flame graphs: the flame data and its drawing code.
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts == (
        [' type="application/json" class="gilwise-flames"', ""] if any_profile.stacks else []
    )
    for needle in ("src=", "href=", "url(", "@import", "@font-face"):
        assert needle not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_hostile_names_are_escaped_and_read_back_exactly():
    page = render(hostile_profile(), "html")
    text = "".join(_parse(page).text)
    for raw in (HOSTILE_NAME, HOSTILE_FILE, "R&D said <b>so</b>", "</title><script>"):
        assert raw not in page
    assert HOSTILE_NAME in text
    assert HOSTILE_MARKUP in text
    assert HOSTILE_FILE + ":7" in text
    assert f'title="{escape(HOSTILE_FILE)}:7"' not in page  # shown whole: no title needed
    assert "R&D said <b>so</b>" in text
    assert "&lt;script&gt;alert(&quot;x&quot; &amp; &#x27;y&#x27;)&lt;/script&gt;" in page


def test_header_tables_and_verdict_show_the_profile_numbers():
    text = " ".join(_parse(render(gil_bound_profile(), "html")).text)
    for fact in (
        "CPython 3.11.7",
        "98.8%",
        "2.000 s",
        "gil-bound",
        "process",
        "1.9x",
        "1.998",
        "50.1%",
        "1.234",
        "1.111",
        "helper_1",
        "Top 21 of 21",
    ):
        assert fact in text


def test_unmeasured_cells_are_marked_n_a():
    page = render(free_threaded_profile(), "html")
    assert page.count('<td class="na">n/a</td>') == 2 * 4
    assert "n/a (no GIL)" in page
    assert "off (free-threaded)" in page
    assert "No timeline: the probe recorded no thread states." in page
    assert '<ul class="unavailable"><li>gil_held</li><li>gil_wait</li></ul>' in page


def test_timeline_has_one_labelled_row_per_thread_with_exact_bars():
    svg = _timeline(render(io_profile(), "html"))
    labels = [t.text for t in svg.iter(f"{SVG_NS}text") if t.text and t.text.startswith("fetch")]
    assert labels == ["fetch-0", "fetch-1", "fetch-2", "fetch-3"]
    rects = [r for r in svg.iter(f"{SVG_NS}rect")]
    first_row = [r for r in rects if r.get("y") == "0"]
    # 1.0 s over 900 px: 10 ms of GIL, 980 ms of I/O, 10 ms unknown.
    assert [(r.get("fill"), r.get("x"), r.get("width")) for r in first_row] == [
        (STATE_COLOURS["gil_held"], "170", "9"),
        (STATE_COLOURS["io_wait"], "179", "882"),
        (STATE_COLOURS["unknown"], "1061", "9"),
    ]
    assert len(rects) == 4 * 3


def test_legend_names_every_state():
    page = render(io_profile(), "html")
    legend = re.search(r'<ul class="legend">(.*?)</ul>', page, re.S)
    assert legend
    for state, colour in STATE_COLOURS.items():
        assert f"background:{colour}" in legend.group(1)
        assert state in legend.group(1)


def test_adjacent_spans_of_one_state_become_one_bar():
    spans = [StateSpan(1, "gil_held", 0.0, 0.5), StateSpan(1, "gil_held", 0.5, 1.0)]
    (bar,) = pixel_bars(spans, px_per_s=PLOT_WIDTH_PX)
    assert (bar.x_px, bar.width_px, bar.state, bar.purity) == (0, PLOT_WIDTH_PX, "gil_held", 1.0)


def test_a_gap_in_observation_stays_empty():
    spans = [StateSpan(1, "io_wait", 0.0, 0.25), StateSpan(1, "io_wait", 0.75, 1.0)]
    bars = pixel_bars(spans, px_per_s=100)
    assert [(b.x_px, b.width_px) for b in bars] == [(0, 25), (75, 25)]


def test_a_pixel_takes_its_majority_state_and_says_it_is_mixed():
    # 1 px = 1 s: 0.7 s holding then 0.3 s waiting in the same pixel.
    spans = [StateSpan(1, "gil_held", 0.0, 0.7), StateSpan(1, "gil_wait", 0.7, 1.0)]
    (bar,) = pixel_bars(spans, px_per_s=1.0)
    assert bar.state == "gil_held"
    assert bar.purity == pytest.approx(0.7)


def test_long_timeline_is_merged_to_at_most_one_bar_per_pixel():
    wall_s, step_s = 10.0, 0.0001
    turns = int(wall_s / step_s)
    timeline = []
    for turn in range(turns):
        holder, waiter = (1, 2) if turn % 2 else (2, 1)
        start = turn * step_s
        timeline.append(StateSpan(holder, "gil_held", start, start + step_s))
        timeline.append(StateSpan(waiter, "gil_wait", start, start + step_s))
    threads = tuple(ThreadStats(f"t{i}", i, wall_s, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0) for i in (1, 2))
    profile = replace(gil_bound_profile(), wall_s=wall_s, threads=threads, timeline=tuple(timeline))
    page = render(profile, "html")
    svg = _timeline(page)
    widths = [int(r.get("width")) for r in svg.iter(f"{SVG_NS}rect")]
    # Bars too narrow to point at are drawn as one path per thread and state.
    for path in svg.iter(f"{SVG_NS}path"):
        widths += [int(w) for w in re.findall(r"M\d+ \d+h(\d+)v", path.get("d"))]
    assert len(widths) <= 2 * PLOT_WIDTH_PX
    # The two threads share every pixel evenly, so each bar is a tie or near one: "mostly".
    assert sum(widths) == 2 * PLOT_WIDTH_PX
    assert len(page) < 400_000


def test_narrow_bars_are_paths_with_one_tooltip_per_thread_and_state():
    # 900 spans of 0.1 s over 90 s and 900 px: 1 px each, alternating, too narrow to point at.
    spans = [
        StateSpan(1001, "gil_held" if k % 2 else "gil_wait", k / 10, (k + 1) / 10)
        for k in range(900)
    ]
    profile = replace(gil_bound_profile(), wall_s=90.0, timeline=tuple(spans))
    svg = _timeline(render(profile, "html"))
    assert not [r for r in svg.iter(f"{SVG_NS}rect") if r.get("y") == "24"]  # worker-1's row
    paths = {p.get("fill"): p for p in svg.iter(f"{SVG_NS}path")}
    assert set(paths) == {STATE_COLOURS["gil_held"], STATE_COLOURS["gil_wait"]}
    title = paths[STATE_COLOURS["gil_held"]].find(f"{SVG_NS}title").text
    assert title == "worker-1: gil_held in 450 short stretches (the threads table has its seconds)"


def test_ticks_are_round_and_cover_the_run():
    svg = _timeline(render(gil_bound_profile(), "html"))
    ticks = [t.text for t in svg.iter(f"{SVG_NS}text") if t.text and t.text.endswith(" s")]
    assert ticks == ["0.0 s", "0.5 s", "1.0 s", "1.5 s", "2.0 s"]


def test_installed_code_is_shortened_with_the_full_path_on_hover():
    stdlib = FunctionStats("wait", "/opt/py/lib/python3.12/threading.py", 320, 0.5, 0.0)
    page = render(replace(io_profile(), functions=(stdlib,)), "html")
    assert (
        '<td class="text" title="/opt/py/lib/python3.12/threading.py:320">threading.py:320</td>'
        in page
    )


def test_a_fragment_is_one_div_whose_styles_stay_inside_it(any_profile: Profile):
    from gilwise.report._html import render_html

    fragment = render_html(any_profile, fragment=True)
    assert fragment.startswith('<div class="gilwise-report">')
    assert fragment.rstrip().endswith("</div>")
    assert "<html" not in fragment and "<body" not in fragment
    css = re.search(r"<style>(.*?)</style>", fragment, re.S).group(1)
    selectors = [
        s.strip() for rule in css.split("}") if "{" in rule for s in rule.split("{")[0].split(",")
    ]
    assert selectors and all(s.startswith(".gilwise-report") for s in selectors)


def test_how_each_process_ended_is_in_its_header():
    from report_profiles import stacked_profile

    crashed = replace(stacked_profile(), exit_code=139, end_reason="signal SIGSEGV")
    text = " ".join(_parse(render(crashed, "html")).text)
    assert "pid 999 exit code 139 ended by signal SIGSEGV" in text
    assert "Process 5000: python child.py" in text
    assert "pid 5000 parent pid 999 exit code 0" in text
