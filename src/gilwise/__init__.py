"""gilwise: see what the CPython GIL costs your program, then stop paying for it.

Measure (``monitor``, ``profile``), choose (``classify``), run (``Executor``, ``map``,
``Pipeline``). Everything not listed in ``__all__`` is internal and may change.

Three lists must agree, and tests/test_exports.py proves they do: ``__all__`` (what users
get), ``_LAZY`` (where each name really lives; loaded on first use) and the imports under
``TYPE_CHECKING`` (what type checkers see, since they cannot follow ``__getattr__``).
Exported classes and functions report ``gilwise.X`` as their module, so reprs, tracebacks
and docs show the name users write, not the private module it happens to live in.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import errors as errors
    from . import pipeline as pipeline
    from ._executor import Executor as Executor
    from ._executor import classify as classify
    from ._executor import map as map
    from ._ipython import load_ipython_extension as load_ipython_extension
    from ._model import Profile as Profile
    from .errors import GilwiseError as GilwiseError
    from .errors import NoClusterError as NoClusterError
    from .errors import NotPicklableError as NotPicklableError
    from .errors import ProbeUnavailableError as ProbeUnavailableError
    from .errors import StageError as StageError
    from .errors import TaskTimeoutError as TaskTimeoutError
    from .errors import UnsupportedError as UnsupportedError
    from .errors import WorkerCrashedError as WorkerCrashedError
    from .pipeline import Pipeline as Pipeline
    from .probe import monitor as monitor
    from .probe import profile as profile

__version__ = "0.1.0"

# Everything loads on first use, so `import gilwise` stays cheap for a profiled program and
# for the profiler's own sampler child (which imports only gilwise.probe._sampler).
# "module:attribute"; nothing after the colon means the module itself.
_LAZY: dict[str, str] = {
    "errors": "gilwise.errors:",
    "GilwiseError": "gilwise.errors:GilwiseError",
    "NoClusterError": "gilwise.errors:NoClusterError",
    "NotPicklableError": "gilwise.errors:NotPicklableError",
    "ProbeUnavailableError": "gilwise.errors:ProbeUnavailableError",
    "StageError": "gilwise.errors:StageError",
    "TaskTimeoutError": "gilwise.errors:TaskTimeoutError",
    "UnsupportedError": "gilwise.errors:UnsupportedError",
    "WorkerCrashedError": "gilwise.errors:WorkerCrashedError",
    "Profile": "gilwise._model:Profile",
    "monitor": "gilwise.probe:monitor",
    "profile": "gilwise.probe:profile",
    "classify": "gilwise._executor:classify",
    "Executor": "gilwise._executor:Executor",
    "map": "gilwise._executor:map",
    "Pipeline": "gilwise.pipeline:Pipeline",
    # A public subpackage, so that `gilwise.pipeline.Retry(...)` works after `import gilwise`.
    "pipeline": "gilwise.pipeline:",
    # `%load_ext gilwise` in IPython / Jupyter calls this (see gilwise._ipython).
    "load_ipython_extension": "gilwise._ipython:load_ipython_extension",
}


def _fixup_public_names(module_name: str, namespace: dict[str, Any]) -> None:
    """Make every name in a public subpackage's ``__all__`` report that subpackage.

    A public subpackage calls this at its end, e.g. ``gilwise.pipeline`` so that
    ``gilwise.pipeline.Retry`` reads as such rather than ``gilwise._retry.Retry``.
    """
    for public_name in namespace.get("__all__", ()):
        member = namespace[public_name]
        defined_in = str(getattr(member, "__module__", ""))
        if any(part.startswith("_") for part in defined_in.split(".")[1:]):  # a private module
            _fixup_module(member, module_name)


def _fixup_module(value: Any, public_module: str) -> None:
    """Make a class or function defined in a gilwise module report ``public_module``.

    Methods and nested classes follow their class, so ``repr``, ``help`` and tracebacks
    agree. Objects from elsewhere (a re-exported builtin) are left alone. Pickling keeps
    working: ``gilwise.X`` resolves to the same object through ``__getattr__``.
    """
    old_module = getattr(value, "__module__", None)
    if not isinstance(old_module, str) or not old_module.startswith("gilwise"):
        return
    if old_module in (public_module, __name__):  # already public; the top level wins
        return
    if isinstance(value, type):
        _resolve_annotations(value)
    try:
        value.__module__ = public_module
    except (AttributeError, TypeError):  # a builtin type or a frozen object: leave it
        return
    if isinstance(value, type):
        for member in vars(value).values():
            inner = getattr(member, "__func__", member)  # classmethod / staticmethod
            if getattr(inner, "__module__", None) == old_module and (
                isinstance(inner, type) or callable(inner)
            ):
                qualname = getattr(inner, "__qualname__", "")
                if qualname.startswith(value.__qualname__ + "."):
                    _fixup_module(inner, public_module)


def _resolve_annotations(cls: type) -> None:
    """Evaluate a class's string annotations while its defining module still names it.

    ``typing.get_type_hints`` (and dataclass tools built on it: pydantic, cattrs,
    hypothesis's ``builds``) looks names up in the module ``__module__`` names; once that is
    ``gilwise``, "PythonInfo" or "Optional" would not be found there.
    """
    own = vars(cls).get("__annotations__")  # its own, not a base class's
    if not own or not any(isinstance(hint, str) for hint in own.values()):
        return
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError, SyntaxError):  # `int | None` on 3.9
        return  # leave them as strings
    cls.__annotations__ = {name: hints.get(name, hint) for name, hint in own.items()}


if not TYPE_CHECKING:
    # Hidden from type checkers: with a module-level __getattr__ in sight they would accept
    # any attribute (`gilwise.Exectuor`) as Any instead of reporting the typo.

    def __getattr__(name: str) -> Any:
        target = _LAZY.get(name)
        if target is None:
            raise AttributeError(f"module 'gilwise' has no attribute {name!r}")
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        value = getattr(module, attr) if attr else module
        if attr:
            _fixup_module(value, __name__)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Executor",
    "GilwiseError",
    "NoClusterError",
    "NotPicklableError",
    "Pipeline",
    "ProbeUnavailableError",
    "Profile",
    "StageError",
    "TaskTimeoutError",
    "UnsupportedError",
    "WorkerCrashedError",
    "__version__",
    "classify",
    "errors",
    "load_ipython_extension",
    "map",
    "monitor",
    "pipeline",
    "profile",
]
