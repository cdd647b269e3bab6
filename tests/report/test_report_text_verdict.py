"""The text report's verdict (with its evidence), locks section and wait-reason columns, on
hand-built profiles whose every number is known."""

from __future__ import annotations

from dataclasses import replace

from report_profiles import gil_bound_profile, stacked_profile

from gilwise.report._text import render_text


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_locks_section_names_the_lock_its_waiters_waits_and_holder():
    text = render_text(stacked_profile(), width=200)  # wide: no cell folds
    locks = _section(text, "locks (1 of 1 contended", "verdict:")
    assert "write_record (app/main.py:60)" in locks
    assert "worker-1, worker-2" in locks
    assert "0.250" in locks and "0.050" in locks  # total and longest wait, seconds
    assert "io_wait 0.20s, gil_held 0.05s" in locks  # the others meanwhile, largest first
    assert "io_wait in write_record" in locks


def test_a_profile_without_contended_locks_says_so():
    assert "locks: no contended locks recorded" in render_text(gil_bound_profile())


def test_verdict_lists_its_evidence():
    text = render_text(stacked_profile())
    evidence = text[text.index("evidence:") :]
    # stacked_profile: held 0.1 + 1.0 + 0.9, native 0.1, I/O 0.1; GIL waits 0.9 + 1.0;
    # main joined 1.9 s; worker-1 ran the most (1.1 s of 2.0 s) and spin held the GIL most.
    assert "work: 2.00s running Python (GIL held), 0.10s native code" in evidence
    assert "0.10s in I/O or sleep" in evidence
    assert "contention: 1.90s waiting for the GIL" in evidence
    assert "not contention: 1.90s joining" in evidence
    assert "busiest thread: worker-1: 1.10s running (55% of its time)" in evidence
    assert "busiest function spin (main.py:5)" in evidence
    assert "processes: 1 followed: pid 5000 (serial)" in evidence


def test_wait_reason_columns_appear_only_when_they_matter():
    text = render_text(stacked_profile())
    header = _section(text, "threads (", "MainThread")
    assert "join" in header and "idle" not in header and "result" not in header
    quiet = replace(
        stacked_profile(),
        threads=tuple(replace(t, join_wait_s=0.0) for t in stacked_profile().threads),
    )
    assert "join" not in _section(render_text(quiet), "threads (", "MainThread")
