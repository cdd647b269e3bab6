"""Renderers of a Profile, one module per format: text (rich), json, html (self-contained),
speedscope and trace (Chrome/Perfetto); ``_formats`` is their registry.

``render_diff`` compares two profiles of one program (text, json or html).

Renderers never measure: they turn a ``gilwise._model.Profile`` into a string. Numbers that
were not measured (None) read as ``n/a``, never as 0.

    from gilwise.report import render, choose_format
    fmt = choose_format(None, "out.speedscope.json")  # "speedscope", from the suffix
    path.write_text(render(profile, fmt), encoding="utf-8")
"""

from __future__ import annotations

from typing import Optional

from .._model import Profile
from ._diff import ProfileDiff, compare, diff_document, render_diff_json
from ._diff_html import render_diff_html
from ._diff_text import render_diff_text
from ._formats import (
    DEFAULT_FORMAT,
    Format,
    RenderOptions,
    choose_format,
    format_for_path,
    format_names,
    get_format,
)
from ._html import render_html
from ._json import render_json
from ._speedscope import render_speedscope, speedscope_document
from ._text import DEFAULT_WIDTH, render_text, render_to_console, report_renderable
from ._trace import render_trace, trace_document

#: Every format's name, text first (the registry's order).
FORMATS: tuple[str, ...] = format_names()

#: The file suffix each format is usually saved with.
SUFFIXES: dict[str, str] = {name: get_format(name).suffixes[0] for name in FORMATS}


#: What ``render_diff`` writes (``gilwise diff --format``).
DIFF_FORMATS: tuple[str, ...] = ("text", "json", "html")


def render_diff(
    before: Profile, after: Profile, fmt: str = DEFAULT_FORMAT, *, width: Optional[int] = None
) -> str:
    """The comparison of two profiles of one program as ``fmt`` (one of DIFF_FORMATS): wall
    time, the GIL's share, per-thread and per-function changes and both verdicts."""
    for name, value in (("before", before), ("after", after)):
        if not isinstance(value, Profile):
            raise TypeError(
                f"render_diff() needs gilwise Profiles, got {type(value).__name__} for {name}; "
                "load a saved one with Profile.from_json(text)"
            )
    diff = compare(before, after)
    if fmt == "text":
        return render_diff_text(diff, width=width or DEFAULT_WIDTH)
    if fmt == "json":
        return render_diff_json(diff)
    if fmt == "html":
        return render_diff_html(diff)
    raise ValueError(f"unknown diff format {fmt!r}; choose one of: {', '.join(DIFF_FORMATS)}")


def render(
    profile: Profile,
    fmt: str = DEFAULT_FORMAT,
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
    options = RenderOptions(include_timeline=include_timeline, width=width or DEFAULT_WIDTH)
    return get_format(fmt).render(profile, options)


__all__ = [
    "DEFAULT_FORMAT",
    "DIFF_FORMATS",
    "FORMATS",
    "SUFFIXES",
    "Format",
    "ProfileDiff",
    "RenderOptions",
    "choose_format",
    "compare",
    "diff_document",
    "format_for_path",
    "get_format",
    "render",
    "render_diff",
    "render_html",
    "render_json",
    "render_speedscope",
    "render_text",
    "render_to_console",
    "render_trace",
    "report_renderable",
    "speedscope_document",
    "trace_document",
]
