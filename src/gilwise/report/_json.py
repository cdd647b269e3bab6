"""The machine-readable report: exactly ``Profile.to_json()`` (schema gilwise.profile/2)."""

from __future__ import annotations

from .._model import Profile
from ._formats import Format, RenderOptions


def render_json(profile: Profile, *, include_timeline: bool = True) -> str:
    """The profile as gilwise.profile/2 JSON; ``include_timeline=False`` drops the state spans,
    which are most of the size of a long run."""
    return profile.to_json(include_timeline=include_timeline) + "\n"


def _render_format(profile: Profile, options: RenderOptions) -> str:
    return render_json(profile, include_timeline=options.include_timeline)


FORMAT = Format(
    "json",
    (".json",),
    _render_format,
    "gilwise.profile/2 JSON (re-render it with gilwise report)",
    rank=10,
)
