"""Fixtures of the auto Chooser's tests (injected measurements, no timing)."""

from __future__ import annotations

import pytest


@pytest.fixture
def start_cost(monkeypatch):
    """Pretend starting process workers costs what the test says (no service consulted):
    ``start_cost["s"] = seconds``; 0.1 s unless told."""
    from gilwise import _chooser

    cost = {"s": 0.1}
    monkeypatch.setattr(_chooser, "process_start_cost_s", lambda workers: (cost["s"], "told"))
    return cost


@pytest.fixture
def opened():
    """``(names, open_backend)``: an ``open_backend`` for ``Chooser.decide`` that opens
    nothing and records the backend names it was asked for."""
    names = []

    def open_backend(name, workers):
        names.append(name)
        return name

    return names, open_backend


@pytest.fixture(autouse=True)
def fresh_decisions():
    """Each test's auto Executors measure afresh: decisions remembered by an earlier test's
    Executors (Chooser.recall) would stand in for measuring."""
    from gilwise import _chooser

    _chooser.forget_decisions()
    yield
    _chooser.forget_decisions()
