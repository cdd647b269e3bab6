"""The io experiment's local server and HTTP clients: correct bytes, clean shutdown."""

from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from gilwise.demo._http_client import HttpError, get_async, get_blocking
from gilwise.demo._server import LocalServer


def _listening_ports() -> set[int]:
    return {
        conn.laddr.port
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN
    }


def test_blocking_client_gets_the_whole_body(no_leaks):
    with LocalServer(latency_ms=0, body_bytes=70_000) as server:
        body = get_blocking(server.host, server.port, "/item/1")
    assert len(body) == 70_000
    assert body[:4] == bytes([0, 1, 2, 3])


def test_asyncio_client_reads_exactly_content_length(no_leaks):
    with LocalServer(latency_ms=0, body_bytes=65_536) as server:
        body = asyncio.run(get_async(server.host, server.port, "/item/2"))
    assert len(body) == 65_536


def test_server_stops_with_no_thread_left_and_port_free(no_leaks):
    threads_before = set(threading.enumerate())
    with LocalServer(latency_ms=1) as server:
        port = server.port
        assert port in _listening_ports()
        with ThreadPoolExecutor(8) as pool:
            sizes = list(
                pool.map(lambda i: len(get_blocking(server.host, port, f"/{i}")), range(16))
            )
        assert sizes == [server.body_bytes] * 16
    assert set(threading.enumerate()) <= threads_before
    assert port not in _listening_ports()
    # The port can be listened on again (SO_REUSEADDR, as any server sets, tolerates the
    # TIME_WAIT of closed connections but not a socket still listening).
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    finally:
        probe.close()


def test_server_serves_requests_concurrently(no_leaks):
    # Each handler blocks until all of them have arrived: only a concurrent server passes.
    arrived = threading.Barrier(4, timeout=20)
    with LocalServer(latency_ms=0) as server:
        original = server._server.RequestHandlerClass.do_GET  # type: ignore[union-attr]

        class Waiting(server._server.RequestHandlerClass):  # type: ignore[union-attr,misc]
            def do_GET(self) -> None:
                arrived.wait()
                original(self)

        server._server.RequestHandlerClass = Waiting  # type: ignore[union-attr]
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(get_blocking, server.host, server.port, "/") for _ in range(3)]
            arrived.wait()  # the 4th party: fails loudly if the server served them one by one
            assert [len(f.result(timeout=20)) for f in futures] == [server.body_bytes] * 3


def test_asyncio_client_reports_a_short_body(no_leaks):
    async def scenario() -> None:
        async def short_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcde")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(short_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(HttpError, match="after 5 of 10 body bytes"):
                await get_async("127.0.0.1", port, "/short")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_bad_latency_is_refused():
    with pytest.raises(ValueError, match="latency_ms"):
        LocalServer(latency_ms=-1)
