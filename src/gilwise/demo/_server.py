"""A local HTTP/1.1 server with a fixed latency per request, for the io experiment.

``with LocalServer(latency_ms=50) as server: server.url("/item/3")``. It listens on
127.0.0.1 on an ephemeral port, answers every GET with a body of ``body_bytes`` after
sleeping ``latency_ms`` (so it behaves like a slow remote service), serves requests
concurrently (one thread per connection) and, on exit, closes the socket and joins every
thread it started: no thread or port outlives the ``with`` block.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

DEFAULT_BODY_BYTES = 64 * 1024
_POLL_INTERVAL_S = 0.05
_IDLE_CONNECTION_TIMEOUT_S = 10.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A client that leaves a keep-alive connection idle does not hold the shutdown hostage.
    timeout = _IDLE_CONNECTION_TIMEOUT_S
    server: _Server

    def do_GET(self) -> None:
        time.sleep(self.server.latency_s)
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: library code does not print."""


class _Server(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), so none outlives the server.
    daemon_threads = False
    block_on_close = True
    # Every client connects at once; the default backlog of 5 would drop SYNs and add
    # 1 s retransmits that have nothing to do with the GIL.
    request_queue_size = 256

    def __init__(self, latency_s: float, body: bytes) -> None:
        self.latency_s = latency_s
        self.body = body
        super().__init__(("127.0.0.1", 0), _Handler)


class LocalServer:
    """Context manager running the slow HTTP server on a background thread."""

    def __init__(self, latency_ms: float = 50.0, body_bytes: int = DEFAULT_BODY_BYTES) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms!r}")
        if body_bytes < 0:
            raise ValueError(f"body_bytes must be >= 0, got {body_bytes!r}")
        self.latency_ms = latency_ms
        self.body_bytes = body_bytes
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running; use it inside `with LocalServer()`")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> LocalServer:
        body = bytes(range(256)) * (self.body_bytes // 256) + bytes(self.body_bytes % 256)
        self._server = _Server(self.latency_ms / 1000.0, body)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name="gilwise-demo-http-server",
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        server.server_close()
