"""Per-stage statistics as data and JSON, the bottleneck line, and the progress display."""

from __future__ import annotations

import json
import threading

from gilwise.pipeline import Pipeline, RunStats, StageStats, _progress


def _stage(name, *, busy_s=0.0, workers=1, in_wait_s=0.0, out_wait_s=0.0, backend="thread"):
    return StageStats(
        name=name,
        kind="map",
        backend=backend,
        workers=workers,
        reason="",
        items_in=10,
        items_out=10,
        failed=0,
        retried=0,
        busy_s=busy_s,
        input_wait_s=in_wait_s,
        output_wait_s=out_wait_s,
        wall_s=10.0,
    )


def _run(*stages):
    return RunStats(
        stages, wall_s=10.0, source_items=10, delivered_items=10, dead_letters=0, finished=True
    )


def test_the_busiest_saturated_stage_is_the_bottleneck():
    stats = _run(
        _stage("fetch", busy_s=30.0, workers=32, out_wait_s=8.0),
        _stage("parse", busy_s=19.6, workers=2, backend="process"),
        _stage("store", busy_s=0.1, in_wait_s=9.5),
    )
    assert stats.bottleneck.name == "parse"
    assert stats.bottleneck_text == (
        "stage parse is the bottleneck: 98% busy on 2 processes; stages fetch and store wait on it"
    )


def test_a_stage_that_never_waits_is_the_bottleneck_even_when_its_workers_idle():
    stats = _run(
        _stage("fetch", busy_s=10.0, workers=32, out_wait_s=7.0),
        _stage("parse", busy_s=3.0, workers=2, backend="process", in_wait_s=0.2),
    )
    assert stats.bottleneck.name == "parse"
    assert "handing items to its workers" in stats.bottleneck_text


def test_a_slow_consumer_is_named():
    stats = _run(_stage("only", busy_s=1.0, out_wait_s=8.0))
    assert stats.bottleneck is None
    assert stats.bottleneck_text.startswith("the consumer is the bottleneck")


def test_a_slow_source_is_named():
    stats = _run(_stage("only", busy_s=1.0, in_wait_s=8.0))
    assert stats.bottleneck_text.startswith("the source is the bottleneck")


def test_stats_round_trip_through_json():
    stats = _run(_stage("a", busy_s=5.0, workers=2, in_wait_s=1.0))
    data = json.loads(stats.to_json())
    assert data["stages"][0]["utilisation"] == 0.25
    assert data["bottleneck"] == stats.bottleneck_text
    assert "a" in stats.describe() and stats.bottleneck_text in stats.describe()


def test_a_real_slow_stage_is_found():
    never = threading.Event()

    def slow(x):
        never.wait(0.005)  # 5 ms that burn no CPU
        return x

    stats = (
        Pipeline(range(40))
        .map(abs, backend="inline", name="fast")
        .map(slow, backend="thread", workers=1, name="slow")
        .run()
    )
    assert stats.bottleneck is not None and stats.bottleneck.name == "slow"


def test_stats_while_running_are_a_snapshot():
    pipe = Pipeline(range(100)).map(abs, backend="thread", workers=2)
    for value in pipe:
        if value == 10:
            live = pipe.stats
            assert not live.finished and live.delivered_items == 11  # 0..10
            break


def test_progress_is_off_when_stderr_is_not_a_terminal():
    display = _progress.live(lambda: _run())
    with display:
        pass
    assert type(display).__name__ == "nullcontext"


def test_progress_table_shows_each_stage_and_the_bottleneck():
    table = _progress.render(_run(_stage("fetch", busy_s=9.9), _stage("parse")))
    assert [cell for cell in table.columns[0].cells] == ["fetch", "parse"]
    assert table.caption.startswith("stage fetch is the bottleneck")
