"""Two small HTTP/1.1 GET clients for the io experiment: blocking (http.client) and asyncio.

Both return the body and check it against the Content-Length the server announced, so a
short read is an error, not a silently faster download. http.client is used rather than
urllib so no proxy settings from the environment reroute a request meant for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client

_TIMEOUT_S = 30.0


class HttpError(OSError):
    """The server answered something other than a complete 200 response."""


def get_blocking(host: str, port: int, path: str) -> bytes:
    """GET one resource on a fresh connection; blocks; raises HttpError on a bad answer."""
    connection = http.client.HTTPConnection(host, port, timeout=_TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise HttpError(f"GET {path} answered {response.status} {response.reason}")
        return body
    finally:
        connection.close()


async def get_async(host: str, port: int, path: str) -> bytes:
    """GET one resource on a fresh connection with asyncio streams; HttpError on a bad answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _TIMEOUT_S)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: gilwise-demo\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        return await asyncio.wait_for(_read_response(reader, path), _TIMEOUT_S)
    finally:
        writer.close()
        await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader, path: str) -> bytes:
    status_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"GET {path}: not an HTTP/1.x response: {status_line!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status != 200:
        raise HttpError(f"GET {path} answered {status_line!r}")
    if "content-length" not in headers:
        raise HttpError(
            f"GET {path}: the response has no Content-Length (chunked is not supported)"
        )
    length = int(headers["content-length"])
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(
            f"GET {path}: connection closed after {len(exc.partial)} of {length} body bytes"
        ) from exc
