"""IPython and Jupyter: ``%load_ext gilwise``, then ``%gilwise stmt`` and ``%%gilwise``.

Both magics run the code in the user's namespace under ``gilwise.monitor()`` and display
the report: the frontend picks the richest form it can show, so a terminal IPython prints
the text report and a notebook shows the HTML report inline (a fragment whose styles and
script are scoped to itself, so they cannot touch the notebook's page). The finished
Profile is kept in the user's namespace as ``_gilwise_profile`` for a closer look. Both
return the value of the code's last expression, as ``%time`` does.

If the code raises (Ctrl-C included), the report of what ran is still shown, then the
exception propagates as it would without the magic.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from gilwise._model import Profile

#: The user-namespace name the magics leave the last profile under.
PROFILE_VARIABLE = "_gilwise_profile"


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%gilwise`` / ``%%gilwise`` magics (``%load_ext gilwise`` calls this)."""
    ipython.register_magics(GilwiseMagics)


def notebook_html(profile: Profile) -> str:
    """The HTML report as a fragment for a notebook's output: one ``div.gilwise-report``
    whose styles apply to nothing outside it and whose script draws only its own flame
    graphs, so several reports in one notebook work. Untrusted notebooks (which do not run
    output scripts) still show the timeline and the tables."""
    from gilwise.report import render_html

    return render_html(profile, fragment=True)


class ProfileReport:
    """What the magics display: the text report as text/plain, the HTML one as text/html."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        import shutil

        from gilwise.report import render

        width = max(80, min(shutil.get_terminal_size().columns, 160))
        printer.text(render(self.profile, "text", width=width).rstrip("\n"))

    def _repr_html_(self) -> str:
        return notebook_html(self.profile)


@magics_class
class GilwiseMagics(Magics):
    """The ``gilwise`` line and cell magic."""

    @line_cell_magic
    def gilwise(self, line: str = "", cell: Optional[str] = None) -> Any:
        """Profile the GIL while a statement or a cell runs, then show the report.

        Usage::

            %gilwise [options] statement
            %%gilwise [options]
            cell body

        Options (before the statement):

        -r HZ, --rate HZ   thread-state samples per second (default 1000)
        --no-stacks        no Python stack samples (no per-function table; less overhead)
        -o PATH            also save the profile; the format follows the suffix
                           (.json, .html, .speedscope.json, .txt, ...; none known: json)
        -q                 show no report (the profile is still kept)

        The report is text in a terminal and HTML in a notebook; the Profile is kept in the
        namespace as ``_gilwise_profile``. Returns the value of the code's last expression.
        """
        import gilwise

        opts, statement = self.parse_options(
            line, "qr:o:", "rate=", "no-stacks", "quiet", "output=", posix=False, strict=False
        )
        code = cell if cell is not None else statement
        if not code.strip():
            raise UsageError(
                "%gilwise needs code to profile: `%gilwise my_function()` for one statement, "
                "or `%%gilwise` as the first line of a cell"
            )
        monitor_options: dict[str, Any] = {}
        rate = opts.get("r") or opts.get("rate")
        if rate is not None:
            try:
                monitor_options["rate_hz"] = float(rate)
            except ValueError:
                raise UsageError(
                    f"--rate needs samples per second, e.g. -r 500; got {rate!r}"
                ) from None
        if "no-stacks" in opts:
            monitor_options["stack_rate_hz"] = None
        output = opts.get("o") or opts.get("output")
        quiet = "q" in opts or "quiet" in opts
        shell = self.shell
        assert shell is not None  # a magic runs inside a shell
        body, last_expression = _split_last_expression(shell.transform_cell(code))
        namespace = shell.user_ns
        try:
            mon = gilwise.monitor(**monitor_options)
        except ValueError as exc:  # e.g. a rate out of range: say so, without a traceback
            raise UsageError(f"%gilwise: {exc}") from None
        first_line = code.strip().splitlines()[0]
        mon.command = f"%gilwise {first_line}" if cell is None else f"%%gilwise {first_line}"
        try:
            mon.start()
        except gilwise.ProbeUnavailableError as exc:
            # The code is not run unprofiled behind the user's back: they asked for a profile.
            raise UsageError(f"%gilwise cannot profile here, the code was not run: {exc}") from None
        value = None
        try:
            if body is not None:
                exec(compile(body, "<gilwise-magic>", "exec"), namespace)
            if last_expression is not None:
                value = eval(compile(last_expression, "<gilwise-magic>", "eval"), namespace)
        finally:
            # Reached on success and when the code raised, Ctrl-C included: the report of
            # what ran is shown, then the exception goes on.
            profile = mon.stop()
            namespace[PROFILE_VARIABLE] = profile
            if output:
                _save(profile, Path(output))
            if not quiet:
                display(ProfileReport(profile))
        return value


def _split_last_expression(source: str) -> tuple[Optional[ast.Module], Optional[ast.Expression]]:
    """The code before the last expression statement, and that expression (to return it)."""
    tree = ast.parse(source)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop()
        expression = ast.Expression(body=last.value)  # type: ignore[attr-defined]
        ast.copy_location(expression, last)
        return (tree if tree.body else None), expression
    return tree, None


def _save(profile: Profile, path: Path) -> None:
    """Write the profile to ``path`` in the format its suffix names (json when none does)."""
    from gilwise.report import choose_format, render

    path.write_text(render(profile, choose_format(None, path, default="json")), encoding="utf-8")
