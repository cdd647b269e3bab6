"""benchmarks/bench_pipeline.py runs end to end (tiny pages, two latencies) and prints one
whole table per latency, each answer checked against the others by the benchmark itself.

Only the shape is checked: timings belong to the benchmark, not to a test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pipeline.py"
VARIANTS = [
    "gilwise Pipeline, backend=auto",
    "gilwise Pipeline, all threads",
    "ThreadPool + ProcessPool by hand",
]


@pytest.mark.timeout(240)
def test_bench_pipeline_prints_one_table_per_latency() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--pages", "6", "--page-kb", "4", "--repeat", "1", "--cpu-sample", "2"),
            *("--import-cost-s", "0.01", "--latency-ms", "5", "20", "--only", *VARIANTS),
        ],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    headers = re.findall(r"^Scrape: 6 pages of \d+ KB, (\d+) ms latency", out, re.MULTILINE)
    assert headers == ["5", "20"], out
    for table in out.split("Scrape: ")[1:]:
        rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
        assert [row.split("|")[1].strip() for row in rows] == VARIANTS, table
        for row in rows:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            assert re.match(r"^\d+\.\d\d$", cells[2]), row  # wall s: no error
        assert "gilwise auto vs the best single model (gilwise Pipeline, all threads)" in table
        assert "gilwise auto vs the hand-written" in table
