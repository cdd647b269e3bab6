"""Plain text from a rich renderable: no colour, no escape codes, no trailing spaces.

The text report and the text diff both lay out rich tables and must print the same in a
file, a pipe or a test as on a terminal.
"""

from __future__ import annotations

from io import StringIO

from rich.console import Console, RenderableType


def plain_text(renderable: RenderableType, width: int) -> str:
    """``renderable`` laid out for ``width`` columns, as plain text ending in a newline."""
    console = Console(
        file=StringIO(),
        width=width,
        force_terminal=False,
        # In a Jupyter kernel rich would otherwise display the report itself and leave the
        # string empty (found by tests/integrations/test_ipython.py's notebook test).
        force_jupyter=False,
        color_system=None,
        no_color=True,
        emoji=False,
        highlight=False,
        legacy_windows=False,
    )
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in output.splitlines()) + "\n"
