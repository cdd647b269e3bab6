"""The demo's results as JSON (schema ``gilwise.demo/1``); numbers not measured are null."""

from __future__ import annotations

import json

from ._results import DemoResult


def render_json(result: DemoResult) -> str:
    return json.dumps(result.to_dict(), indent=2)
