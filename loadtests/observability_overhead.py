"""What observability costs the inference path: `serving serve` (iris, one worker) under the same closed-loop
load, with each observability feature on in turn. Prints p50/p99 latency, throughput and the logger counters.

    python -m loadtests.observability_overhead [--requests 3000] [--concurrency 8]

The payload-logger rows answer "does a slow or dead sink delay inferences?": `slow sink` is a CloudEvents
receiver that sleeps 5 s per event (so the queue fills and events are dropped, counted), `dead sink` a closed
port. Numbers are for this machine at the time of the run; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from loadtests.event_receiver import receiving
from loadtests.servers import free_port, serving_serve
from serving.http_client import HTTPClient

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
HEADERS = [(b"content-type", b"application/json")]


async def load(url: str, requests: int, concurrency: int) -> tuple[np.ndarray, float]:
    """Latencies (s) of `requests` predictions from `concurrency` closed-loop clients, and the wall time."""
    client = HTTPClient()
    latencies: list[float] = []
    remaining = requests

    async def user() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.request(url, "POST", "/v1/models/iris:predict", HEADERS, BODY, 30.0)
            latencies.append(time.perf_counter() - started)
            assert response.status == 200, response.body

    for _ in range(3):  # warm-up: connections, first calls
        await client.request(url, "POST", "/v1/models/iris:predict", HEADERS, BODY, 30.0)
    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    await client.aclose()
    return np.array(latencies), wall


def logger_counts(url: str) -> str:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    found = dict(re.findall(r'serving_logger_events_total\{outcome="(\w+)"\} ([0-9.e+]+)', text))
    return " ".join(f"{k}={float(v):.0f}" for k, v in sorted(found.items())) or "-"


def measure(model_dir: Path, log_dir: Path, name: str, flags: list[str], args: argparse.Namespace) -> tuple:
    with serving_serve(
        model_dir, log_dir / f"{name.replace(' ', '-')}.log", "--log-format", "json", *flags
    ) as target:
        latencies, wall = asyncio.run(load(target.url, args.requests, args.concurrency))
        counts = logger_counts(target.url)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return name, p50, p99, len(latencies) / wall, counts


def modes(slow: str, dead: str, collector: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, serve flags, environment) of each measured configuration."""
    quiet = ["--access-log-sample", "0"]
    return [
        ("baseline (2xx access log off)", quiet, {}),
        ("access log every request", [], {}),
        ("logger -> slow sink (5 s/event)", ["--logger-url", slow], {}),
        ("logger -> dead sink", ["--logger-url", dead], {}),
        (
            "tracing on (OTLP to a live collector)",
            ["--otel", *quiet],
            {"OTEL_EXPORTER_OTLP_ENDPOINT": collector},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="each mode this many times, interleaved")
    parser.add_argument("--only", default="", help="comma-separated words; run the modes whose name has one")
    args = parser.parse_args(argv)
    from serving.demo_models import train_sklearn_iris

    work = Path(tempfile.mkdtemp(prefix="obs-overhead-"))
    model_dir = work / "iris"
    train_sklearn_iris(model_dir)
    dead = f"http://127.0.0.1:{free_port()}/"
    rows = []
    with receiving(delay_s=5.0) as (slow, _), receiving() as (collector, _):
        for round_ in range(args.rounds):
            for name, flags, env in modes(slow, dead, collector.rstrip("/")):
                if args.only and not any(word in name for word in args.only.split(",")):
                    continue
                with _environment(env):
                    rows.append(measure(model_dir, work, f"{name} #{round_ + 1}", flags, args))
    print(f"{'mode':44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}  logger events")
    for name, p50, p99, rps, counts in sorted(rows, key=lambda r: r[0]):
        print(f"{name:44} {p50:8.2f} {p99:8.2f} {rps:8.0f}  {counts}")
    print(f"({args.requests} requests per row, {args.concurrency} concurrent clients, logs in {work})")
    by_mode: dict[str, list[float]] = {}
    for name, _, p99, _, _ in rows:
        by_mode.setdefault(name.rsplit(" #", 1)[0], []).append(p99)
    for name, values in by_mode.items():
        print(f"median p99 {name:40} {float(np.median(values)):7.2f} ms over {len(values)} rounds")
    return 0


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    sys.exit(main())
