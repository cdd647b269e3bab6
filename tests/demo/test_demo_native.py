"""The native experiment's NumPy helper: one BLAS thread, or a clear reason why not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gilwise.demo import _numpy_matmul


def _run_helper(env: dict[str, str], size: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "gilwise.demo._numpy_matmul", str(size), "2", "0", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_numpy_the_rows_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)
    answer = _numpy_matmul.measure(size=8, count=2, measure_gil=False, repeats=1)
    assert answer == {"unavailable": "numpy not installed (pip install 'gilwise[numpy]')"}


def test_helper_refuses_to_measure_a_multithreaded_blas():
    env = {k: v for k, v in os.environ.items() if k not in _numpy_matmul.SINGLE_THREAD_ENV}
    answer = _run_helper(env, size=8)
    assert "BLAS thread limits not set: OPENBLAS_NUM_THREADS" in answer["unavailable"]


def test_helper_measures_both_ways_with_one_blas_thread():
    rows = _run_helper(dict(os.environ, **_numpy_matmul.SINGLE_THREAD_ENV), size=64)["rows"]
    assert [(row["way"], row["workers"]) for row in rows] == [("sequential", 1), ("threads", 2)]
    assert all(row["wall_s"] > 0 for row in rows)
