"""Renderers of a Profile: text (rich), json, html (self-contained) and trace (Chrome/Perfetto).

Renderers never measure: they turn a ``gilwise.model.Profile`` into a string. Numbers that
were not measured (None) read as ``n/a``, never as 0.

    from gilwise.report import render
    path.write_text(render(profile, "html"), encoding="utf-8")
"""

from __future__ import annotations

from typing import Optional

from ..model import Profile
from ._html import render_html
from ._json import render_json
from ._text import DEFAULT_WIDTH, render_text, render_to_console, report_renderable
from ._trace import render_trace, trace_document

FORMATS: tuple[str, ...] = ("text", "json", "html", "trace")

# The file suffix each format is usually saved with (for ``-o`` defaults and checks).
SUFFIXES: dict[str, str] = {"text": ".txt", "json": ".json", "html": ".html", "trace": ".json"}


def render(
    profile: Profile,
    fmt: str = "text",
    *,
    include_timeline: bool = True,
    width: Optional[int] = None,
) -> str:
    """The profile rendered as ``fmt`` (one of FORMATS), as a string ready to write.

    ``include_timeline`` applies to json (False drops the state spans); ``width`` applies to
    text (columns; default 120). Raises ValueError naming the known formats for any other.
    """
    if not isinstance(profile, Profile):
        raise TypeError(
            f"render() needs a gilwise Profile, got {type(profile).__name__}; "
            "load a saved one with Profile.from_json(text)"
        )
    if fmt == "text":
        return render_text(profile, width=width or DEFAULT_WIDTH)
    if fmt == "json":
        return render_json(profile, include_timeline=include_timeline)
    if fmt == "html":
        return render_html(profile)
    if fmt == "trace":
        return render_trace(profile)
    raise ValueError(f"unknown report format {fmt!r}; choose one of: {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "SUFFIXES",
    "render",
    "render_html",
    "render_json",
    "render_text",
    "render_to_console",
    "render_trace",
    "report_renderable",
    "trace_document",
]
