"""The terminal report: a header, the threads, top-functions and locks tables, the verdict
with its evidence (rich).

Every name from the profile goes in as a ``rich.text.Text``, never as markup, so a thread
called ``[red]x`` prints as written.
"""

from __future__ import annotations

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .._evidence import evidence_lines
from .._model import QUIET_STATES, LockStats, Profile
from . import _figures as fig
from ._console import plain_text
from ._formats import Format, RenderOptions

DEFAULT_WIDTH = 120
# Narrower than this, the threads table drops its % columns to keep every number whole.
FULL_WIDTH = 112


def render_text(profile: Profile, *, width: int = DEFAULT_WIDTH) -> str:
    """The report as plain text (no colour, no escape codes), ``width`` columns wide."""
    return plain_text(report_renderable(profile, width=width), width)


def render_to_console(profile: Profile, console: Console) -> None:
    """Print the report on ``console`` (in colour when the console is a terminal)."""
    console.print(report_renderable(profile, width=console.width))


def report_renderable(profile: Profile, *, width: int = DEFAULT_WIDTH) -> RenderableType:
    """The whole report as one rich renderable, laid out for ``width`` columns."""
    return Group(
        _header(profile),
        Text(""),
        _threads_table(profile, width),
        Text(""),
        _functions_table(profile),
        Text(""),
        _locks(profile),
        Text(""),
        _verdict(profile),
        Text(""),
        _unavailable(profile),
        *_processes(profile, width),
    )


def _header(profile: Profile) -> Text:
    text = Text.assemble(("gilwise profile", "bold"))
    for label, value in fig.header_facts(profile):
        # The facts after the GIL's share (samples, source, command) go on their own line.
        text.append(
            "\n" if label == "samples" or (label == "source" and not profile.samples) else "  "
        )
        text.append(f"{label} ", style="dim")
        text.append(value, style="bold cyan" if label == "GIL held" else "")
    return text


def _threads_table(profile: Profile, width: int) -> RenderableType:
    if not profile.threads:
        return Text("threads: none observed", style="dim")
    # The % columns are the first to go on a narrow terminal: the seconds say it all.
    every = fig.thread_columns(profile)
    # Each column beyond the base set (wait reasons, CPU wait) needs about 8 more characters.
    extra = len(every) - len(fig.THREAD_COLUMNS) - 1
    with_shares = width >= FULL_WIDTH + 8 * max(extra, 0)
    columns = [c for c in every if with_shares or not c.heading.endswith("%")]
    table = Table(
        title="threads (seconds"
        + ("; % of each thread's own observed wall time)" if with_shares else ")"),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in columns:
        table.add_column(
            # The unit on a line of its own keeps the numeric columns narrow.
            column.heading.replace(" ", "\n", 1)
            if column.heading.count(" ") == 1 and len(column.heading) > 6
            else column.heading.replace(" ", "\n"),
            justify="right" if column.numeric else "left",
            overflow="fold",
            no_wrap=column.numeric,
            min_width=None if column.numeric else 12,
        )
    for thread in profile.threads:
        table.add_row(*(Text(column.cell(thread)) for column in columns))
    return table


def _functions_table(profile: Profile) -> RenderableType:
    top = fig.top_functions(profile)
    if not top:
        return Text("top functions: none recorded", style="dim")
    title = f"top {len(top)} of {len(profile.functions)} functions by {fig.FUNCTION_RANKING}"
    table = Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for index, heading in enumerate(fig.FUNCTION_HEADINGS):
        numeric = index >= 2
        table.add_column(
            heading, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric
        )
    for function in top:
        table.add_row(*(Text(cell) for cell in fig.function_cells(function)))
    return table


def _unavailable(profile: Profile) -> Text:
    items = fig.unavailable(profile)
    text = Text("unavailable:", style="bold")
    if len(items) == 1:
        text.append(f" {items[0]}", style="")
    else:
        # The probe's notes are sentences: one per line reads better than a comma list.
        for item in items:
            text.append(f"\n  - {item}", style="")
    return text


def _verdict(profile: Profile) -> Text:
    """The verdict, its reason, then the evidence it was made of (one line per figure)."""
    verdict = profile.verdict
    if verdict is None:
        return Text.assemble(("verdict: ", "bold"), "none (this profile was not judged)")
    text = Text.assemble(
        ("verdict: ", "bold"),
        (verdict.kind, "bold magenta"),
        "  recommended backend: ",
        (verdict.recommended_backend, "bold green"),
        "  expected speedup: ",
        (fig.speedup(verdict.expected_speedup), "bold"),
        "\n",
        verdict.reason,
    )
    lines = evidence_lines(profile)
    if lines:
        text.append("\nevidence:", style="bold")
        for label, sentence in lines:
            text.append(f"\n  {label}: ", style="dim")
            text.append(sentence)
    return text


# The locks table lists at most this many locks, the most waited first.
TOP_LOCKS = 10


def _locks(profile: Profile) -> RenderableType:
    """Contended locks: who waited, how long, and what the holder did meanwhile."""
    if not profile.locks:
        return Text("locks: no contended locks recorded", style="dim")
    ranked = sorted(profile.locks, key=lambda lock: -lock.wait_s)[:TOP_LOCKS]
    table = Table(
        title=f"locks ({len(ranked)} of {len(profile.locks)} contended, most waited first)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for heading, numeric in LOCK_HEADINGS:
        table.add_column(
            heading,
            justify="right" if numeric else "left",
            overflow="fold",
            no_wrap=numeric,
        )
    for lock in ranked:
        table.add_row(*(Text(cell) for cell in lock_cells(lock)))
    return table


LOCK_HEADINGS = (
    ("lock", False),
    ("waiters", False),
    ("wait s", True),
    ("longest s", True),
    ("others meanwhile", False),
    ("held across", False),
)


def lock_cells(lock: LockStats) -> tuple[str, ...]:
    """One locks-table row: label, waiting threads, total and longest wait, the other
    threads' working states while someone waited (largest first; idle, joining and waiting
    for results left out), and the holder's state."""
    meanwhile = ", ".join(
        f"{state} {seconds:.2f}s"
        for state, seconds in sorted(lock.holder_states.items(), key=lambda kv: -kv[1])
        if seconds >= 0.005 and state not in QUIET_STATES
    )
    return (
        lock.label,
        ", ".join(lock.waiters),
        fig.seconds(lock.wait_s),
        fig.seconds(lock.longest_wait_s),
        meanwhile or "-",
        lock.held_across or "-",
    )


def _render_format(profile: Profile, options: RenderOptions) -> str:
    return render_text(profile, width=options.width or DEFAULT_WIDTH)


# The fallback for -o names with no registered suffix (see _formats).
FORMAT = Format("text", (".txt",), _render_format, "the terminal report as plain text", rank=0)


# --- child processes and how the program ended (owned by the processes engineer) --------


def _processes(profile: Profile, width: int) -> list[RenderableType]:
    """How the program ended (when not by returning), then one section per followed child
    process (``gilwise profile --subprocesses``): who it is, its threads, its top functions
    and its own verdict. The whole-program verdict is the parent's, above."""
    parts: list[RenderableType] = []
    if profile.end_reason or profile.exit_code:
        ended = Text("\nprogram ended: ", style="bold")
        ended.append(f"exit code {profile.exit_code}")
        if profile.end_reason:
            ended.append(f" ({profile.end_reason})")
        parts.append(ended)
    for child in profile.processes:
        title = Text(f"\nprocess {child.pid}", style="bold")
        title.append(f" (child of {child.parent_pid})", style="dim")
        title.append("  ")
        title.append(child.command or "?")
        title.append("\n")
        title.append("wall ", style="dim")
        title.append(f"{child.wall_s:.2f} s")
        title.append("  GIL held ", style="dim")
        held = child.held_fraction
        title.append("n/a" if held is None else f"{held:.0%}", style="bold cyan")
        if child.extra.get("started_at_s") is not None:
            title.append("  started at ", style="dim")
            title.append(f"+{child.extra['started_at_s']:.2f} s")
        if child.verdict is not None:
            title.append("\nits own verdict: ", style="dim")
            title.append(child.verdict.kind, style="magenta")
            title.append(f": {child.verdict.reason}")
        parts += [title, _threads_table(child, width), _functions_table(child)]
        if child.unavailable:
            parts.append(_unavailable(child))
    return parts
