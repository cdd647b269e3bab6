"""How much CPU other programs used while the demo measured: is this a fair measurement?

A ratio of two timings says something about the GIL only if nothing else competed for the
cores meanwhile. Machine-wide busy CPU time (from /proc/stat via psutil) minus this
process's and its reaped children's CPU time is what other programs (and the kernel on
their behalf) used.
"""

from __future__ import annotations

import time
from typing import Optional

import psutil

#: CPU time that is not work: idle, waiting on disks, and guest time (already in user/nice).
_NOT_WORK = ("idle", "iowait", "guest", "guest_nice")


def _machine_busy_s() -> float:
    times = psutil.cpu_times()._asdict()
    return sum(value for name, value in times.items() if name not in _NOT_WORK)


def _own_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class OtherLoad:
    """``with OtherLoad() as load: ...`` then ``load.cores``: the average number of cores
    other programs kept busy during the block (None before it ends). Child processes count
    as ours only once reaped, so reap them inside the block."""

    def __init__(self) -> None:
        self.cores: Optional[float] = None
        self._start = (0.0, 0.0, 0.0)

    def __enter__(self) -> OtherLoad:
        self._start = (time.perf_counter(), _machine_busy_s(), _own_cpu_s())
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall_start, busy_start, own_start = self._start
        wall_s = time.perf_counter() - wall_start
        others_s = (_machine_busy_s() - busy_start) - (_own_cpu_s() - own_start)
        self.cores = max(0.0, others_s) / wall_s if wall_s > 0 else 0.0
