"""Python stacks read from outside the process: which function each thread is in, GIL-free.

Taking a snapshot of stacks inside the profiled process (``sys._current_frames``) needs the
GIL, and every snapshot forces two GIL hand-offs on a GIL-bound program: measured on 2 cores,
100 snapshots a second made two pure-Python threads ~2.5% slower, nearly all of it hand-off
latency, not the snapshot's own 6 us. So, like py-spy, the sampler child reads the frames out
of the target's memory through /proc/<pid>/mem, and the target pays nothing.

Reading another process's interpreter needs the layout of a few structs, which changes
between CPython versions. Instead of per-version tables, ``locate_in_process`` *discovers*
the layout inside the profiled process before sampling starts, where the truth is at hand:
it knows its own thread state, the code object of the function it is running, and the
address of every object (``id``). It searches short pointer chains from the thread state to
the running function's frame and code, checks every finding on a second call and on another
thread, and gives up (the monitor then falls back to in-process snapshots) rather than
guessing. Reads go through /proc/self/mem, never through raw pointers, so a wrong guess is
an OSError, not a crash.

The layout is plain data (JSON) handed to the sampler child, which walks, per sample:
``interp -> first thread state -> next ...``; per thread state the chain to its innermost
frame, then each frame's code object and the pointer to its caller's frame (``previous``
on 3.11+, ``f_back`` before), up to MAX_STACK_DEPTH frames, and (once per code object) its
qualified name, file name and first line. Frames that hold no code object (the C-stack
entry frames of 3.12+) are skipped, not followed into.
"""

from __future__ import annotations

import os
import struct
import sys
import threading

from gilwise.probe._procfs import MemoryReader, offsets_of
from gilwise.probe._record import REQUIRED, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

FunctionKey = tuple[str, str, int]  # (qualified name, file, first line)

_TSTATE_SCAN = 512  # the frame pointer lives in the first fields of PyThreadState
_INTERP_SCAN = 8192  # the thread list head is near the start of PyInterpreterState
_HOP_SCAN = 64  # a _PyCFrame / frame: the next pointer is within its first words
_CODE_SCAN = 256
_MAX_NAME_CHARS = 512
_MAX_THREADS = 4096  # a guard against walking a corrupted list forever
_MAX_CACHED_KEYS = 100_000
#: Frames read per stack: a deeper stack keeps its innermost frames under a TRUNCATED root.
MAX_STACK_DEPTH = 128
#: The root frame of a stack cut at MAX_STACK_DEPTH.
TRUNCATED: FunctionKey = ("<truncated>", "", 0)
# 3.12's C-stack entry frames hold a code object of this file name: skipped in stacks.
_SHIM_FILENAME = "<shim>"
_CALLER_HOPS = 4  # frames between a function and its Python caller (3.12's entry shims)
_SHORT_NAME = 64
_HEAD_ATTEMPTS = 20
_FIRSTLINENO = 48611  # a first line number no other field of the probe code object has
_PROBE_FILENAME = "<gilwise-frame-layout-probe>"
_PROBE_SOURCE = "\n" * (_FIRSTLINENO - 2) + (
    "class GilwiseLayoutProbe:\n"
    "    def run(self, ready, blocker):\n"
    "        ready()\n"
    "        with blocker:\n"
    "            pass\n"
)


class FrameLayout(Record):
    """Offsets (bytes) to read a thread's innermost Python function from outside.

    ``frame_chain``: pointer reads from a PyThreadState to its innermost frame (a
    PyFrameObject on 3.9/3.10, a _PyInterpreterFrame on 3.11+). ``code_offset``: the code
    object pointer inside that frame. ``code_type``/``str_type``: the addresses of the
    ``code`` and ``str`` types, used to reject torn reads. Unicode: the data of a compact
    ASCII string starts at ``ascii_data``, of other compact strings at ``compact_data``;
    ``state_offset`` holds the kind/compact/ascii bits. ``own_prefix``: code under this
    directory (gilwise's own) is attributed to no function. ``previous_offset``: the
    caller's frame pointer inside a frame (-1: unknown, then stacks are one frame deep).
    """

    FIELDS = (
        ("interp", REQUIRED),
        ("head_offset", REQUIRED),
        ("next_offset", REQUIRED),
        ("frame_chain", REQUIRED),
        ("code_offset", REQUIRED),
        ("code_type", REQUIRED),
        ("name_offset", REQUIRED),
        ("filename_offset", REQUIRED),
        ("firstlineno_offset", REQUIRED),
        ("str_type", REQUIRED),
        ("length_offset", REQUIRED),
        ("state_offset", REQUIRED),
        ("ascii_data", REQUIRED),
        ("compact_data", REQUIRED),
        ("own_prefix", ""),
        ("previous_offset", -1),
    )
    __slots__ = tuple(name for name, _ in FIELDS)
    if TYPE_CHECKING:
        interp: int
        head_offset: int
        next_offset: int
        frame_chain: tuple[int, ...]
        code_offset: int
        code_type: int
        name_offset: int
        filename_offset: int
        firstlineno_offset: int
        str_type: int
        length_offset: int
        state_offset: int
        ascii_data: int
        compact_data: int
        own_prefix: str
        previous_offset: int


# -- discovery, in the profiled process ------------------------------------------------------


def _api(name: str, pointer_args: int = 0) -> Callable:
    """A C API function of this interpreter taking and returning pointers (None for NULL)."""
    import ctypes  # in the profiled process only: the sampler child never needs it

    function = ctypes.PYFUNCTYPE(ctypes.c_void_p, *[ctypes.c_void_p] * pointer_args)
    return function((name, ctypes.pythonapi))


def _words(blob: bytes) -> list[tuple[int, int]]:
    return [
        (offset, struct.unpack_from("<Q", blob, offset)[0]) for offset in range(0, len(blob) - 7, 8)
    ]


def _pointer_like(value: int) -> bool:
    return value % 8 == 0 and 0x10000 < value < 0x8000_0000_0000


class _Memory:
    """Safe reads of this process (/proc/self/mem): unmapped addresses raise, never crash."""

    def __init__(self) -> None:
        self._reader = MemoryReader(os.getpid())

    def read(self, address: int, size: int) -> bytes:
        try:
            return self._reader.read(address, size)
        except (OSError, OverflowError, ValueError):
            return b""

    def word(self, address: int) -> Optional[int]:
        raw = self.read(address, 8)
        return struct.unpack("<Q", raw)[0] if len(raw) == 8 else None

    def close(self) -> None:
        self._reader.close()


def _chains_to(memory: _Memory, tstate: int, code: int) -> set[tuple[tuple[int, ...], int]]:
    """Every (frame_chain, code_offset) of one or two hops from ``tstate`` that ends at a
    frame holding ``code``."""
    found: set[tuple[tuple[int, ...], int]] = set()

    def code_offsets(frame: int) -> list[int]:
        return [offset for offset, value in _words(memory.read(frame, _HOP_SCAN)) if value == code]

    for first, hop in _words(memory.read(tstate, _TSTATE_SCAN)):
        if not _pointer_like(hop):
            continue
        for offset in code_offsets(hop):
            found.add(((first,), offset))
        for second, frame in _words(memory.read(hop, _HOP_SCAN)):
            if _pointer_like(frame):
                for offset in code_offsets(frame):
                    found.add(((first, second), offset))
    return found


def _follow(
    memory: _Memory, tstate: int, chain: tuple[int, ...], code_offset: int
) -> Optional[int]:
    address: Optional[int] = tstate
    for offset in chain:
        address = memory.word(address + offset) if address else None
    return memory.word(address + code_offset) if address else None


def _offset_of(blob: bytes, value: int, fmt: str = "<Q") -> Optional[int]:
    offsets = offsets_of(blob, value, fmt)
    return offsets[0] if offsets else None


def _string_layout(memory: _Memory) -> tuple[int, int, int, int]:
    """(length_offset, state_offset, ascii_data, compact_data) from strings we own."""
    ascii_text = "gilwise-ascii-probe"
    latin_text = "gilwis\xe9-latin-probe"
    ascii_blob = memory.read(id(ascii_text), 128)
    latin_blob = memory.read(id(latin_text), 160)
    ascii_data = ascii_blob.find(ascii_text.encode("ascii"))
    compact_data = latin_blob.find(latin_text.encode("latin-1"))
    length_offset = _offset_of(ascii_blob[:64], len(ascii_text))
    if ascii_data < 0 or compact_data < 0 or length_offset is None:
        raise OSError("the layout of str objects was not recognised")
    return length_offset, length_offset + 16, ascii_data, compact_data


def locate_in_process(tstate: int) -> FrameLayout:
    """Discover the frame layout of this interpreter; ``tstate`` is this thread's state.

    Starts and joins two short helper threads. Raises OSError when any step is not found or
    does not check out (the caller then samples stacks in-process instead).
    """
    memory = _Memory()
    try:
        return _locate(memory, tstate)
    finally:
        memory.close()


def _second_probe(ready: Callable[[], None], blocker: threading.Lock) -> None:
    ready()
    with blocker:  # blocks in C: the innermost Python frame is this function's
        pass


def _locate(memory: _Memory, tstate: int) -> FrameLayout:
    namespace: dict = {}
    exec(compile(_PROBE_SOURCE, _PROBE_FILENAME, "exec"), namespace)
    probe = namespace["GilwiseLayoutProbe"]()
    probe_code = probe.run.__code__
    interp = _api("PyInterpreterState_Get")()
    thread_head = _api("PyInterpreterState_ThreadHead", 1)
    thread_next = _api("PyThreadState_Next", 1)
    if not interp:
        raise OSError("PyInterpreterState_Get returned NULL")

    # Code object fields and the str layout, from objects this function owns.
    code_blob = memory.read(id(probe_code), _CODE_SCAN)
    name = getattr(probe_code, "co_qualname", probe_code.co_name)
    name_offset = _offset_of(code_blob, id(name))
    filename_offset = _offset_of(code_blob, id(probe_code.co_filename))
    firstlineno_offset = _offset_of(code_blob, _FIRSTLINENO, "<i")
    if name_offset is None or filename_offset is None or firstlineno_offset is None:
        raise OSError("the layout of code objects was not recognised")
    length_offset, state_offset, ascii_data, compact_data = _string_layout(memory)

    # Two helper threads park in a C call (acquiring a held lock) inside known functions, so
    # their innermost frames hold still while this thread reads them.
    blocker = threading.Lock()
    blocker.acquire()
    states: list[int] = [0, 0]
    parked = [threading.Event(), threading.Event()]

    def ready(index: int) -> Callable[[], None]:
        def record() -> None:
            states[index] = current_tstate()
            parked[index].set()

        return record

    helpers = [
        threading.Thread(target=probe.run, args=(ready(0), blocker), name="gilwise-layout"),
        threading.Thread(target=lambda: _second_probe(ready(1), blocker), name="gilwise-layout"),
    ]
    try:
        helpers[0].start()
        if not parked[0].wait(10):
            raise OSError("the layout probe thread did not start")
        # 1. The frame chain: the first helper is inside probe.run...
        candidates = _chains_to(memory, states[0], id(probe_code))
        helpers[1].start()
        if not parked[1].wait(10):
            raise OSError("the layout probe thread did not start")
        # ...and the second inside _second_probe, one call deeper: both must agree.
        candidates &= _chains_to(memory, states[1], id(_second_probe.__code__))
        if not candidates:
            raise OSError("no pointer chain from a thread state to its running frame was found")
        chain, code_offset = min(candidates, key=lambda item: (len(item[0]), item))
        # 1b. The caller pointer: _second_probe was called directly by its thread's target (a
        # lambda), so one hop from its frame leads to the lambda's frame; from probe.run
        # (called through Thread.run's ``self._target(...)``, which may push a C-stack entry
        # frame first) a few hops lead to Thread.run's frame.
        frames_of = [_frame_of(memory, state, chain) for state in states]
        lambda_code = id(helpers[1]._target.__code__)  # type: ignore[attr-defined]
        run_code = id(threading.Thread.run.__code__)
        previous = sorted(
            offset
            for offset in _caller_offsets(memory, frames_of[1], code_offset, lambda_code)
            if _reaches(memory, frames_of[0], offset, code_offset, run_code)
        )
        if not previous:
            raise OSError("the pointer from a frame to its caller's frame was not found")
        # 2. The thread list: interp -> head (the newest thread) -> next ... The program's
        # own threads may start and end meanwhile, so the head moves: the offsets must lead
        # from the interpreter through the list to both parked helpers, which cannot end.
        next_offset = None
        for _ in range(_HEAD_ATTEMPTS):  # the next thread may end (and unlink) meanwhile
            following = thread_next(states[1])  # never NULL: the first helper is after it
            if not following:
                continue
            next_offset = _offset_of(memory.read(states[1], _TSTATE_SCAN), following)
            if next_offset is not None:
                break
        if next_offset is None:
            raise OSError("PyThreadState.next was not found")
        head_offset = None
        for _ in range(_HEAD_ATTEMPTS):
            blob = memory.read(interp, _INTERP_SCAN)
            for offset in offsets_of(blob, thread_head(interp) or 0):
                if _walk_reaches(memory, memory.word(interp + offset), next_offset, states):
                    head_offset = offset
                    break
            if head_offset is not None:
                break
        if head_offset is None:
            raise OSError("the interpreter's thread list head was not found")
        layout = FrameLayout(
            interp=int(interp),
            head_offset=head_offset,
            next_offset=next_offset,
            frame_chain=chain,
            code_offset=code_offset,
            code_type=id(type(probe_code)),
            name_offset=name_offset,
            filename_offset=filename_offset,
            firstlineno_offset=firstlineno_offset,
            str_type=id(str),
            length_offset=length_offset,
            state_offset=state_offset,
            ascii_data=ascii_data,
            compact_data=compact_data,
            previous_offset=previous[0],
        )
        # 3. The reader the sampler child will use must see both helpers in the list and
        # read their functions right, and read strings of every kind.
        reader = FrameReader(memory.read, layout)
        # A thread of the program that ends mid-walk cuts a walk short: try a few times.
        if not any({tstate, *states} <= set(reader.thread_states()) for _ in range(_HEAD_ATTEMPTS)):
            raise OSError("walking the thread list through the discovered layout failed")
        second = _second_probe.__code__
        expected = {
            states[0]: (name, _PROBE_FILENAME, _FIRSTLINENO),
            states[1]: (
                getattr(second, "co_qualname", second.co_name),
                second.co_filename,
                second.co_firstlineno,
            ),
        }
        for state, key in expected.items():
            if reader.code_key(reader.innermost_code(state)) != key:
                raise OSError("reading a thread's function through the discovered layout failed")
        run = threading.Thread.run.__code__
        run_key = (getattr(run, "co_qualname", run.co_name), run.co_filename, run.co_firstlineno)
        lambda_code = helpers[1]._target.__code__  # type: ignore[attr-defined]
        lambda_key = (
            getattr(lambda_code, "co_qualname", lambda_code.co_name),
            lambda_code.co_filename,
            lambda_code.co_firstlineno,
        )
        stack = reader.stack(states[1])
        if stack[-2:] != (lambda_key, expected[states[1]]) or run_key not in stack[:-2]:
            raise OSError("reading a thread's call stack through the discovered layout failed")
        for text in ("plain", "caf\xe9", "\u20ac-euro", "\U0001f600-emoji"):
            if reader.string(id(text)) != text:
                raise OSError(
                    f"reading str objects through the discovered layout failed ({text!r})"
                )
    finally:
        blocker.release()
        for helper in helpers:
            if helper.ident is not None:
                helper.join(10)
    own_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return layout.replace(own_prefix=own_dir)


def _frame_of(memory: _Memory, tstate: int, chain: tuple[int, ...]) -> int:
    address: Optional[int] = tstate
    for offset in chain:
        address = memory.word(address + offset) if address else None
    return address or 0


def _caller_offsets(memory: _Memory, frame: int, code_offset: int, caller_code: int) -> set[int]:
    """Offsets in ``frame`` of a pointer to a frame whose code is ``caller_code``."""
    found = set()
    for offset, pointer in _words(memory.read(frame, _HOP_SCAN)):
        if (
            offset != code_offset
            and _pointer_like(pointer)
            and memory.word(pointer + code_offset) == caller_code
        ):
            found.add(offset)
    return found


def _reaches(
    memory: _Memory, frame: int, previous_offset: int, code_offset: int, code: int
) -> bool:
    """Whether following ``previous_offset`` from ``frame`` meets ``code`` within a few hops."""
    for _ in range(_CALLER_HOPS):
        frame = memory.word(frame + previous_offset) or 0 if frame else 0
        if not frame:
            return False
        if memory.word(frame + code_offset) == code:
            return True
    return False


def _walk_reaches(
    memory: _Memory, head: Optional[int], next_offset: int, wanted: list[int]
) -> bool:
    """Whether following ``next`` from ``head`` meets every thread state in ``wanted``."""
    missing = set(wanted)
    cursor, steps = head, 0
    while cursor and missing and steps < _MAX_THREADS:
        missing.discard(cursor)
        cursor = memory.word(cursor + next_offset)
        steps += 1
    return not missing


# -- reading, in the sampler child -------------------------------------------------------------


class FrameReader:
    """Reads innermost functions through a FrameLayout; ``read(address, size)`` -> bytes
    (empty or short when unreadable). Caches each code object's key by address."""

    def __init__(self, read: Callable[[int, int], bytes], layout: FrameLayout) -> None:
        self._read = read
        self.layout = layout
        self._keys: dict[tuple[int, str, int, int], Optional[FunctionKey]] = {}
        self._code_span = (
            max(layout.name_offset, layout.filename_offset, layout.firstlineno_offset) + 8
        )
        self._frame_span = max(layout.code_offset, layout.previous_offset) + 8
        # Per thread state: {frame address: (code address, key)} from its last stack read.
        self._last_frames: dict[int, dict[int, tuple[int, Optional[FunctionKey]]]] = {}

    def _word(self, address: int) -> int:
        try:
            raw = self._read(address, 8)
        except (OSError, OverflowError, ValueError):
            return 0
        return struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0

    def thread_states(self) -> list[int]:
        """Addresses of the interpreter's thread states (newest first)."""
        layout = self.layout
        states: list[int] = []
        cursor = self._word(layout.interp + layout.head_offset)
        while cursor and len(states) < _MAX_THREADS:
            states.append(cursor)
            cursor = self._word(cursor + layout.next_offset)
        return states

    def innermost_code(self, tstate: int) -> int:
        """The code object address of the thread's innermost frame (0 when it has none)."""
        address = tstate
        for offset in self.layout.frame_chain:
            address = self._word(address + offset)
            if not address:
                return 0
        return self._word(address + self.layout.code_offset)

    def innermost_frame(self, tstate: int) -> int:
        """The address of the thread's innermost frame (0 when it has none)."""
        address = tstate
        for offset in self.layout.frame_chain:
            address = self._word(address + offset)
            if not address:
                return 0
        return address

    def stack(self, tstate: int) -> tuple[FunctionKey, ...]:
        """The thread's Python call stack, root first, gilwise's own frames included.

        One read per frame (its code and caller pointers). A frame at the same address with
        the same code object as at this thread's previous read reuses that read's key: a
        live frame keeps its code alive, so only the innermost frame (which may be new code
        at a reused address) has its code object read every time. Deeper stacks than
        MAX_STACK_DEPTH keep their innermost frames under a TRUNCATED root. Frames holding
        no code object (C-stack entry frames) are skipped.
        """
        layout = self.layout
        previous_at = layout.previous_offset
        code_at = layout.code_offset
        span = self._frame_span
        last = self._last_frames.get(tstate, {})
        seen: dict[int, tuple[int, Optional[FunctionKey]]] = {}
        keys: list[FunctionKey] = []
        frame = self.innermost_frame(tstate)
        depth = 0
        while frame and depth < MAX_STACK_DEPTH:
            try:
                blob = self._read(frame, span)
            except (OSError, OverflowError, ValueError):
                break
            if len(blob) < span:
                break
            code = struct.unpack_from("<Q", blob, code_at)[0]
            cached = last.get(frame)
            if depth and cached is not None and cached[0] == code:
                key = cached[1]
            else:
                key = self.raw_key(code)
            seen[frame] = (code, key)
            if key is not None and key[1] != _SHIM_FILENAME:
                keys.append(key)
            depth += 1
            if previous_at < 0:
                break
            frame = struct.unpack_from("<Q", blob, previous_at)[0]
            if frame in seen:
                break  # a torn read made a loop
        if frame and depth >= MAX_STACK_DEPTH and previous_at >= 0:
            keys.append(TRUNCATED)
        if len(self._last_frames) >= _MAX_THREADS:
            self._last_frames.clear()
        self._last_frames[tstate] = seen
        keys.reverse()
        return tuple(keys)

    def forget(self, tstate: int) -> None:
        """Drop what the last stack read of ``tstate`` cached (the thread ended)."""
        self._last_frames.pop(tstate, None)

    def code_key(self, code: int) -> Optional[FunctionKey]:
        """(qualified name, file, first line) of a code object; None if it is not one, or
        it is gilwise's own code."""
        key = self.raw_key(code)
        if key is not None and key[1].startswith(self.layout.own_prefix or "\0"):
            return None
        return key

    def raw_key(self, code: int) -> Optional[FunctionKey]:
        """(qualified name, file, first line) of a code object; None if it is not one.

        The code object's header and name are read every time (two small reads): a freed
        code object's address (and its name's) can be reused by another, so the cache is
        keyed by (address, name, file name pointer, first line); file names are cached.
        """
        if not code:
            return None
        layout = self.layout
        try:
            blob = self._read(code, self._code_span)
        except (OSError, OverflowError, ValueError):
            return None
        if len(blob) < self._code_span or struct.unpack_from("<Q", blob, 8)[0] != layout.code_type:
            return None  # freed or torn: not a code object (any more)
        name = self.string(struct.unpack_from("<Q", blob, layout.name_offset)[0])
        filename_at = struct.unpack_from("<Q", blob, layout.filename_offset)[0]
        line = struct.unpack_from("<i", blob, layout.firstlineno_offset)[0]
        if name is None:
            return None  # torn: read again next time
        identity = (code, name, filename_at, line)
        if identity in self._keys:
            return self._keys[identity]
        filename = self.string(filename_at)
        if filename is None:
            return None
        key: Optional[FunctionKey] = (name, filename, line)
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[identity] = key
        return key

    def string(self, address: int) -> Optional[str]:
        """The text of a str object at ``address`` (None when it does not look like one)."""
        layout = self.layout
        if not address:
            return None
        try:
            # One read covers the header and a name of up to _SHORT_NAME bytes.
            head = self._read(address, layout.compact_data + _SHORT_NAME)
            if len(head) < layout.compact_data:
                return None
            if struct.unpack_from("<Q", head, 8)[0] != layout.str_type:
                return None
            length = struct.unpack_from("<q", head, layout.length_offset)[0]
            state = struct.unpack_from("<I", head, layout.state_offset)[0]
            kind, compact, is_ascii = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
            if not compact or kind not in (1, 2, 4) or length < 0:
                return None
            length = min(length, _MAX_NAME_CHARS)
            start = layout.ascii_data if is_ascii else layout.compact_data
            data = head[start : start + length * kind]
            if len(data) < length * kind:
                data = self._read(address + start, length * kind)
        except (OSError, OverflowError, ValueError):
            return None
        if len(data) < length * kind:
            return None
        codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        return data.decode(codec, errors="replace")


def current_tstate() -> int:
    """This thread's PyThreadState* (raises OSError if there is none)."""
    value = _api("PyThreadState_Get")()
    if not value:
        raise OSError("PyThreadState_Get returned NULL")
    return int(value)


def supported() -> Optional[str]:
    """Why remote frames cannot work in this interpreter, or None."""
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_Next  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return f"ctypes cannot reach the interpreter's C API ({exc})"
    return None
