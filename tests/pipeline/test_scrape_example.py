"""examples/scrape.py runs end to end (small) and reports what it did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "scrape.py"


@pytest.mark.timeout(120)
def test_scrape_example_counts_every_word_and_reports_stages(tmp_path):
    out = tmp_path / "counts.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--pages",
            "12",
            "--latency-ms",
            "5",
            "--words",
            "200",
            "--out",
            str(out),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert [stage["name"] for stage in stats["stages"]] == ["fetch", "parse", "store"]
    assert stats["delivered_items"] == 12 and stats["finished"]
    assert stats["stages"][0]["backend"] == "thread"  # fetching waits: threads
    assert stats["bottleneck"]
    result = json.loads(out.read_text())
    extra_per_page = 2 + 3  # the title "page N" and one "more" link per 80 words
    assert result["pages"] == 12 and result["words"] == 12 * (200 + extra_per_page)


@pytest.mark.timeout(120)
def test_scrape_example_prints_the_bottleneck_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--pages",
            "6",
            "--latency-ms",
            "1",
            "--words",
            "100",
            "--out",
            str(tmp_path / "c.json"),
            "--backend",
            "thread",
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert "bottleneck" in done.stdout or "saturated" in done.stdout
    assert "wrote" in done.stdout
