"""Run the chosen experiments in order and collect one DemoResult."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Optional

from .. import _runtime as runtime
from .._runtime import RuntimeFacts
from ._cpu import run_cpu
from ._explain import explain
from ._gil import probe_available
from ._io import DEFAULT_LATENCY_MS, DEFAULT_REQUESTS, run_io
from ._load import OtherLoad
from ._native import run_native
from ._results import DemoResult, ExperimentResult

EXPERIMENTS = ("cpu", "io", "native")


class UnknownExperimentError(ValueError):
    """An experiment name that is not cpu, io, native or all."""


def resolve(names: Iterable[str]) -> tuple[str, ...]:
    """The experiments to run, in canonical order, without repeats; "all" means every one.

    Raises UnknownExperimentError naming the bad name and the valid ones.
    """
    chosen: set[str] = set()
    for name in names or ["all"]:
        if name == "all":
            chosen.update(EXPERIMENTS)
        elif name in EXPERIMENTS:
            chosen.add(name)
        else:
            valid = ", ".join((*EXPERIMENTS, "all"))
            raise UnknownExperimentError(f"unknown experiment {name!r}; choose from {valid}")
    return tuple(name for name in EXPERIMENTS if name in chosen)


def run_demo(
    names: Iterable[str] = ("all",),
    *,
    scale: float = 1.0,
    requests: int = DEFAULT_REQUESTS,
    latency_ms: float = DEFAULT_LATENCY_MS,
    facts: Optional[RuntimeFacts] = None,
    measure_gil: Optional[bool] = None,
) -> DemoResult:
    """Run the experiments (blocking, seconds to a minute) and explain each one.

    ``facts`` defaults to this interpreter's; ``measure_gil`` defaults to "when the probe
    exists". Raises UnknownExperimentError for a bad name, ValueError for a bad size.
    """
    if not scale > 0:
        raise ValueError(f"scale must be greater than 0, got {scale!r}")
    if requests < 1:
        raise ValueError(f"requests must be at least 1, got {requests!r}")
    if latency_ms < 0:
        raise ValueError(f"latency_ms must be 0 or more, got {latency_ms!r}")
    chosen = resolve(names)
    facts = runtime.current() if facts is None else facts
    measure = probe_available() if measure_gil is None else measure_gil
    results: list[ExperimentResult] = []
    for name in chosen:
        with OtherLoad() as load:
            if name == "cpu":
                result = run_cpu(scale, facts, measure_gil=measure)
            elif name == "io":
                result = run_io(requests, latency_ms, measure_gil=measure)
            else:
                result = run_native(scale, measure_gil=measure)
        result = replace(result, other_programs_cores=load.cores)
        results.append(explain(result, facts))
    return DemoResult(
        experiments=tuple(results),
        python_version=facts.version_text,
        cores=facts.cores,
        gil_enabled=facts.gil_enabled,
        scale=scale,
        gil_measured=measure
        and any(row.gil_held_fraction is not None for result in results for row in result.rows),
    )
