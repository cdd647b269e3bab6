"""One end of the socket between the caller and a process worker: whole messages, in order.

Each message is an 8-byte big-endian length and the bytes. Used instead of
multiprocessing.connection, whose import (tempfile, shutil, compression modules) would be
paid by an executor's first task; it is otherwise the same framing idea.
"""

from __future__ import annotations

import select
import socket
import struct

_LENGTH = struct.Struct("!Q")
# Up to this size, the length and the message go out in one send.
_JOINED_MAX_BYTES = 64 * 1024


class MessagePipe:
    """Blocking send/receive of whole messages over a connected stream socket."""

    __slots__ = ("_sock",)

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def send_bytes(self, data: bytes) -> None:
        """Send one message (OSError if the other end is gone)."""
        header = _LENGTH.pack(len(data))
        if len(data) <= _JOINED_MAX_BYTES:
            self._sock.sendall(header + data)
        else:
            self._sock.sendall(header)
            self._sock.sendall(data)

    def recv_bytes(self) -> bytearray:
        """Receive one message; EOFError when the other end closed (or died)."""
        (size,) = _LENGTH.unpack(self._read(_LENGTH.size))
        return self._read(size)

    def poll(self) -> bool:
        """True if a message (or EOF) is waiting."""
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def _read(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            count = self._sock.recv_into(view[got:])
            if count == 0:
                raise EOFError
            got += count
        return buffer
