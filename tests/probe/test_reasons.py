"""Wait reasons told by a blocked thread's Python stack (gilwise.probe._reasons)."""

from __future__ import annotations

import pytest

from gilwise.probe._procfs import JOIN_WAIT, LOCK_WAIT
from gilwise.probe._reasons import blocked_reason

POOL = "/usr/lib/python3.12/multiprocessing/pool.py"
UTIL = "/usr/lib/python3.12/multiprocessing/util.py"


@pytest.mark.parametrize("qualified", [True, False])  # 3.11+ code objects, and 3.9/3.10
def test_closing_a_multiprocessing_pool_is_a_join_not_a_contended_lock(qualified):
    # `with Pool(2) as pool:` ends in terminate(), which acquires the inqueue's lock: held
    # by an idle worker process, it can keep the parent waiting (0.52 s seen on 3.12). That
    # is waiting for the pool's workers, not a lock the program's threads contend.
    def name(qualname: str) -> str:
        return qualname if qualified else qualname.rsplit(".", 1)[-1]

    stack = (
        ("<module>", "/home/user/mp_pool.py", 1),
        (name("Pool.__exit__"), POOL, 736),
        (name("Pool.terminate"), POOL, 654),
        (name("Finalize.__call__"), UTIL, 205),
        (name("Pool._terminate_pool"), POOL, 680),
        (name("Pool._help_stuff_finish"), POOL, 671),
    )
    assert blocked_reason(LOCK_WAIT, stack) == JOIN_WAIT


def test_a_users_own_lock_stays_a_lock_wait():
    stack = (("<module>", "/home/user/app.py", 1), ("write_record", "/home/user/app.py", 12))
    assert blocked_reason(LOCK_WAIT, stack) == LOCK_WAIT
