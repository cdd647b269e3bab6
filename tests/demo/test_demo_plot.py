"""--plot: an SVG that parses, a PNG with PNG magic bytes, clear errors otherwise."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree

import pytest

from gilwise.demo._plot import check_target, write_plot
from gilwise.demo._results import DemoResult, ExperimentResult, Row, unavailable, with_speedups
from gilwise.errors import UnsupportedError

SVG = "{http://www.w3.org/2000/svg}"


def _result() -> DemoResult:
    rows = with_speedups(
        (
            Row("spin loop", "sequential", 1, 2.0, 2.0),
            Row("spin loop", "threads", 2, 2.0, 2.0),
            Row("spin loop", "processes", 2, 1.0, 2.0),
            unavailable("spin loop", "sub-interpreters", 2, "needs Python 3.12+, this is 3.11.7"),
        )
    )
    cpu = ExperimentResult("cpu", "CPU-bound <pure> Python & co", "work", rows)
    return DemoResult((cpu,), "3.11.7", 2, True, 1.0)


def test_svg_is_valid_xml_with_one_bar_per_measured_row(tmp_path):
    target = tmp_path / "speedups.svg"
    write_plot(_result(), target)
    root = ElementTree.parse(target).getroot()
    assert root.tag == f"{SVG}svg"
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    assert [bar.find(f"{SVG}title").text for bar in bars] == [
        "sequential: 1.00x",
        "threads: 1.00x",
        "processes: 2.00x",
    ]


def test_png_starts_with_the_png_signature(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "speedups.png"
    write_plot(_result(), target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UnsupportedError, match=r"pip install 'gilwise\[plot\]'"):
        check_target(tmp_path / "speedups.png")


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg or \.png"):
        check_target(tmp_path / "speedups.jpg")
