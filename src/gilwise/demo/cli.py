"""``gilwise demo``: validate the parsed arguments, run the experiments, render, plot."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console

from ..errors import UnsupportedError
from ._json import render_json
from ._plot import check_target, write_plot
from ._runner import UnknownExperimentError, resolve, run_demo
from ._text import render_text

EXIT_USAGE = 2
EXIT_FAILED = 1
PIPED_WIDTH = 100


def run(args: argparse.Namespace) -> int:
    """Run ``gilwise demo`` with arguments parsed by gilwise.cli; returns the exit code."""
    try:
        names = resolve(args.experiments)
        _check_sizes(args)
        if args.plot:
            check_target(args.plot)
    except (UnknownExperimentError, UnsupportedError, ValueError) as exc:
        print(f"gilwise demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = run_demo(
            names, scale=args.scale, requests=args.requests, latency_ms=args.latency_ms
        )
    except OSError as exc:
        # Most likely the io experiment's local server or sockets (HttpError is an OSError).
        print(f"gilwise demo: an experiment failed with a system error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        print(render_json(result))
    else:
        render_text(result, _console())
    if args.plot:
        try:
            write_plot(result, args.plot)
        except OSError as exc:
            print(f"gilwise demo: could not write the plot {args.plot!r}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if args.format != "json":
            print(f"speedups drawn to {args.plot}")
    return 0


def _console() -> Console:
    # Piped output (a file, a CI log, a README) gets room for the table instead of rich's
    # 80-column default; a terminal or an explicit COLUMNS decides for itself.
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console()
    return Console(width=PIPED_WIDTH)


def _check_sizes(args: argparse.Namespace) -> None:
    if not args.scale > 0:
        raise ValueError(f"--scale must be greater than 0, got {args.scale:g}")
    if args.requests < 1:
        raise ValueError(f"--requests must be at least 1, got {args.requests}")
    if args.latency_ms < 0:
        raise ValueError(f"--latency-ms must be 0 or more, got {args.latency_ms:g}")
