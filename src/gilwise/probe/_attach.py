"""``gilwise profile --pid``: sample another, already running Python process from outside.

Thread states always (from /proc). The GIL holder where we can find the GIL: the address
of ``_PyRuntime`` comes from the ELF symbol table of the target's libpython (or python
executable) plus its load address in /proc/<pid>/maps, and the GIL's offset inside it from
a table measured per CPython minor version; the struct found there must look like a GIL.
Functions when gilwise runs on the target's Python minor version: the frame layout is
discovered in this (the CLI's) interpreter, its addresses translated into the target's
(``_PyRuntime``'s main interpreter, the ``code`` and ``str`` types from the target's ELF
symbols) and checked against the target's live threads before sampling starts.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import time
from dataclasses import dataclass
from typing import Optional

from gilwise.errors import ProbeUnavailableError
from gilwise.probe import _frames, _gil_address, _procfs
from gilwise.probe._sampler import SamplerConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gilwise._model import Profile

# The sampler process uses the locating functions here for child processes it follows (see
# _children), so the modules that build a Profile are imported only by ``attach``.

_LIBPYTHON = re.compile(r"libpython3\.(\d+)(t?)[^/]*\.so")
_EXECUTABLE = re.compile(r"python3\.(\d+)(t?)$")
# The main interpreter's pointer is in the first part of _PyRuntime.
_RUNTIME_SCAN = 1 << 16
# Stack reads per second when attached (the thread-state rate is --rate).
_STACK_RATE_HZ = 250.0


@dataclass(frozen=True)
class TargetPython:
    """What we learnt about the target's interpreter from outside."""

    minor: Optional[int]
    free_threaded: bool
    runtime_address: Optional[int]
    binary: Optional[str]
    problem: Optional[str] = None


def _mappings(pid: int) -> list[tuple[int, int, str]]:
    """(start address, file offset, path) of the target's file-backed mappings."""
    out = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                start = int(parts[0].split("-")[0], 16)
                out.append((start, int(parts[2], 16), parts[5].strip()))
    return out


def elf_symbol(path: str, name: bytes) -> Optional[tuple[int, bool]]:
    """(st_value, is_position_independent) of a symbol in an ELF64 little-endian file."""
    with open(path, "rb") as elf:
        data = elf.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    e_type = struct.unpack_from("<H", data, 16)[0]
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + index * e_shentsize)
        for index in range(e_shnum)
    ]
    for sh_type in (11, 2):  # .dynsym first (always present in a shared library), .symtab
        for header in sections:
            if header[1] != sh_type:
                continue
            offset, size, link, entsize = header[4], header[5], header[6], header[9] or 24
            strtab_offset = sections[link][4]
            for position in range(offset, offset + size, entsize):
                st_name, _info, _other, _shndx, st_value, _size = struct.unpack_from(
                    "<IBBHQQ", data, position
                )
                start = strtab_offset + st_name
                if data[start : start + len(name) + 1] == name + b"\0" and st_value:
                    return st_value, e_type == 3
    return None


def find_target_python(pid: int) -> TargetPython:
    """Locate the target's interpreter binary, version and ``_PyRuntime`` address."""
    try:
        mappings = _mappings(pid)
    except OSError as exc:
        raise ProbeUnavailableError(
            f"cannot read /proc/{pid}/maps ({exc}): is {pid} a running process you may trace?"
        ) from exc
    exe = os.path.realpath(f"/proc/{pid}/exe") if os.path.exists(f"/proc/{pid}/exe") else ""
    candidates: list[tuple[str, re.Match]] = []
    for _, _, path in mappings:
        match = _LIBPYTHON.search(os.path.basename(path))
        if match and path not in [c[0] for c in candidates]:
            candidates.append((path, match))
    exe_match = _EXECUTABLE.search(os.path.basename(exe))
    if exe_match:
        candidates.append((exe, exe_match))
    elif exe:
        candidates.append((exe, None))  # type: ignore[arg-type]
    problem = "no libpython or python3.X executable in the target's memory map"
    for path, match in candidates:
        minor = int(match.group(1)) if match else None
        free_threaded = bool(match and match.group(2))
        try:
            symbol = elf_symbol(path, b"_PyRuntime")
        except (OSError, struct.error, IndexError) as exc:
            problem = f"cannot read the symbols of {path}: {exc}"
            continue
        if symbol is None:
            problem = f"{path} has no _PyRuntime symbol (stripped?)"
            continue
        value, relocatable = symbol
        base = min((start - offset for start, offset, p in mappings if p == path), default=0)
        address = base + value if relocatable else value
        return TargetPython(minor, free_threaded, address, path)
    return TargetPython(None, False, None, None, problem)


def looks_like_python(pid: int, target: TargetPython) -> Optional[bool]:
    """True: ``pid`` runs CPython; False: plainly not (no ``_PyRuntime`` anywhere, no
    libpython mapped and an executable not named python); None: cannot tell (gone)."""
    if target.runtime_address is not None:
        return True
    try:
        mapped = [path for _, _, path in _mappings(pid)]
        exe = os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None
    if any(_LIBPYTHON.search(os.path.basename(path)) for path in mapped):
        return True
    return "python" in os.path.basename(exe).lower()


def refuse_non_python(pid: int, target: TargetPython) -> None:
    """Raise ProbeUnavailableError (one line naming the process) when ``pid`` is plainly
    not a CPython process."""
    if looks_like_python(pid, target) is not False:
        return  # CPython, or cannot tell: let sampling say what it can
    exe = os.path.realpath(f"/proc/{pid}/exe")
    try:
        with open(f"/proc/{pid}/comm") as comm:
            name = comm.read().strip()
    except OSError:
        name = os.path.basename(exe)
    raise ProbeUnavailableError(
        f"process {pid} ({name}, {exe}) is not a CPython process (no libpython and no "
        f"_PyRuntime in it): give the pid of a python program (pgrep -a python)"
    )


def locate_gil(pid: int, target: TargetPython) -> tuple[Optional[int], tuple, Optional[str]]:
    """(GIL address, holder chain, problem) for the target, from the per-version tables."""
    if target.runtime_address is None:
        return None, (), target.problem
    if target.minor is None:
        return None, (), f"the Python version of {target.binary} is unknown"
    key = (3, target.minor)
    offset = _gil_address.KNOWN_GIL_OFFSETS.get(key)
    chain = _gil_address.KNOWN_HOLDER_CHAINS.get(key, ())
    if offset is None:
        return None, (), f"gilwise does not know the GIL layout of Python 3.{target.minor}"
    address = target.runtime_address + offset
    memory = _procfs.MemoryReader(pid)
    try:
        blob = memory.read(address, 24)
    except OSError as exc:
        return None, (), f"cannot read the target's memory ({exc})"
    finally:
        memory.close()
    if not _gil_address.gil_struct_plausible(blob):
        return None, (), f"no GIL-like struct at _PyRuntime+{offset} (a custom build?)"
    return address, chain, None


def _symbol_address(pid: int, path: str, name: bytes) -> Optional[int]:
    symbol = elf_symbol(path, name)
    if symbol is None:
        return None
    value, relocatable = symbol
    if not relocatable:
        return value
    base = min((start - offset for start, offset, p in _mappings(pid) if p == path), default=0)
    return base + value


def locate_frames(
    pid: int, target: TargetPython, holder_chain: tuple
) -> tuple[Optional[_frames.FrameLayout], Optional[str]]:
    """(the target's frame layout, None) or (None, why functions are unavailable)."""
    here = sys.version_info[1]
    if target.runtime_address is None or target.binary is None:
        return None, target.problem or "the target's interpreter was not found"
    if target.minor != here or target.free_threaded:
        return None, (
            f"stacks of another process are read with the layout of gilwise's own Python "
            f"(3.{here}), so run gilwise with the target's Python (3.{target.minor})"
        )
    problem = _frames.supported()
    if problem is not None:
        return None, problem
    try:
        own = _frames.locate_in_process(_frames.current_tstate())
        code_type = _symbol_address(pid, target.binary, b"PyCode_Type")
        str_type = _symbol_address(pid, target.binary, b"PyUnicode_Type")
        own_runtime = _procfs.MemoryReader(os.getpid())
        try:
            runtime_blob = own_runtime.read(_gil_address.runtime_base(), _RUNTIME_SCAN)
        finally:
            own_runtime.close()
    except (OSError, struct.error, IndexError) as exc:
        return None, f"the frame layout could not be found ({exc})"
    if code_type is None or str_type is None:
        return None, f"{target.binary} has no PyCode_Type/PyUnicode_Type symbols (stripped?)"
    # Where _PyRuntime points at our (main) interpreter is where the target's points at its.
    offsets = _procfs.offsets_of(runtime_blob, own.interp)
    tids = set(_procfs.list_threads(pid))
    memory = _procfs.MemoryReader(pid)
    try:
        for offset in offsets:
            raw = memory.read(target.runtime_address + offset, 8)
            if len(raw) < 8:
                continue
            layout = own.replace(
                interp=struct.unpack("<Q", raw)[0],
                code_type=code_type,
                str_type=str_type,
                own_prefix="",
            )
            if _layout_holds(memory, layout, holder_chain, tids):
                return layout, None
    except OSError as exc:
        return None, f"cannot read the target's memory ({exc})"
    finally:
        memory.close()
    return None, "the target's thread states did not match the frame layout (another build?)"


def _layout_holds(
    memory: _procfs.MemoryReader, layout: _frames.FrameLayout, holder_chain: tuple, tids: set
) -> bool:
    """Every thread state of the target maps to one of its threads, and one of them reads
    as a running Python function."""

    def read(address: int, size: int) -> bytes:
        try:
            return memory.read(address, size)
        except (OSError, OverflowError, ValueError):
            return b""

    reader = _frames.FrameReader(read, layout)
    states = reader.thread_states()
    if not states or not holder_chain:
        return False
    if any(_procfs.follow_chain(read, state, holder_chain) not in tids for state in states):
        return False
    return any(reader.code_key(reader.innermost_code(state)) is not None for state in states)


def attach(
    pid: int,
    duration_s: float,
    rate_hz: float,
    command: Optional[str] = None,
    stack_rate_hz: Optional[float] = _STACK_RATE_HZ,
) -> Profile:
    """Sample process ``pid`` for ``duration_s`` seconds (less if it exits or on Ctrl-C).

    Raises ProbeUnavailableError when the process cannot be read (gone, permissions) or is
    not a CPython process.
    """
    from gilwise import _runtime
    from gilwise._runtime import RuntimeFacts
    from gilwise.probe import _build, _child

    missing = _procfs.available()
    if missing is not None:
        raise ProbeUnavailableError(f"gilwise cannot attach here: {missing}")
    if not os.path.isdir(f"/proc/{pid}"):
        raise ProbeUnavailableError(f"no process {pid}: check the pid (ps -e | grep python)")
    target = find_target_python(pid)
    refuse_non_python(pid, target)
    notes: list[str] = []
    if target.free_threaded:
        gil_address, chain, problem = None, (), None
    else:
        gil_address, chain, problem = locate_gil(pid, target)
    if problem:
        notes.append(f"gil holder: {problem}")
    layout = None
    if gil_address is not None and stack_rate_hz:
        layout, frames_problem = locate_frames(pid, target, chain)
        if frames_problem:
            notes.append(f"functions: {frames_problem}")
    config = SamplerConfig(
        pid=pid,
        rate_hz=rate_hz,
        gil_address=gil_address,
        holder_chain=chain,
        gil_enabled=not target.free_threaded,
        duration_s=duration_s,
        frame_layout=layout.to_dict() if layout is not None else None,
        frame_every=max(1, round(rate_hz / (stack_rate_hz or _STACK_RATE_HZ))),
    )
    child = _child.start(config, allow_tracing=False)
    result = _child.wait(child, time.monotonic() + duration_s + 1.0)
    here = _runtime.current()
    facts = RuntimeFacts(
        python_version=(3, target.minor, 0) if target.minor is not None else here.python_version,
        implementation="CPython",
        cores=here.cores,
        gil_enabled=not target.free_threaded,
        free_threaded_build=target.free_threaded,
        platform=here.platform,
    )
    frames = _build.remote_frames(result) if layout is not None else None
    return _build.build_profile(
        result,
        facts,
        frames=frames,
        source=f"attach:{pid}",
        command=command,
        unavailable=notes,
    )
