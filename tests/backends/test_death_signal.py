"""Process workers and the zygote ask Linux for a death signal (prctl PR_SET_PDEATHSIG), so
that they end with their parent even when EOF cannot tell them (a fork of the program still
holding its socket). Checked by reading the setting back, in a fresh interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

# The lean way uses the private half of ctypes: checked under every Python CI has.
pytestmark = [
    pytest.mark.multiversion,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's"),
]

SRC_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))

READ_BACK = """
import os, signal, sys
from gilwise.backends import _process_worker
{setup}
assert _process_worker.ask_for_death_signal(os.getppid(), signal.SIGTERM)
imported = "ctypes" in sys.modules
import ctypes
setting = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(setting), 0, 0, 0)  # PR_GET_PDEATHSIG
print(setting.value, imported)
"""


def _read_back(setup: str = "") -> tuple[int, bool]:
    """(the death signal set, whether ctypes was imported to set it)."""
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK.format(setup=textwrap.dedent(setup))],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=SRC_DIR),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    value, imported = done.stdout.split()
    return int(value), imported == "True"


def test_the_death_signal_is_set_without_importing_ctypes():
    # ``import ctypes`` takes 5-15 ms: paid by the zygote before a new pool's second worker.
    assert _read_back() == (signal.SIGTERM, False)


def test_without_the_lean_way_ctypes_sets_it():
    # The private half of ctypes does not offer what is needed: the public ctypes does it.
    assert _read_back("import _ctypes\ndel _ctypes.dlsym") == (signal.SIGTERM, True)
