"""The calibration programs, the verdict each must get, and how to run one under the CLI.

Each program in programs/ is a small realistic script whose true verdict is known from how it
is written (see its docstring). ``profile_program`` runs it exactly as a user would
(``python -m gilwise profile --format json -o FILE script.py``) and reads the JSON back;
``problems`` lists every way the verdict differs from the truth (empty: correct). Used by
test_calibration.py and by ``python tests/calibration/run.py`` (the repeated runs).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Optional

from gilwise._model import Profile

PROGRAMS = Path(__file__).parent / "programs"
# A profiled program that runs longer than this is stuck: fail loudly instead of hanging CI.
RUN_TIMEOUT_S = 120
# The local HTTP server's answer time for each download (the I/O the program waits for).
SERVER_DELAY_S = 0.025

Check = Callable[[Profile], Optional[str]]


@dataclass(frozen=True)
class Case:
    """One calibration program and its true verdict."""

    name: str
    program: str
    kind: str
    subprocesses: bool = False
    #: Arguments: "{url}" becomes the local HTTP server's address, "{dir}" a scratch folder.
    args: tuple[str, ...] = ()
    checks: tuple[Check, ...] = field(default=())

    @property
    def needs_server(self) -> bool:
        return "{url}" in self.args


# --- extra checks (each returns what is wrong, or None) ---------------------------------


def no_speedup_promised(profile: Profile) -> Optional[str]:
    verdict = profile.verdict
    assert verdict is not None
    if verdict.expected_speedup != 1.0:
        return f"promised {verdict.expected_speedup}x where nothing can be gained"
    return None


def reason_names(*words: str) -> Check:
    def check(profile: Profile) -> Optional[str]:
        assert profile.verdict is not None
        missing = [word for word in words if word not in profile.verdict.reason]
        return f"reason does not name {missing}" if missing else None

    check.__name__ = f"reason_names({', '.join(words)})"
    return check


def backend_is(backend: str) -> Check:
    def check(profile: Profile) -> Optional[str]:
        assert profile.verdict is not None
        got = profile.verdict.recommended_backend
        return None if got == backend else f"recommended {got}, expected {backend}"

    return check


def speedup_within_parallel_part(profile: Profile) -> Optional[str]:
    """At most the cores, and at most what running the spinners' overlap on the cores gives
    (the run outside the time both worker threads lived stays as it is)."""
    verdict = profile.verdict
    assert verdict is not None
    workers = [t for t in profile.threads if t.name != "MainThread"]
    overlap_s = min((t.wall_s for t in workers), default=0.0)
    cores = min(profile.cores, len(workers))
    bound = profile.wall_s / max(profile.wall_s - overlap_s + overlap_s / cores, 1e-9)
    if not 1.0 < verdict.expected_speedup <= min(2.0, bound) + 0.005:
        return f"expected {verdict.expected_speedup}x, allowed (1, {min(2.0, bound):.2f}]"
    return None


CASES: tuple[Case, ...] = (
    Case("hello", "hello.py", "too-short", checks=(no_speedup_promised, backend_is("inline"))),
    Case("two-ms", "two_ms.py", "too-short", checks=(no_speedup_promised, backend_is("inline"))),
    Case(
        "spinners",
        "spinners.py",
        "gil-bound",
        checks=(backend_is("process"), speedup_within_parallel_part, reason_names("spin")),
    ),
    Case("hash-threads", "hash_threads.py", "native-parallel"),
    Case(
        "fsync-lock",
        "fsync_lock.py",
        "lock-held-across-io",
        args=("{dir}",),
        checks=(no_speedup_promised, reason_names("Shrink the critical section")),
    ),
    Case("sleep-lock", "sleep_lock.py", "lock-held-across-io", checks=(no_speedup_promised,)),
    Case(
        "lock-contention",
        "lock_contention.py",
        "lock-contention",
        checks=(no_speedup_promised,),
    ),
    Case(
        "idle-pool-saturated-stage",
        "idle_pool_saturated.py",
        "serial",
        checks=(reason_names("crunch-stage", "crunch_stage", "saturated"),),
    ),
    Case("downloads", "downloads.py", "io-bound", args=("{url}",)),
    Case(
        "asyncio-blocked",
        "asyncio_blocked.py",
        "loop-blocked",
        checks=(backend_is("asyncio"), reason_names("handle_request", "asyncio.to_thread")),
    ),
    Case(
        "mp-pool-parent",
        "mp_pool.py",
        "idle",
        checks=(reason_names("waiting for results", "--subprocesses"),),
    ),
    Case(
        "mp-pool-whole",
        "mp_pool.py",
        "gil-bound",
        subprocesses=True,
        checks=(backend_is("process"), reason_names("Already parallel on processes")),
    ),
)


# --- running ----------------------------------------------------------------------------


class _SlowPages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(SERVER_DELAY_S)
        body = b"x" * 2048
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def local_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering every GET after SERVER_DELAY_S."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowPages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="calibration-http")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def profile_program(case: Case, workdir: Path, url: str = "") -> Profile:
    """Run the case's program under ``gilwise profile`` (JSON) and return the Profile."""
    output = workdir / f"{case.name}.json"
    args = [a.replace("{url}", url).replace("{dir}", str(workdir)) for a in case.args]
    command = [sys.executable, "-m", "gilwise", "profile", "--format", "json", "-o", str(output)]
    if case.subprocesses:
        command.append("--subprocesses")
    command += [str(PROGRAMS / case.program), *args]
    done = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0 or not output.exists():
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return Profile.from_json(output.read_text())


def problems(case: Case, profile: Profile) -> list[str]:
    """Every way the profile's verdict differs from the case's truth."""
    verdict = profile.verdict
    if verdict is None:
        return ["no verdict"]
    found = []
    if verdict.kind != case.kind:
        found.append(f"kind {verdict.kind}, expected {case.kind}")
    for check in case.checks:
        problem = check(profile)
        if problem:
            found.append(problem)
    return found


def describe(profile: Profile) -> str:
    verdict = profile.verdict
    if verdict is None:
        return "no verdict"
    return (
        f"{verdict.kind} / {verdict.recommended_backend} / {verdict.expected_speedup}x: "
        f"{verdict.reason}"
    )
