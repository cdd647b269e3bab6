"""The flame graphs' data: each thread's stacks folded into a call tree whose time adds up,
kept small for big programs, and safe inside the page's script element."""

from __future__ import annotations

import json
import re

from report_profiles import HOSTILE_NAME, big_profile, hostile_profile, stacked_profile

from gilwise._model import THREAD_STATES, Frame, StackStats
from gilwise.report import render
from gilwise.report._flame import NO_STACK, FrameTable, thread_flames

HELD, WAIT = THREAD_STATES.index("gil_held"), THREAD_STATES.index("gil_wait")
NATIVE, IO = THREAD_STATES.index("native"), THREAD_STATES.index("io_wait")


def _tree(flame, frames: FrameTable) -> dict[tuple[str, ...], dict[int, int]]:
    """path of function names -> self microseconds per state index."""
    paths: list[tuple[str, ...]] = []
    out = {}
    for position, row in enumerate(flame.nodes):
        name = "all" if row[0] < 0 else frames.rows[row[0]][0]
        path = (name,) if position == 0 else (*paths[position - row[1]], name)
        paths.append(path)
        out[path] = dict(zip(row[2::2], row[3::2]))
    return out


def test_stacks_fold_into_a_tree_with_self_time_per_state():
    frames = FrameTable()
    flames = thread_flames(stacked_profile(), frames)
    assert [(f.name, f.native_id, f.total_s) for f in flames] == [
        ("MainThread", 1000, 2.0),
        ("worker-1", 1001, 2.0),
        ("worker-2", 1002, 2.0),
    ]
    worker_1 = _tree(flames[1], frames)
    assert worker_1 == {
        ("all",): {},
        ("all", "_bootstrap"): {},
        ("all", "_bootstrap", "run"): {},
        ("all", "_bootstrap", "run", "work"): {HELD: 200_000},
        ("all", "_bootstrap", "run", "work", "spin"): {HELD: 800_000, WAIT: 900_000},
        ("all", "_bootstrap", "run", "work", "digest"): {NATIVE: 100_000},
    }
    # Widest child first: spin (1.7 s) before digest (0.1 s).
    assert list(worker_1)[4:] == [
        ("all", "_bootstrap", "run", "work", "spin"),
        ("all", "_bootstrap", "run", "work", "digest"),
    ]


def test_time_no_stack_explains_hangs_under_the_root():
    frames = FrameTable()
    worker_2 = _tree(thread_flames(stacked_profile(), frames)[2], frames)
    assert worker_2[("all", NO_STACK.function)] == {WAIT: 400_000}
    assert worker_2[("all", "_bootstrap", "run", "fetch")] == {IO: 100_000}


def test_a_big_program_keeps_its_widest_frames_and_all_its_time():
    profile = big_profile()
    frames = FrameTable()
    flames = thread_flames(profile, frames, budget=5_000)
    assert len(flames) == 10
    for flame in flames:
        assert len(flame.nodes) <= 1_000  # budget 5000 shared by 10, at least 1000 each
        assert flame.folded > 0
        kept_us = sum(sum(row[3::2]) for row in flame.nodes)
        assert kept_us == round(flame.total_s * 1e6)  # folded frames' time stays in callers
        # Every kept frame's parent is kept, and comes before it.
        assert all(row[1] >= 1 for row in flame.nodes[1:])


def test_deep_recursion_is_walked_without_recursing():
    frames = tuple(Frame(f"f{i}", "deep.py", i) for i in range(5_000))
    profile = stacked_profile()
    deep = StackStats(1001, "gil_held", frames, 0.5, 500)
    from dataclasses import replace

    flames = thread_flames(replace(profile, stacks=(*profile.stacks, deep)), FrameTable())
    assert len(flames[1].nodes) > 5_000


def test_html_of_a_10_thread_10_s_program_stays_under_a_megabyte():
    page = render(big_profile(), "html")
    assert len(page.encode("utf-8")) < 1_000_000
    assert page.count('<div class="flame"') == 10
    assert "of its smallest frames folded into their callers" in page


def test_names_cannot_end_the_script_element_and_read_back_exactly():
    page = render(hostile_profile(), "html")
    data = re.search(
        r'<script type="application/json" class="gilwise-flames">(.*?)</script>', page, re.S
    )
    assert data is not None
    assert "<" not in data.group(1) and ">" not in data.group(1) and "&" not in data.group(1)
    names = [row[0] for row in json.loads(data.group(1))["frames"]]
    assert HOSTILE_NAME in names and "</script><!--" in names
