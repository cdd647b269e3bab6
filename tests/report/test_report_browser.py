"""The HTML report in a real browser (headless Chromium): the flame graphs are drawn by the
page's own script, zoom works, and a screenshot shows them.

Chromium comes from Debian's ``chromium`` package, which .ci/run installs where it can; where
it is missing these tests skip, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from png_pixels import colour_counts, read_png
from report_profiles import stacked_profile

from gilwise.report import render
from gilwise.report._html import STATE_COLOURS

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium not found (Debian package 'chromium'; .ci/run installs it "
        "when apt-get can): the HTML report's browser test cannot run",
    ),
]
WINDOW = (1200, 1100)


def _chromium(tmp_path: Path, *args: str, timeout_s: float = 120) -> str:
    """Run headless Chromium once with a fresh profile directory; its whole process group
    is killed if it outlives ``timeout_s``."""
    assert CHROMIUM is not None
    user_data = tmp_path / f"chromium-{len(list(tmp_path.iterdir()))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={user_data}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        shutil.rmtree(user_data, ignore_errors=True)
    assert process.returncode == 0, f"chromium exited {process.returncode}"
    return out.decode("utf-8", "replace")


@pytest.fixture
def page(tmp_path: Path) -> Path:
    # No timeline: every state colour on screen then comes from the flame graphs (and the
    # legend swatches and the threads table's small bars).
    path = tmp_path / "report.html"
    path.write_text(render(replace(stacked_profile(), timeline=()), "html"), encoding="utf-8")
    return path


def _flames(dom: str) -> dict[int, str]:
    found = re.findall(r'<div class="flame" id="[^"]*flame-(\d+)"[^>]*>(.*?)</div>', dom, re.S)
    return {int(index): body for index, body in found}


def _node_widths(flame: str) -> dict[int, float]:
    """Each drawn frame's total bar width (its state segments added up)."""
    widths: dict[int, float] = {}
    for node, body in re.findall(r'<g data-node="(\d+)"[^>]*>(.*?)</g>', flame, re.S):
        widths[int(node)] = sum(float(w) for w in re.findall(r'width="([\d.]+)"', body))
    return widths


def test_the_script_draws_every_threads_flame_graph(page: Path, tmp_path: Path):
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    flames = _flames(dom)
    assert sorted(flames) == [0, 1, 2, 3]  # 3 threads + the child process's main thread
    drawn = {index: _node_widths(body) for index, body in flames.items()}
    # MainThread: root, <module>, join. worker-1: root, _bootstrap, run, work, spin, digest.
    # worker-2: + fetch and "(no Python stack)". The child: root, <module>, spin.
    assert [len(drawn[i]) for i in range(4)] == [3, 6, 7, 3]
    width = float(re.search(r'<svg[^>]* width="(\d+)"', flames[1]).group(1))
    worker_1 = drawn[1]
    assert worker_1[0] == pytest.approx(width - 1, abs=0.5)
    # spin: 1.7 s of worker-1's 2.0 s; digest 0.1 s.
    assert worker_1[4] == pytest.approx(width * 1.7 / 2.0 - 1, abs=1.0)
    assert worker_1[5] == pytest.approx(width * 0.1 / 2.0 - 1, abs=1.0)
    # spin's bar is split by state: 0.8 s held, 0.9 s waiting for the GIL.
    spin = re.search(r'<g data-node="4"[^>]*>(.*?)</g>', flames[1], re.S).group(1)
    segments = re.findall(r'width="([\d.]+)"[^>]*fill="(#[0-9a-f]+)"', spin)
    by_colour = {colour: float(w) for w, colour in segments}
    inner = width * 0.85 - 1
    assert by_colour[STATE_COLOURS["gil_held"]] == pytest.approx(inner * 0.8 / 1.7, abs=1.0)
    assert by_colour[STATE_COLOURS["gil_wait"]] == pytest.approx(inner * 0.9 / 1.7, abs=1.0)


def test_zooming_to_a_frame_widens_it_and_dims_its_callers(page: Path, tmp_path: Path):
    # The link form of a click on worker-1's "spin" (flame 1, frame 4).
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#zoom=1.4")
    flames = _flames(dom)
    assert 'data-zoomed="4"' in re.search(r'<div class="flame" id="flame-1"[^>]*>', dom).group(0)
    width = float(re.search(r'<svg[^>]* width="(\d+)"', flames[1]).group(1))
    drawn = _node_widths(flames[1])
    assert sorted(drawn) == [0, 1, 2, 3, 4]  # spin and its callers; digest is not in view
    assert drawn[4] == pytest.approx(width - 1, abs=0.5)
    assert flames[1].count('class="dim"') == 4
    assert 'data-zoomed="0"' in re.search(r'<div class="flame" id="flame-2"[^>]*>', dom).group(0)


def test_a_screenshot_shows_the_flame_graphs(page: Path, tmp_path: Path):
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    width, height, _ = read_png(shot)
    assert (width, height) == WINDOW
    counts = colour_counts(shot)
    background = counts["#ffffff"] / (width * height)
    assert background < 0.9, "the screenshot is (nearly) blank"
    # worker-1 and worker-2 alone hold the GIL over ~1.7 s of 2 s across 4-5 rows of 17 px:
    # tens of thousands of red pixels, far more than the legend and table swatches.
    assert counts[STATE_COLOURS["gil_held"]] > 40_000
    assert counts[STATE_COLOURS["gil_wait"]] > 40_000


def test_reports_embedded_side_by_side_each_draw_their_own(tmp_path: Path):
    # As a notebook shows two profiles: two fragments in one page of someone else's.
    from report_profiles import hostile_profile

    from gilwise.report._html import render_html

    page = tmp_path / "notebook.html"
    page.write_text(
        "<!DOCTYPE html><html><body><h1>notebook</h1>"
        + render_html(stacked_profile(), fragment=True)
        + render_html(hostile_profile(), fragment=True)
        + "</body></html>",
        encoding="utf-8",
    )
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    first, second = dom.split('<div class="gilwise-report">')[1:]
    assert [len(_node_widths(body)) for body in _flames(first).values()] == [3, 6, 7, 3]
    # The hostile profile: one frame under each thread's root (and the second thread's 0.1 s
    # of GIL held that no stack explains), with its own names.
    assert [len(_node_widths(body)) for body in _flames(second).values()] == [2, 3]
    assert "&lt;/script&gt;&lt;!--" in second and "&lt;/script&gt;&lt;!--" not in first


def test_hover_shows_seconds_per_state_and_a_click_zooms(tmp_path: Path):
    # The report, then a script of the test's own that points at worker-1's "spin" bar and
    # clicks its "digest" bar, as a user would; the DOM is read after both.
    report = render(replace(stacked_profile(), timeline=()), "html")
    interact = """<script>
    (function () {
      var flame = document.querySelector('.flame[data-flame="1"]');
      var spin = flame.querySelector('g[data-node="4"] rect');
      spin.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: 50, clientY: 50}));
      var digest = flame.querySelector('g[data-node="5"] rect');
      digest.dispatchEvent(new MouseEvent("click", {bubbles: true}));
    })();
    </script>"""
    page = tmp_path / "interact.html"
    page.write_text(report.replace("</body>", interact + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    tip = re.search(r'<div class="flame-tip"[^>]*>(.*?)</div></div>', dom, re.S)
    assert tip is not None
    text = re.sub(r"<[^>]+>", "|", tip.group(1))
    for line in (
        "spin",
        "/home/user/project/app/main.py:5",
        "1.700 s · 85.0% of the thread",
        "holding the GIL: 0.800 s (47.1%)",
        "waiting for the GIL: 0.900 s (52.9%)",
    ):
        assert line in text
    holder = re.search(r'<div class="flame" id="flame-1"[^>]*>', dom).group(0)
    assert 'data-zoomed="5"' in holder
    drawn = _node_widths(_flames(dom)[1])
    assert sorted(drawn) == [0, 1, 2, 3, 5]  # digest and its callers; spin out of view


def test_a_real_profile_draws_its_threads_flame_graphs(tmp_path: Path):
    import subprocess as sp
    import sys

    script = tmp_path / "two_spinners.py"
    script.write_text(
        "import threading\n"
        "def spin():\n"
        "    total = 0\n"
        "    for i in range(1_500_000):\n"
        "        total += i\n"
        "threads = [threading.Thread(target=spin, name=f'spinner-{k}') for k in range(2)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n",
        encoding="utf-8",
    )
    page = tmp_path / "real.html"
    done = sp.run(
        [sys.executable, "-m", "gilwise", "profile", "-o", str(page), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    titles = re.findall(r'<h3 class="flame-title">([^<]*)', dom)
    assert {"spinner-0 ", "spinner-1 "} <= set(titles)
    for index, body in _flames(dom).items():
        assert _node_widths(body), f"flame {index} was not drawn"
    # Each spinner's graph reaches its own function.
    assert dom.count(">spin</text>") >= 2
