"""The ``gilwise`` command: argument parsing only; every command calls the library.

Each subcommand has an ``_add_<name>`` (its arguments) and a ``_run_<name>`` (call the
library, render, return the exit code).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from . import __version__

EXPERIMENTS = ("cpu", "io", "native", "all")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gilwise",
        description="See what the CPython GIL costs your program, then stop paying for it.",
    )
    parser.add_argument("--version", action="version", version=f"gilwise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_profile, _add_report, _add_diff):
        add(sub)
    return parser


# --- demo -------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="reproduce the classic GIL experiments on this machine",
        description=(
            "Run the same total work several ways (sequential, threads, processes, "
            "sub-interpreters, asyncio) and explain the speedups."
        ),
    )
    p.add_argument(
        "experiments",
        nargs="*",
        default=["all"],
        metavar="EXPERIMENT",
        help="cpu, io, native or all (default: all)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="work size multiplier (default 1.0)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--plot", metavar="FILE", help="also draw the speedups to FILE (.png or .svg)")
    p.add_argument("--requests", type=int, default=40, help="io: number of downloads (default 40)")
    p.add_argument(
        "--latency-ms", type=float, default=50.0, help="io: server latency per request (default 50)"
    )
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import cli as demo_cli

    return demo_cli.run(args)


# --- profile ----------------------------------------------------------------------------


def _add_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="profile a script, a module or a running process and show what the GIL costs",
        description=(
            "gilwise profile [options] script.py [args...] | -m module [args...] | "
            "--pid PID --duration S"
        ),
    )
    # The program and its arguments are split off before parsing (see split_profile_argv):
    # "-m MODULE" and "script" end gilwise's options, whatever follows is the program's.
    p.add_argument(
        "-m",
        dest="module",
        metavar="MODULE",
        help="run a library module as a script; every later argument is the module's",
    )
    p.add_argument("--pid", type=int, help="attach to a running Python process")
    p.add_argument("--duration", type=float, default=5.0, help="with --pid: seconds to sample")
    p.add_argument(
        "--subprocesses",
        action="store_true",
        help="also profile the Python child processes the program starts (multiprocessing, "
        "ProcessPoolExecutor, subprocess running python): one section per process",
    )
    _add_format(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the report to FILE (default: stderr when running a script or module, "
        "whose stdout stays the program's; stdout with --pid)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="HZ",
        help="thread-state samples per second (default 1000)",
    )
    p.add_argument(
        "--stack-rate",
        type=float,
        default=None,
        metavar="HZ",
        help="Python stack reads per second for the per-function figures (default 250; "
        "0: no functions)",
    )
    p.add_argument(
        "script", nargs="?", help="the script to run; every later argument is the script's"
    )
    p.add_argument("args", nargs="*", help="arguments for the script or module, untouched")
    p.set_defaults(run=_run_profile)


def split_profile_argv(
    profile_parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[list[str], Optional[str], Optional[str], list[str]]:
    """Split ``gilwise profile``'s arguments into (gilwise's options, module, script, the
    program's arguments).

    gilwise's options come first; the first ``-m MODULE`` (or ``-mMODULE``), the first
    positional argument (the script) or ``--`` ends them, and everything after belongs to
    the program untouched, like ``python -m`` and cProfile do: ``gilwise profile -m pytest
    -q`` passes ``-q`` to pytest.
    """
    takes_value = {
        option
        for action in profile_parser._actions
        if action.nargs != 0 and action.option_strings
        for option in action.option_strings
    }
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            rest = list(argv[index + 1 :])
            script = rest.pop(0) if rest else None
            return list(argv[:index]), None, script, rest
        if token == "-m":
            if index + 1 >= len(argv):
                return list(argv), None, None, []  # argparse reports the missing MODULE
            return list(argv[:index]), argv[index + 1], None, list(argv[index + 2 :])
        if token.startswith("-m") and not token.startswith("--"):
            return list(argv[:index]), token[2:], None, list(argv[index + 1 :])
        if not token.startswith("-") or token == "-":
            return list(argv[:index]), None, token, list(argv[index + 1 :])
        if token in takes_value and "=" not in token:
            index += 2
        else:
            index += 1
    return list(argv), None, None, []


def _parse_profile(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``profile``: gilwise's options with argparse, the program's arguments untouched."""
    sub = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    own, module, script, program_args = split_profile_argv(sub.choices["profile"], argv[1:])
    args = parser.parse_args(["profile", *own])
    if module is not None:
        args.module = module
    if script is not None:
        args.script = script
    args.args = program_args
    return args


def _run_profile(args: argparse.Namespace) -> int:
    from .probe import cli as probe_cli
    from .report import choose_format

    args.format = choose_format(args.format, args.output)
    return probe_cli.run(args)


def _add_format(p: argparse.ArgumentParser, names: Optional[Sequence[str]] = None) -> None:
    """``--format``: the registry's formats; when not given, ``-o FILE``'s suffix decides."""
    from .report._formats import format_names, suffix_help

    p.add_argument(
        "--format",
        choices=tuple(names or format_names()),
        default=None,
        help=f"report format (default: from -o FILE's suffix: {suffix_help(names)}; "
        "any other name, or no -o: text)",
    )


# --- report ---------------------------------------------------------------------------


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="re-render a saved JSON profile (gilwise profile --format json) in another format",
    )
    p.add_argument("profile_json", metavar="PROFILE.json", help="a gilwise.profile/2 JSON file")
    _add_format(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._model import Profile
    from .report import choose_format, render

    try:
        profile = Profile.from_json(Path(args.profile_json).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"gilwise report: cannot read {args.profile_json}: {error}", file=sys.stderr)
        return 2
    _write(render(profile, choose_format(args.format, args.output)), args.output)
    return 0


# --- diff -----------------------------------------------------------------------------


def _add_diff(sub: argparse._SubParsersAction) -> None:
    from .report import DIFF_FORMATS

    p = sub.add_parser(
        "diff",
        help="compare two saved JSON profiles of one program (before and after a change)",
        description="Wall time, the GIL's share, per-thread and per-function changes and the "
        "two verdicts side by side. Profile, change the model, profile again: "
        "gilwise profile -o before.json app.py; ...; gilwise profile -o after.json app.py; "
        "gilwise diff before.json after.json",
    )
    p.add_argument("before", metavar="BEFORE.json", help="the earlier gilwise profile (JSON)")
    p.add_argument("after", metavar="AFTER.json", help="the later gilwise profile (JSON)")
    _add_format(p, DIFF_FORMATS)
    p.add_argument("-o", "--output", metavar="FILE", help="write the comparison to FILE")
    p.set_defaults(run=_run_diff)


def _run_diff(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._model import Profile
    from .report import DIFF_FORMATS, choose_format, render_diff

    profiles = []
    for path in (args.before, args.after):
        try:
            profiles.append(Profile.from_json(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"gilwise diff: cannot read {path}: {error}", file=sys.stderr)
            return 2
    fmt = choose_format(args.format, args.output, names=DIFF_FORMATS)
    _write(render_diff(profiles[0], profiles[1], fmt), args.output)
    return 0


def _write(text: str, output: Optional[str]) -> None:
    """``text`` to the file ``output``, or to stdout."""
    from pathlib import Path

    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --- entry point ------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_profile(parser, argv) if argv[:1] == ["profile"] else parser.parse_args(argv)
    run: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except KeyboardInterrupt:
        print("gilwise: interrupted", file=sys.stderr)
        return 130
