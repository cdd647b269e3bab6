"""Properties that hold for any names and any timeline, checked with generated profiles."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from gilwise._model import THREAD_STATES, Profile, PythonInfo, StateSpan, ThreadStats
from gilwise.report import render
from gilwise.report._html import pixel_bars

# Printable text: control characters are not valid in the XML of the inline SVG.
NAMES = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
SPANS = st.lists(
    st.tuples(
        st.sampled_from(THREAD_STATES),
        st.floats(0.0, 10.0, allow_nan=False),
        st.floats(0.0, 2.0, allow_nan=False),
    ),
    max_size=60,
)


def _profile(name: str, spans: list[tuple[str, float, float]]) -> Profile:
    timeline, now = [], 0.0
    for state, gap_s, length_s in spans:
        start = now + gap_s
        timeline.append(StateSpan(7, state, start, start + length_s))  # type: ignore[arg-type]
        now = start + length_s
    return Profile(
        python=PythonInfo("3.11.7", "CPython", True),
        cores=2,
        wall_s=max(now, 1.0),
        held_fraction=0.5,
        threads=(ThreadStats(name, 7, max(now, 1.0), 0.5, 0.5, 0.0, 0.0, 0.0, 0.0),),
        timeline=tuple(timeline),
        command=name,
    )


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


@settings(max_examples=60, deadline=None)
@given(NAMES)
def test_any_thread_name_reads_back_exactly_from_html_and_trace(name: str):
    profile = _profile(name, [("gil_held", 0.0, 0.5)])
    parser = _Text()
    parser.feed(render(profile, "html"))
    parser.close()
    assert name in parser.chunks  # a table cell holds exactly the name
    trace = json.loads(render(profile, "trace"))
    names = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"]
    assert names == [name]


@settings(max_examples=100, deadline=None)
@given(SPANS, st.sampled_from([1.0, 90.0, 900.0]))
def test_bars_are_ordered_disjoint_and_only_where_spans_are(spans, px_per_s: float):
    profile = _profile("t", spans)
    bars = pixel_bars(profile.timeline, px_per_s)
    for before, after in zip(bars, bars[1:]):
        assert before.x_px + before.width_px <= after.x_px
        # Neighbours touching each other differ in state, else they would be one bar.
        assert before.x_px + before.width_px < after.x_px or before.state != after.state
    for bar in bars:
        assert bar.width_px >= 1 and 0.0 < bar.purity <= 1.0 + 1e-9
        assert any(
            s.start_s * px_per_s < bar.x_px + bar.width_px and s.end_s * px_per_s > bar.x_px
            for s in profile.timeline
        )
