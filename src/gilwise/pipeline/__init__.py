"""Streaming pipelines whose stages each run on the right concurrency model.

Public: ``Pipeline`` (also ``gilwise.Pipeline``), the error policy ``Retry``, and the data a
run produces: ``DeadLetter``, ``RunStats``, ``StageStats``. Everything else is internal.
"""

from __future__ import annotations

from .. import _fixup_public_names
from ._pipeline import Pipeline
from ._policy import DeadLetter, Retry
from ._stats import RunStats, StageStats

__all__ = ["DeadLetter", "Pipeline", "Retry", "RunStats", "StageStats"]

_fixup_public_names(__name__, globals())  # repr(Retry) says gilwise.pipeline.Retry
