"""Where this interpreter keeps its GIL, and how to map a PyThreadState* to a native thread id.

The GIL struct (CPython 3.9-3.13, ``struct _gil_runtime_state``) lives inside ``_PyRuntime``:
``unsigned long interval; PyThreadState *last_holder; int locked; unsigned long
switch_number; cond; mutex; switch_cond; switch_mutex``. We find it without knowing the
version's layout: set the switch interval to an unusual value and look for it followed by
this thread's PyThreadState* in our own memory.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
from dataclasses import dataclass
from typing import Optional

from gilwise.probe._frames import current_tstate
from gilwise.probe._procfs import MemoryReader, offsets_of

# An interval (in microseconds) nobody uses, so its bytes next to our thread state are unique.
_MARKER_INTERVAL_US = 5032
# _PyRuntime is a few hundred KiB; the GIL is well inside the first MiBs.
_SEARCH_BYTES = 8 << 20
# Offsets of PyThreadState fields are small; the struct is under 4 KiB in 3.9-3.13.
_TSTATE_BYTES = 4096
_PTHREAD_BYTES = 2048


@dataclass(frozen=True)
class GilLocation:
    """The GIL struct's address and how to read a holder's native thread id from memory.

    ``holder_chain``: (offset, size) reads starting from a PyThreadState*: 3.11+ read
    ``native_thread_id`` directly; 3.9/3.10 read ``thread_id`` (a pthread_t, the address of
    glibc's struct pthread) and then the ``tid`` inside it.
    """

    address: int
    holder_chain: tuple[tuple[int, int], ...]
    runtime_offset: int


def runtime_base() -> int:
    """The address of ``_PyRuntime`` in this process (raises ValueError if not exported)."""
    return ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))


def locate_in_process() -> GilLocation:
    """Find this interpreter's GIL; call from the thread that will stay alive (cheap, ~ms).

    Temporarily changes sys.setswitchinterval (restored before returning). Raises OSError
    when /proc/self/mem or the symbol is unavailable or the struct is not found.
    """
    try:
        base = runtime_base()
    except (ValueError, AttributeError) as exc:
        raise OSError(f"_PyRuntime symbol not found: {exc}") from exc
    tstate = current_tstate()
    memory = MemoryReader(_pid())
    try:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(_MARKER_INTERVAL_US / 1e6)
        try:
            blob = memory.read_until_unmapped(base, _SEARCH_BYTES)
        finally:
            sys.setswitchinterval(previous)
        offset = blob.find(struct.pack("<QQ", _MARKER_INTERVAL_US, tstate))
        if offset < 0:
            # Another thread took the GIL while we read (pread releases it), so the holder
            # next to the marker is not us: take a marker followed by a plausible holder,
            # which must read back as the restored interval.
            offset = _confirmed_marker(memory, base, blob, round(previous * 1e6))
        if offset < 0:
            raise OSError("the GIL struct was not found inside _PyRuntime")
        chain = _holder_chain(memory, tstate)
    finally:
        memory.close()
    return GilLocation(base + offset, chain, offset)


def _confirmed_marker(memory: MemoryReader, base: int, blob: bytes, restored_us: int) -> int:
    """Offset of a marker interval followed by a GIL-like struct whose interval now reads as
    ``restored_us``; -1 when there is none."""
    marker = struct.pack("<Q", _MARKER_INTERVAL_US)
    offset = blob.find(marker)
    while offset >= 0:
        if offset % 8 == 0 and gil_struct_plausible(
            blob[offset : offset + 24], _MARKER_INTERVAL_US
        ):
            now = memory.read(base + offset, 8)
            if len(now) == 8 and struct.unpack("<Q", now)[0] == restored_us:
                return offset
        offset = blob.find(marker, offset + 1)
    return -1


def _holder_chain(memory: MemoryReader, tstate: int) -> tuple[tuple[int, int], ...]:
    native_id = threading.get_native_id()
    ident = threading.get_ident()
    tstate_blob = memory.read(tstate, _TSTATE_BYTES)
    if sys.version_info >= (3, 11):
        direct = offsets_of(tstate_blob, native_id)
        if direct:
            return ((direct[0], 8),)
    ident_offsets = offsets_of(tstate_blob, ident)
    if not ident_offsets:
        raise OSError("PyThreadState.thread_id not found")
    tid_offsets = offsets_of(memory.read(ident, _PTHREAD_BYTES), native_id, "<i")
    if not tid_offsets:
        raise OSError("the native thread id was not found in glibc's struct pthread")
    return ((ident_offsets[0], 8), (tid_offsets[0], 4))


def _pid() -> int:
    import os

    return os.getpid()


# Known layouts for attaching to another process of the same CPython minor version on
# x86_64/aarch64 glibc (measured with locate_in_process on 3.9-3.13).
KNOWN_GIL_OFFSETS: dict[tuple[int, int], int] = {
    (3, 9): 352,
    (3, 10): 352,
    (3, 11): 360,
    (3, 12): 77432,
    (3, 13): 96104,
}
KNOWN_HOLDER_CHAINS: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {
    (3, 9): ((176, 8), (720, 4)),
    (3, 10): ((176, 8), (720, 4)),
    (3, 11): ((160, 8),),
    (3, 12): ((144, 8),),
    (3, 13): ((160, 8),),
}


def gil_struct_plausible(blob: bytes, interval_us: Optional[int] = None) -> bool:
    """True when 24 bytes look like (interval, last_holder, locked) of a GIL struct."""
    if len(blob) < 24:
        return False
    interval, holder, locked = struct.unpack_from("<QQi", blob, 0)
    if interval_us is not None and interval != interval_us:
        return False
    return 0 < interval < 10_000_000 and locked in (0, 1) and (holder == 0 or holder > 4096)
