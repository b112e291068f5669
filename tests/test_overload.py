"""Overload: at 4x the sustainable rate the model server sheds quickly with 503 + Retry-After, accepted
requests keep a bounded latency, memory stays bounded, and everything is served again once load drops."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest

from serving.http_client import HTTPClient
from tests.runtimes_overload import SERVICE_S
from tests.support import serving_process

BODY = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}'
THREADS = max(4, (os.cpu_count() or 1) * 2)  # the data plane's model threads
SUSTAINABLE = THREADS / SERVICE_S  # requests/s
MAX_WAIT_S = 0.5


async def _open_loop(url: str, rate: float, seconds: float) -> list[tuple[int, float, str | None]]:
    """Fire requests at a fixed rate regardless of answers (open loop), and collect every answer.

    Our pooled client, not httpx: the generator must not be the bottleneck on two cores shared with the server."""
    client = HTTPClient(max_per_endpoint=2000)
    try:

        async def one() -> tuple[int, float, str | None]:
            started = time.monotonic()
            r = await client.request(
                url,
                "POST",
                "/v2/models/slow/infer",
                [(b"content-type", b"application/json")],
                BODY,
                timeout_s=60,
            )
            retry = next((v.decode() for k, v in r.headers if k == b"retry-after"), None)
            return r.status, time.monotonic() - started, retry

        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the generator, not synchronising with the server
            tasks.append(asyncio.create_task(one()))
        return await asyncio.gather(*tasks)
    finally:
        client.close()


@pytest.mark.e2e  # open-loop load against a server process; its RSS
def test_sheds_load_at_four_times_the_sustainable_rate(tmp_path: Path) -> None:
    model = tmp_path / "slow"
    model.mkdir()
    args = [
        "serve",
        "--model-dir",
        str(model),
        "--runtime",
        "tests.runtimes_overload:FixedServiceTime",
        "--max-queue-wait",
        str(MAX_WAIT_S),
    ]
    with serving_process(args) as server:
        rss_before = psutil.Process(server.process.pid).memory_info().rss
        answers = asyncio.run(_open_loop(server.url, 4 * SUSTAINABLE, 4.0))
        rss_after = psutil.Process(server.process.pid).memory_info().rss

        codes = {code for code, _, _ in answers}
        assert codes <= {200, 503}, codes
        ok = sorted(t for code, t, _ in answers if code == 200)
        shed = [(t, retry) for code, t, retry in answers if code == 503]
        assert shed, "nothing was shed at 4x the sustainable rate"
        shed_p99 = sorted(t for t, _ in shed)[int(len(shed) * 0.99) - 1]
        assert shed_p99 < 0.5, f"shedding must be quick, p99 {shed_p99:.2f}s"
        assert all(retry and int(retry) >= 1 for _, retry in shed), "every 503 says when to retry"
        assert len(ok) >= SUSTAINABLE * 4.0 * 0.5, f"the model kept serving near its capacity: {len(ok)}"
        p99_ok = ok[int(len(ok) * 0.99) - 1]
        assert p99_ok < MAX_WAIT_S + 1.0, f"accepted requests waited too long: p99 {p99_ok:.2f}s"
        assert rss_after - rss_before < 100 * 1024 * 1024, "memory grew with the backlog"

        with server.client() as client:  # recovery: load gone, everything is served promptly again
            for _ in range(10):
                started = time.monotonic()
                assert client.post("/v2/models/slow/infer", content=BODY).status_code == 200
                assert time.monotonic() - started < 1.0


@pytest.mark.e2e  # thread pools are per process: each flag needs a fresh one
def test_native_thread_pools_are_sized_for_serving(tmp_path: Path) -> None:
    model = tmp_path / "threads"
    model.mkdir()
    body = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
    for flag, expected in (("1", [1]), ("0", None)):
        args = [
            "serve",
            "--model-dir",
            str(model),
            "--runtime",
            "tests.runtimes_overload:NativeThreads",
            "--native-threads",
            flag,
        ]
        with serving_process(args) as server, server.client() as client:
            threads = client.post("/v2/models/threads/infer", content=body).json()["outputs"][0]["data"]
        if expected is not None:
            assert threads == expected
        else:
            assert threads != [1] or (os.cpu_count() or 1) == 1, "0 keeps the library's own default"
