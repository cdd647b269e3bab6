"""``gilwise profile --pid``: sample another, already running Python process from outside.

Thread states always (from /proc). The GIL holder where we can find the GIL: the address
of ``_PyRuntime`` comes from the ELF symbol table of the target's libpython (or python
executable) plus its load address in /proc/<pid>/maps, and the GIL's offset inside it from
a table measured per CPython minor version; the struct found there must look like a GIL.
Per-function attribution needs the target's stacks and is not available.
"""

from __future__ import annotations

import os
import re
import struct
import time
from dataclasses import dataclass
from typing import Optional

from gilwise import runtime as _runtime
from gilwise.errors import ProbeUnavailableError
from gilwise.model import Profile
from gilwise.probe import _build, _child, _gil_address, _procfs
from gilwise.probe._sampler import SamplerConfig
from gilwise.runtime import RuntimeFacts

_LIBPYTHON = re.compile(r"libpython3\.(\d+)(t?)[^/]*\.so")
_EXECUTABLE = re.compile(r"python3\.(\d+)(t?)$")


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


def attach(pid: int, duration_s: float, rate_hz: float, command: Optional[str] = None) -> Profile:
    """Sample process ``pid`` for ``duration_s`` seconds (less if it exits or on Ctrl-C).

    Raises ProbeUnavailableError when the process cannot be read (gone, permissions).
    """
    missing = _procfs.available()
    if missing is not None:
        raise ProbeUnavailableError(f"gilwise cannot attach here: {missing}")
    if not os.path.isdir(f"/proc/{pid}"):
        raise ProbeUnavailableError(f"no process {pid}: check the pid (ps -e | grep python)")
    target = find_target_python(pid)
    notes: list[str] = []
    if target.free_threaded:
        gil_address, chain, problem = None, (), None
    else:
        gil_address, chain, problem = locate_gil(pid, target)
    if problem:
        notes.append(f"gil holder: {problem}")
    config = SamplerConfig(
        pid=pid,
        rate_hz=rate_hz,
        gil_address=gil_address,
        holder_chain=chain,
        gil_enabled=not target.free_threaded,
        duration_s=duration_s,
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
    return _build.build_profile(
        result,
        facts,
        source=f"attach:{pid}",
        command=command,
        unavailable=notes,
    )
