"""How a task and its outcome cross a boundary (another process or interpreter) as bytes.

Used by the process and interpreter backends and by the code their workers run. It imports
nothing heavy, because it is imported inside every worker and sub-interpreter.

An outcome is one byte of kind followed by a pickle:
  ``O`` + the pickled result;
  ``E`` + pickle of (pickled exception or None, exception type name, str(exception),
  formatted remote traceback);
  ``U`` + pickle of (result type name, the error text) when the result could not be pickled.
"""

from __future__ import annotations

import inspect
import pickle
import reprlib
import traceback
from typing import Any, Callable

from ..errors import NotPicklableError, RemoteTraceback

Dumps = Callable[[Any], bytes]

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 4
_short.maxlevel = 2


def cloudpickle_dumps(obj: Any) -> bytes:
    """cloudpickle.dumps, importing cloudpickle at the first task that needs it (it and the
    platform module it imports cost ~15 ms: programs that stay on threads never pay it)."""
    import cloudpickle

    return cloudpickle.dumps(obj)


def task_dumps(obj: Any) -> bytes:
    """Pickle a task for a process worker: plain pickle when it can (C speed, by reference,
    as ProcessPoolExecutor does), cloudpickle for what plain pickle cannot send (a lambda, a
    closure, a class made at run time) and for anything that refers to ``__main__``: a
    worker may not have the caller's main script (a spawned one never runs it), so
    cloudpickle sends those by value. Both pickle module-level functions of importable
    modules by reference, so the worker imports the same code either way."""
    try:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle_dumps(obj)
    if b"__main__" in data:  # a global of the main script (or data naming it: also fine)
        return cloudpickle_dumps(obj)
    return data


def function_name(fn: Callable[..., Any]) -> str:
    """The qualified name of a callable (or a short repr of it), for messages."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname is None:
        return _short.repr(fn)
    return str(qualname)


def describe_task(fn: Callable[..., Any], args: tuple, kwargs: dict) -> str:
    """A short human description of a call, e.g. ``parse('a.txt', strict=True)``."""
    parts = [_short.repr(arg) for arg in args]
    parts += [f"{key}={_short.repr(value)}" for key, value in kwargs.items()]
    text = ", ".join(parts)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{function_name(fn)}({text})"


def _argument_labels(fn: Callable[..., Any], args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    labels = []
    for index, arg in enumerate(args):
        name = positional[index] if index < len(positional) else None
        label = f"the argument {name!r}" if name else f"positional argument {index}"
        labels.append((label, arg))
    labels += [(f"the argument {key!r}", value) for key, value in kwargs.items()]
    return labels


def _object_text(obj: Any) -> str:
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return function_name(obj)  # the user's name for it, not a repr or a type name
    try:
        text = repr(obj)
    except Exception:
        text = ""
    if not text or len(text) > 80:
        text = f"<{type(obj).__module__}.{type(obj).__qualname__} object>"
    return text


def dump_task(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    dumps: Dumps,
    destination: str,
    function_advice: str,
    argument_advice: str,
) -> bytes:
    """Pickle ``(fn, args, kwargs)``; NotPicklableError naming the part that cannot be sent."""
    try:
        return dumps((fn, args, kwargs))
    except Exception as whole_error:  # pickling runs arbitrary __reduce__ code
        culprit: tuple[str, Any, BaseException, str] = (
            "the arguments",
            (args, kwargs),
            whole_error,
            argument_advice,
        )
        candidates = [("the function", fn), *_argument_labels(fn, args, kwargs)]
        for label, obj in candidates:
            try:
                dumps(obj)
            except Exception as part_error:
                advice = function_advice if label == "the function" else argument_advice
                culprit = (label, obj, part_error, advice)
                break
        label, obj, error, advice = culprit
        where = "" if label == "the function" else f" of task {function_name(fn)}"
        raise NotPicklableError(
            f"cannot send {_object_text(obj)} ({label}{where}) to {destination}: it is not "
            f"picklable ({type(error).__name__}: {error}). {advice}"
        ) from whole_error


def execute(task_bytes: bytes | memoryview, *, dumps: Dumps) -> bytes:
    """Worker side: unpickle a task, run it, return its encoded outcome. Never raises."""
    try:
        fn, args, kwargs = pickle.loads(task_bytes)
        del task_bytes
    except BaseException as exc:  # e.g. the function's module cannot be imported here
        return encode_exception(exc, dumps=dumps)
    return run_call(fn, args, kwargs, dumps=dumps)


def run_call(fn: Callable[..., Any], args: tuple, kwargs: dict, *, dumps: Dumps) -> bytes:
    """Worker side: run one call, return its encoded outcome. Never raises."""
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # the task's failure is its outcome, whatever it is
        return encode_exception(exc, dumps=dumps)
    try:
        return b"O" + dumps(result)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        return b"U" + pickle.dumps((type(result).__qualname__, text))


def encode_exception(exc: BaseException, *, dumps: Dumps) -> bytes:
    """The outcome of a task that raised ``exc``: the exception (if it survives a pickle
    round trip) and its formatted traceback."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    blob: bytes | None
    try:
        blob = dumps(exc)
        pickle.loads(blob)  # e.g. a custom __init__ signature makes rebuilding fail
    except Exception:
        blob = None
    return b"E" + pickle.dumps((blob, type(exc).__qualname__, str(exc), tb_text))


def decode_outcome(data: bytes, describe: Callable[[], str]) -> tuple[bool, Any]:
    """Parent side: ``(True, result)`` or ``(False, exception to set on the future)``.

    A remote exception comes back as its own type where it unpickles, else as RuntimeError;
    either way with ``errors.RemoteTraceback`` as ``__cause__``. ``describe`` names the task
    in messages; it is called only when one is needed.
    """
    kind, body = data[:1], data[1:]
    if kind == b"O":
        try:
            return True, pickle.loads(body)
        except Exception as exc:
            error = RuntimeError(
                f"task {describe()} finished, but its result could not be unpickled here "
                f"({type(exc).__name__}: {exc}). Return a value whose type is importable in "
                f"the calling process."
            )
            error.__cause__ = exc
            return False, error
    if kind == b"U":
        type_name, text = pickle.loads(body)
        return False, NotPicklableError(
            f"task {describe()} returned a {type_name} that cannot be sent back: it is not "
            f'picklable ({text}). Return something picklable, or use backend="thread".'
        )
    blob, type_name, message, tb_text = pickle.loads(body)
    rebuilt: BaseException | None = None
    if blob is not None:
        try:
            rebuilt = pickle.loads(blob)
        except Exception:
            rebuilt = None
    if not isinstance(rebuilt, BaseException):
        rebuilt = RuntimeError(
            f"task {describe()} raised {type_name}: {message} (that exception type could not be "
            f"rebuilt here; the remote traceback follows)"
        )
    rebuilt.__cause__ = RemoteTraceback(tb_text)
    return False, rebuilt
