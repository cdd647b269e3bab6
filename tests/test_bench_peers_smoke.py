"""benchmarks/bench_peers.py runs end to end (--quick, tiny sizes) and prints its tables whole.

Only the shape is checked: timings belong to the benchmark, not to a test.
"""

from __future__ import annotations

import importlib.util
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


def test_the_round_by_round_ratio_pairs_each_round_with_its_own_best_tool() -> None:
    # Known times: round 1 the loop is best (0.10 s) and auto takes 0.20 s (0.5); round 2
    # mp.Pool is best (0.09 s), auto 0.09 s (1.0); round 3 auto 0.05 s, best 0.10 s (2.0).
    # A tool that timed out, and one with fewer rounds, count only where they have a time.
    spec = importlib.util.spec_from_file_location("bench_peers_for_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    row = {
        "sequential": bench.Cell([0.10, 0.12, 0.10]),
        "mp.Pool()": bench.Cell([0.15, 0.09]),
        "joblib(-1)": bench.Cell([0.01], timed_out=True),
        bench.AUTO: bench.Cell([0.20, 0.09, 0.05]),
    }
    assert bench.paired_ratios(row) == pytest.approx([0.5, 1.0, 2.0])
    assert bench.paired_ratios({"sequential": bench.Cell([0.1])}) == []  # no auto: no ratio
