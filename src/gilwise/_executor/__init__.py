"""Choose and run: gilwise.Executor, gilwise.map and gilwise.classify.

One job per module: _core.py (the Executor: queues, dispatch to backends, retries,
timeouts, shutdown and Ctrl-C), _map.py (the lazy bounded map window), _tasks.py (tasks,
lanes, plans), _timers.py (the deadline thread), _progress.py (progress bar / callback),
_api.py (the one-liners). Measuring and deciding is gilwise._chooser's, running chunks
gilwise._chunks', retry policy gilwise._retry's: shared with the Pipeline.
"""

from __future__ import annotations

from ._api import classify, map
from ._core import Executor

__all__ = ["Executor", "classify", "map"]
