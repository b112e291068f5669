"""The soak bench item (loadtests/soak_bench.py), briefly: its slope on known samples, and a 2-second soak at
a low rate against a real `serving serve` of iris, paced open-loop, with RSS samples and counted errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests import soak_bench
from tests.support import ServerProcess, serving_process


def test_slope_fits_the_second_half_only() -> None:
    # A 40 MB jump in the first half (warm-up), then 0.5 MB per minute: the slope sees only the latter.
    samples = [(float(t), 100.0 + (40.0 if t >= 20 else 0.0) + 0.5 * t / 60) for t in range(0, 125, 5)]
    assert soak_bench.slope_mb_per_min(samples) == pytest.approx(0.5)
    flat = [(float(t), 80.0 + (0.2 if t % 10 else 0.0)) for t in range(0, 605, 5)]
    assert abs(soak_bench.slope_mb_per_min(flat)) < 0.01
    assert soak_bench.slope_mb_per_min([(0.0, 1.0)]) == 0.0


@pytest.fixture(scope="module")
def iris_server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("soak")
    with serving_process(
        ["serve", "--model-dir", str(model_repo / "sklearn-iris")], log_dir=log_dir
    ) as server:
        yield server


@pytest.mark.e2e
def test_short_soak_reports_rate_latency_and_rss(iris_server: ServerProcess) -> None:
    report = asyncio.run(
        soak_bench.soak(iris_server.url, iris_server.process.pid, 2.0, rate=100.0, warmup_s=0.3, every_s=0.5)
    )
    assert report.errors == 0, report.first_error
    assert report.requests == 200  # open loop: exactly rate x seconds sent, all answered
    assert report.achieved_rps == pytest.approx(100.0, rel=0.1)
    assert len(report.samples) == 5 and [s[0] for s in report.samples] == pytest.approx(
        [0, 0.5, 1, 1.5, 2], abs=0.1
    )
    assert report.rss_start_mb > 20 and report.rss_end_mb == pytest.approx(report.samples[-1][1], abs=1e-3)
    assert 0 < report.p50_ms <= report.p99_ms and report.cpu_us > 0
    row = soak_bench.to_row(report, 2 / 60, 0.3)
    assert row.item == "soak" and row.value == report.slope_mb_per_min and row.unit == "MB/min"
    assert row.met == (report.slope_mb_per_min <= soak_bench.SLOPE_TARGET_MB_PER_MIN)


@pytest.mark.e2e
def test_failed_answers_count_as_errors_not_latency(iris_server: ServerProcess) -> None:
    async def against_unknown_model() -> soak_bench.PacedLoad:
        load = soak_bench.PacedLoad(iris_server.url, "/v2/models/nope/infer", b'{"inputs": []}', rate=50.0)
        try:
            await load.drive(0.2)
        finally:
            await load.client.aclose()
        return load

    load = asyncio.run(against_unknown_model())
    assert load.errors == 10 and load.latencies == []
    assert load.first_error.startswith("HTTP 404")
