"""The registry of report formats: each format's name, file suffixes and renderer.

A format is one module of this package that defines ``FORMAT = Format(...)``; the registry
finds them all, so adding a format is adding one file. The CLI's ``--format`` choices and the
format ``-o FILE`` implies come from here:

- the longest registered suffix that ends the file name wins (``out.speedscope.json`` is
  speedscope, ``out.json`` is json), compared without case;
- a name that ends in no registered suffix (``report.log``, ``out``) gets the text report:
  text is what a file of unknown kind most likely wants, and refusing would make ``-o`` a
  guessing game. ``--format`` always wins over the suffix.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import Callable, Optional, Sequence, Union

from .._model import Profile


@dataclass(frozen=True)
class RenderOptions:
    """Options a renderer may use; each ignores those that do not apply to it."""

    #: json: False drops the state spans (most of the size of a long run).
    include_timeline: bool = True
    #: text: columns (None: the text renderer's default).
    width: Optional[int] = None


@dataclass(frozen=True)
class Format:
    """One report format."""

    name: str
    #: File name endings that select this format for ``-o`` (lower case, dot first).
    suffixes: tuple[str, ...]
    render: Callable[[Profile, RenderOptions], str]
    #: One line for ``--help``.
    description: str
    #: Position in listings (``--format`` choices, error messages); lower first.
    rank: int = 100


DEFAULT_FORMAT = "text"


@lru_cache(maxsize=1)
def _registry() -> dict[str, Format]:
    from . import __path__ as package_path

    found: list[Format] = []
    for module_info in pkgutil.iter_modules(package_path):
        module = importlib.import_module(f"{__package__}.{module_info.name}")
        declared = getattr(module, "FORMAT", None)
        if isinstance(declared, Format):
            found.append(declared)
    found.sort(key=lambda fmt: (fmt.rank, fmt.name))
    return {fmt.name: fmt for fmt in found}


def format_names() -> tuple[str, ...]:
    """Every format's name, text first."""
    return tuple(_registry())


def get_format(name: str) -> Format:
    """The format called ``name``; raises ValueError naming the known formats."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown report format {name!r}; choose one of: {', '.join(registry)}")
    return registry[name]


def format_for_path(
    path: Union[str, PurePath], names: Optional[Sequence[str]] = None
) -> Optional[Format]:
    """The format whose suffix ends ``path``'s file name (the longest match), else None;
    ``names`` limits the candidates (``gilwise diff`` writes text, html and json only)."""
    file_name = PurePath(path).name.lower()
    best: Optional[tuple[int, Format]] = None
    for fmt in _registry().values():
        if names is not None and fmt.name not in names:
            continue
        for suffix in fmt.suffixes:
            if file_name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), fmt)
    return best[1] if best is not None else None


def choose_format(
    explicit: Optional[str],
    output: Union[str, PurePath, None],
    *,
    default: str = DEFAULT_FORMAT,
    names: Optional[Sequence[str]] = None,
) -> str:
    """The format to write: ``explicit`` when given, else the one ``output``'s suffix implies
    (among ``names`` when given), else ``default``. Raises ValueError for an unknown
    explicit name."""
    if explicit is not None:
        if names is not None and explicit not in names:
            raise ValueError(f"unknown format {explicit!r}; choose one of: {', '.join(names)}")
        return get_format(explicit).name
    if output is not None:
        implied = format_for_path(output, names)
        if implied is not None:
            return implied.name
    return get_format(default).name


def suffix_help(names: Optional[Sequence[str]] = None) -> str:
    """``.html -> html, .json -> json, ...``: how ``-o`` picks a format, for ``--help``."""
    pairs = [
        f"{suffix} -> {fmt.name}"
        for fmt in _registry().values()
        if names is None or fmt.name in names
        for suffix in fmt.suffixes
    ]
    return ", ".join(pairs)
