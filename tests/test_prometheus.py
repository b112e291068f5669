"""A real Prometheus scrapes a real `serving up` (router + a batching predictor): request counts, batch
sizes and router metrics arrive and answer PromQL; `promtool check metrics` accepts what we expose."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.inprocess import serving_inprocess
from tests.support import free_port, stop_process, train_iris_sklearn, wait_until
from tests.up_support import apply_text, isvc_yaml, serving_up, wait_for_traffic

BATCHER = "    batcher:\n      maxBatchSize: 16\n      maxLatency: 20\n"
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def promtool_check(text: str) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (install: scripts/install-test-tools)")
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


@contextmanager
def prometheus(target: str, tmp: Path, port: int | None = None) -> Iterator[str]:
    """Debian's prometheus on a free loopback port (or `port`), scraping `target` every second; yields its URL."""
    port = port or free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: serving\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/-/ready", timeout=2).status_code == 200, 60, what="prometheus ready"
        )
        yield url
    finally:
        stop_process(process)
        log.close()


def scrape_health(url: str) -> str:
    """What Prometheus says about its targets: the message a failing wait shows."""
    targets = httpx.get(url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return "; ".join(
        f"{t['scrapeUrl']} {t['health']} last={t['lastScrape']} took={t['lastScrapeDuration']}s"
        f" error={t['lastError']!r}"
        for t in targets
    )


def query(url: str, promql: str) -> float:
    r = httpx.get(url + "/api/v1/query", params={"query": promql}, timeout=5)
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


async def burst(url: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/models/iris:predict", json=ROW) for _ in range(count))
        )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:3]


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed (install: scripts/install-test-tools)",
)
@pytest.mark.e2e  # a real Prometheus server scraping serving up
def test_prometheus_scrapes_serving_up_request_counts_and_batch_sizes(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state) as server:
        # One replica, pinned: 120 requests at once can make the autoscaler add a second, and the counts of a
        # replica leave /metrics with it (a CI run saw 119: the second served one request, then scaled away).
        pinned = isvc_yaml("iris", model, replicas=1, extra=BATCHER + "    maxReplicas: 1\n")
        apply_text(server, state, pinned, tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        asyncio.run(burst(server.url, 120))
        promtool_check(httpx.get(server.url + "/metrics", timeout=10).text)
        with prometheus(server.url.removeprefix("http://"), tmp_path) as prom:
            ok = 'sum(serving_requests_total{isvc="iris",code="200"})'
            try:
                wait_until(lambda: query(prom, ok) >= 120, 60, interval_s=0.5, what="request counts")
            except TimeoutError as e:
                raise AssertionError(
                    f"{e}: Prometheus has {query(prom, ok)}; {scrape_health(prom)}; "
                    f"/metrics now: {httpx.get(server.url + '/metrics', timeout=10).text[-2000:]}"
                ) from e
            assert query(prom, 'sum(serving_batch_size_count{isvc="iris"})') > 0
            assert (
                query(prom, 'sum(serving_batch_size_sum{isvc="iris"})') >= 120
            )  # every row went through a batch
            assert (
                query(prom, 'sum(serving_router_requests_total{isvc="iris",arm="stable",code="200"})') >= 120
            )
            assert query(prom, 'sum(serving_model_ready{isvc="iris"})') >= 1


def test_promtool_accepts_a_batching_model_server(tmp_path: Path) -> None:
    train_iris_sklearn(tmp_path / "iris")
    with serving_inprocess(
        ["serve", "--model-dir", str(tmp_path / "iris"), "--max-batch-size", "8"]
    ) as server:
        asyncio.run(burst(server.url, 30))
        with server.client() as client:
            client.post("/v1/models/nope:predict", json=ROW)
            text = client.get("/metrics").text
    assert "serving_batch_size_bucket" in text and "request_predict_seconds_bucket" in text
    promtool_check(text)
