"""One sub-interpreter with its own GIL plus a way to get bytes back out of it, per Python.

The sub-interpreter APIs differ on every CPython that has them:
- 3.12: ``_xxsubinterpreters.run_string`` + a ``_xxinterpchannels`` channel;
- 3.13: ``_interpreters.exec`` + an ``_interpqueues`` queue;
- 3.14+: the public ``concurrent.interpreters`` (``prepare_main``, ``exec``, a queue).
A Session hides that: ``run(payload) -> outcome bytes``. Only bytes cross the boundary: the
sub-interpreter imports gilwise.backends._wire and runs the pickled task there.

A session is used by one thread at a time; ``run`` blocks that thread while the task runs on
the sub-interpreter's own GIL, so sessions on different threads run Python in parallel.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, Callable, Protocol

from ..errors import UnsupportedError

# Runs once in each new sub-interpreter, after _gw_sys_path and the result channel are set.
_SETUP = """\
import pickle as _gw_pickle, sys as _gw_sys
_gw_sys.path[:] = _gw_pickle.loads(_gw_sys_path)
del _gw_sys_path
from gilwise.backends._wire import execute as _gw_execute

def _gw_run():
    _gw_send(_gw_execute(globals().pop("_gw_payload"), dumps=_gw_pickle.dumps))
"""
# Runs once per task, after _gw_payload is set (kept tiny: it is compiled every time).
_RUN = "_gw_run()"


class SubInterpreterFailed(RuntimeError):
    """The code gilwise runs in a sub-interpreter failed (not the task: that is caught)."""


class Session(Protocol):
    def run(self, payload: bytes) -> bytes: ...

    def close(self) -> None: ...


def _sys_path_blob() -> bytes:
    return pickle.dumps([entry for entry in sys.path if isinstance(entry, str)])


class _Session312:
    def __init__(self) -> None:
        import _xxsubinterpreters as interpreters  # type: ignore[import-not-found]

        import _xxinterpchannels as channels  # type: ignore[import-not-found]

        self._interpreters, self._channels = interpreters, channels
        try:
            self._id = interpreters.create(isolated=True)
        except TypeError:  # a 3.12 whose create() takes no argument: isolated is its default
            self._id = interpreters.create()
        self._channel = channels.create()
        setup = _SETUP + (
            "import _xxinterpchannels\n"
            "def _gw_send(data, _cid=_gw_cid):\n"
            "    _xxinterpchannels.send(_cid, data)\n"
        )
        try:
            self._exec(setup, {"_gw_sys_path": _sys_path_blob(), "_gw_cid": self._channel})
        except BaseException:
            self.close()
            raise

    def _exec(self, code: str, shared: dict) -> None:
        try:
            self._interpreters.run_string(self._id, code, shared)
        except self._interpreters.RunFailedError as exc:
            raise SubInterpreterFailed(str(exc)) from exc

    def run(self, payload: bytes) -> bytes:
        self._exec(_RUN, {"_gw_payload": payload})
        data: bytes = self._channels.recv(self._channel)
        return data

    def close(self) -> None:
        self._interpreters.destroy(self._id)
        self._channels.destroy(self._channel)


class _Session313:
    # _interpqueues formats: 0 = "shareable objects only" (bytes are); unbound op 3 =
    # "replace an item whose interpreter is gone by a marker" (we read before destroying).
    _FMT_SHARED, _UNBOUND_REPLACE = 0, 3

    def __init__(self) -> None:
        import _interpqueues as queues  # type: ignore[import-not-found]
        import _interpreters as interpreters  # type: ignore[import-not-found]

        self._interpreters, self._queues = interpreters, queues
        self._id = interpreters.create("isolated")
        self._queue = queues.create(0, self._FMT_SHARED, self._UNBOUND_REPLACE)
        setup = _SETUP + (
            "import _interpqueues\n"
            "def _gw_send(data, _qid=_gw_qid):\n"
            f"    _interpqueues.put(_qid, data, {self._FMT_SHARED}, {self._UNBOUND_REPLACE})\n"
        )
        try:
            self._exec(setup, {"_gw_sys_path": _sys_path_blob(), "_gw_qid": self._queue})
        except BaseException:
            self.close()
            raise

    def _exec(self, code: str, shared: dict) -> None:
        failure = self._interpreters.exec(self._id, code, shared)
        if failure is not None:  # an exception snapshot: type, msg, formatted, errdisplay
            text = getattr(failure, "errdisplay", None) or getattr(failure, "formatted", "")
            raise SubInterpreterFailed(str(text))

    def run(self, payload: bytes) -> bytes:
        self._exec(_RUN, {"_gw_payload": payload})
        item = self._queues.get(self._queue)
        data: bytes = item[0] if isinstance(item, tuple) else item
        return data

    def close(self) -> None:
        self._interpreters.destroy(self._id)
        self._queues.destroy(self._queue)


class _Session314:
    # Written against PEP 734 (concurrent.interpreters); not yet run on a 3.14 here.
    def __init__(self) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined]

        self._failure = interpreters.ExecutionFailed
        self._interp = interpreters.create()
        self._queue = interpreters.create_queue()
        try:
            self._interp.prepare_main(_gw_sys_path=_sys_path_blob(), _gw_queue=self._queue)
            self._exec(_SETUP + "_gw_send = _gw_queue.put\n")
        except BaseException:
            self.close()
            raise

    def _exec(self, code: str) -> None:
        try:
            self._interp.exec(code)
        except self._failure as exc:
            raise SubInterpreterFailed(str(exc)) from exc

    def run(self, payload: bytes) -> bytes:
        self._interp.prepare_main(_gw_payload=payload)
        self._exec(_RUN)
        data: bytes = self._queue.get_nowait()
        return data

    def close(self) -> None:
        self._interp.close()


def session_factory() -> Callable[[], Any]:
    """The Session class for this Python; UnsupportedError if it has no usable API."""
    if sys.version_info >= (3, 14):
        return _Session314
    if sys.version_info >= (3, 13):
        module, factory = "_interpreters", _Session313
    elif sys.version_info >= (3, 12):
        module, factory = "_xxsubinterpreters", _Session312
    else:
        module, factory = "", None
    if factory is None:
        raise UnsupportedError(
            "sub-interpreters with their own GIL need Python 3.12 or newer; "
            f"this is {sys.version.split()[0]}; use backend='process'"
        )
    try:
        __import__(module)
    except ImportError as exc:
        raise UnsupportedError(
            f"this Python {sys.version.split()[0]} was built without the {module} module that "
            f"runs sub-interpreters; use backend='process'"
        ) from exc
    return factory
