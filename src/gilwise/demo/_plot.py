"""Bar charts of the demo's speedups: SVG written by hand (no dependency), PNG via matplotlib.

``check_target(path)`` says before any experiment runs whether ``path`` can be drawn, so a
missing matplotlib is reported in a second, not after a minute of measuring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union
from xml.sax.saxutils import escape

from ..errors import UnsupportedError
from ._results import DemoResult

PathLike = Union[str, "os.PathLike[str]"]
FORMATS = (".svg", ".png")
_PNG_NEEDS = "drawing a PNG needs matplotlib: pip install 'gilwise[plot]' (or use --plot FILE.svg)"


@dataclass(frozen=True)
class _Bar:
    experiment: str
    label: str
    speedup: float


def check_target(path: PathLike) -> str:
    """The format (".svg" or ".png") of ``path``; ValueError or UnsupportedError if unusable."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot draw {os.fspath(path)!r}: use a file name ending in .svg or .png")
    if suffix == ".png":
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise UnsupportedError(_PNG_NEEDS) from exc
    return suffix


def write_plot(result: DemoResult, path: PathLike) -> None:
    """Draw the speedups of ``result`` to ``path`` (.svg or .png, by its suffix)."""
    if check_target(path) == ".svg":
        with open(path, "w", encoding="utf-8") as file:
            file.write(render_svg(result))
    else:
        _write_png(result, path)


def _bars(result: DemoResult) -> list[_Bar]:
    bars = []
    for experiment in result.experiments:
        several = len({row.workload for row in experiment.rows}) > 1
        for row in experiment.rows:
            if row.speedup_vs_sequential is None:
                continue
            label = f"{row.workload}: {row.way}" if several else row.way
            bars.append(_Bar(experiment.name, label, row.speedup_vs_sequential))
    return bars


def render_svg(result: DemoResult) -> str:
    """A standalone SVG document: one horizontal bar per measured row, grouped by experiment."""
    bars = _bars(result)
    label_w, bar_w, value_w, row_h, head_h, pad = 230, 400, 70, 22, 28, 12
    width = label_w + bar_w + value_w + 2 * pad
    top_speedup = max([1.0, *(bar.speedup for bar in bars)])
    px_per_x = bar_w / top_speedup
    experiments = list(dict.fromkeys(bar.experiment for bar in bars))
    height = pad * 2 + 30 + len(experiments) * head_h + len(bars) * row_h + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{pad}" y="{pad + 16}" font-size="16" font-weight="bold">'
        f"{escape(_title(result))}</text>",
    ]
    y = pad + 30
    for name in experiments:
        parts.append(f'<text x="{pad}" y="{y + 19}" font-weight="bold">{escape(name)}</text>')
        y += head_h
        for bar in (bar for bar in bars if bar.experiment == name):
            bar_px = max(1.0, bar.speedup * px_per_x)
            color = "#2b8a3e" if bar.speedup >= 1.35 else "#868e96"
            parts += [
                f'<text x="{pad + label_w - 8}" y="{y + 15}" text-anchor="end">'
                f"{escape(bar.label)}</text>",
                f'<rect x="{pad + label_w}" y="{y + 3}" width="{bar_px:.1f}" height="{row_h - 6}" '
                f'fill="{color}"><title>{escape(bar.label)}: {bar.speedup:.2f}x</title></rect>',
                f'<text x="{pad + label_w + bar_px + 6:.1f}" y="{y + 15}">'
                f"{bar.speedup:.2f}x</text>",
            ]
            y += row_h
    one_x = pad + label_w + px_per_x
    parts += [
        f'<line x1="{one_x:.1f}" y1="{pad + 30}" x2="{one_x:.1f}" y2="{y}" stroke="black" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{one_x:.1f}" y="{y + 15}" text-anchor="middle" font-size="11">'
        "1x = sequential</text>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def _title(result: DemoResult) -> str:
    return (
        f"gilwise demo: speedup vs sequential (Python {result.python_version}, "
        f"{result.cores} cores)"
    )


def _write_png(result: DemoResult, path: PathLike) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise UnsupportedError(_PNG_NEEDS) from exc
    bars = _bars(result)
    labels = [f"{bar.experiment}: {bar.label}" for bar in bars]
    speedups = [bar.speedup for bar in bars]
    colors = ["#2b8a3e" if speedup >= 1.35 else "#868e96" for speedup in speedups]
    # No pyplot: its global figure registry is state a library must not touch.
    figure = Figure(figsize=(8, 0.4 * len(bars) + 1.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(bars)))[::-1]
    axes.barh(positions, speedups, color=colors)
    axes.set_yticks(positions)
    axes.set_yticklabels(labels)
    axes.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for position, speedup in zip(positions, speedups):
        axes.text(speedup, position, f" {speedup:.2f}x", va="center")
    axes.set_xlabel("speedup vs sequential (higher is better)")
    axes.set_title(_title(result))
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")
