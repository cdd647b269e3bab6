"""benchmarks/bench_peers.py runs end to end (--quick, tiny sizes) and prints its tables whole.

Only the shape is checked: timings belong to the benchmark, not to a test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_peers.py"
TOOLS = ["sequential", "gilwise auto"]  # the peers come from the [bench] extra, not CI's
CELL = re.compile(r"^(\d+\.\d+ s|> \d+(\.\d+)? s)$")


@pytest.mark.timeout(240)
def test_bench_peers_quick_prints_every_row_and_the_ratio_column() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--tools", *TOOLS],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "errors:" not in out, out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    header, *body = [row for row in rows if not row.startswith("| first result")]
    assert header == (
        "| workload | "
        + " | ".join(TOOLS)
        + " | auto / best of others | same, round by round: median (range) |"
    )
    workload_rows = body[: len(body) - 2]  # then the two first-result rows
    assert len(workload_rows) == 10, out
    assert any(row.startswith("| second job in the same process") for row in workload_rows)
    assert any(row.startswith("| x + 1 over") for row in workload_rows)
    for row in workload_rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 1 + len(TOOLS) + 2, row
        assert all(CELL.match(cell) for cell in cells[1:-2]), row
        assert re.match(r"^\d+\.\d\d$", cells[-2]), row
        assert re.match(r"^\d+\.\d\d \(\d+\.\d\d-\d+\.\d\d\)$", cells[-1]), row
    latency_rows = [row for row in rows if row.startswith("| x + 1 |") or "costly" in row]
    assert any(row.startswith("| x + 1 |") for row in latency_rows), out
    assert "Targets (issue 10):" in out
    # The machine's ceiling for two pure-Python loops at once: at most the 2 cores' work
    # (plus timing noise), and more than one core gives would make no sense below ~0.5.
    ceiling = re.search(r"Two pure-Python loops at once .* did (\d+\.\d\d)x the work", out)
    assert ceiling, out
    assert 0.5 < float(ceiling.group(1)) <= 2.3, out
