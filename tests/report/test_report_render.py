"""render() dispatches to every format and refuses what it cannot render, saying what it can."""

from __future__ import annotations

import pytest

from gilwise._model import Profile
from gilwise.report import FORMATS, render

pytestmark = pytest.mark.multiversion


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_every_profile(any_profile: Profile, fmt: str):
    output = render(any_profile, fmt)
    assert isinstance(output, str)
    assert output.strip()
    assert output.endswith("\n")


@pytest.mark.parametrize("fmt", ["text", "html"])
def test_not_measured_never_reads_as_python_none(any_profile: Profile, fmt: str):
    assert "None" not in render(any_profile, fmt)


def test_text_is_the_default(any_profile: Profile):
    assert render(any_profile) == render(any_profile, "text")


def test_unknown_format_names_the_known_ones(any_profile: Profile):
    with pytest.raises(
        ValueError,
        match=r"unknown report format 'pdf'; choose one of: text, json, html, speedscope, trace",
    ):
        render(any_profile, "pdf")


def test_a_dict_is_refused_with_how_to_load_a_profile(any_profile: Profile):
    with pytest.raises(TypeError, match=r"got dict; load a saved one with Profile\.from_json"):
        render(any_profile.to_dict(), "text")  # type: ignore[arg-type]
