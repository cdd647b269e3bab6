"""The text and JSON renderings of a demo result (made-up numbers, no measuring)."""

from __future__ import annotations

import dataclasses
import io
import json

from rich.console import Console

from gilwise.demo._json import render_json
from gilwise.demo._results import DemoResult, ExperimentResult, Row, unavailable, with_speedups
from gilwise.demo._text import render_text


def _result(gil_measured: bool) -> DemoResult:
    rows = with_speedups(
        (
            Row("sha256", "sequential", 1, 1.0, 1.0, gil_held_fraction=0.02),
            Row("sha256", "threads", 2, 0.5, 1.0, gil_held_fraction=0.03),
            unavailable(
                "numpy matmul",
                "sequential",
                1,
                "numpy not installed (pip install 'gilwise[numpy]')",
            ),
        )
    )
    native = ExperimentResult("native", "native code", "sha256 of 2 x 8 MiB", rows, "It scaled.")
    return DemoResult((native,), "3.11.7", 2, True, 0.5, gil_measured=gil_measured)


def _text(result: DemoResult) -> str:
    out = io.StringIO()
    render_text(result, Console(file=out, width=140))
    return out.getvalue()


def test_text_has_the_table_the_sentence_and_notes_as_written():
    text = _text(_result(gil_measured=True))
    assert "native: native code" in text
    assert "2.00x" in text and "It scaled." in text
    assert "GIL held" in text and "3%" in text
    # Square brackets are text, not rich markup.
    assert "pip install 'gilwise[numpy]'" in text


def test_text_drops_the_gil_column_when_nothing_measured_it():
    table, _, footnote = _text(_result(gil_measured=False)).partition("(GIL held share not shown")
    assert "GIL held" not in table
    assert "probe is not available" in footnote


def test_json_round_trips_every_row_with_nulls_for_missing_numbers():
    data = json.loads(render_json(_result(gil_measured=False)))
    assert data["schema"] == "gilwise.demo/1"
    (native,) = data["experiments"]
    assert native["rows"][1]["speedup_vs_sequential"] == 2.0
    missing = native["rows"][2]
    assert missing["wall_s"] is None and missing["speedup_vs_sequential"] is None
    assert missing["note"].startswith("numpy not installed")
    assert dataclasses.asdict(_result(False))["experiments"][0]["sentence"] == "It scaled."
