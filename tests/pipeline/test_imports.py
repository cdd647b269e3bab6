"""Running a pipeline imports only what it uses (every script that runs one pays its imports)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_a_pipeline_over_a_plain_iterable_does_not_import_asyncio():
    # asyncio (with ssl, subprocess, ...) costs 20-40 ms: only async sources and
    # `async for` need it, and there the caller's event loop has loaded it already.
    code = (
        "import sys, gilwise\n"
        "stats = gilwise.Pipeline(range(20)).map(abs).map(str, backend='thread')"
        ".map(len, backend='inline').run()\n"
        "assert stats.delivered_items == 20, stats\n"
        "print('asyncio' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
