"""Benchmark item `soak` (issue 16, target 5): does one predictor's memory stay flat under steady load?

`serving serve` with the iris model gets single-row V2 JSON requests at a fixed rate (1,000 req/s) for
`--soak-minutes`, after a warm-up at the same rate. The load is open-loop: request k is sent at
start + k/rate whatever the answers are doing (a closed loop would slow down with the server and hide a
stall), and its latency counts from that scheduled moment, so a stall shows in p99 instead of vanishing.
The client is the project's own keep-alive HTTP client on uvloop (~50 µs of CPU per request, well under
wrk's core on 2 CPUs); wrk cannot pace (Debian ships wrk, not wrk2).

The server's RSS (and CPU time) is sampled every 5 s. Growth is the least-squares slope in MB/minute over
the second half of the samples: the first half still holds allocator and cache warm-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from loadtests import payloads, servers, wrk
from loadtests.bench_table import Row
from loadtests.models import model_dir
from serving.http_client import HTTPClient

if TYPE_CHECKING:
    from loadtests.bench import Bench

ISVC = "sklearn-iris"
V2_PATH = f"/v2/models/{ISVC}/infer"
RATE = 1000.0
MINUTES = 10.0  # `--soak-minutes` (bench.py sets it: 10 by default, 1 with --quick)
SAMPLE_EVERY_S = 5.0
SLOPE_TARGET_MB_PER_MIN = 0.1  # 1 MB over 10 minutes: a leak of ~2 bytes per request at 1,000 req/s
MAX_CONNECTIONS = 64
TICK_S = 0.001
Probe = tuple[float, float, float, int]  # seconds since the start, RSS MB, CPU seconds, answered


@dataclass
class SoakReport:
    """What one soak measured; `samples` are (seconds since the start, RSS MB, server CPU seconds)."""

    target_rps: float
    duration_s: float
    requests: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_us: float  # server CPU per request over the measurement
    rss_start_mb: float
    rss_end_mb: float
    slope_mb_per_min: float
    lowest_window_rps: float  # the slowest SAMPLE_EVERY_S window: did the rate hold throughout?
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    first_error: str = ""


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope (MB/minute) of (seconds, MB) samples taken in the second half of the time span."""
    if len(samples) < 2:
        return 0.0
    t = np.array([s[0] for s in samples], dtype=float)
    mb = np.array([s[1] for s in samples], dtype=float)
    half = t >= t[0] + (t[-1] - t[0]) / 2
    if half.sum() < 2:
        half[-2:] = True
    slope_per_s = np.polyfit(t[half], mb[half], 1)[0]
    return float(slope_per_s * 60.0)


class PacedLoad:
    """Open-loop POSTs of one body at a fixed rate; latencies from each request's scheduled send time."""

    def __init__(self, url: str, path: str, body: bytes, rate: float) -> None:
        self.endpoint, self.path, self.body, self.rate = url, path, body, rate
        self.headers = [(b"content-type", b"application/json")]
        self.client = HTTPClient(max_per_endpoint=MAX_CONNECTIONS)
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    async def _one(self, scheduled: float) -> None:
        try:
            response = await self.client.request(
                self.endpoint, "POST", self.path, self.headers, self.body, timeout_s=10.0
            )
            ok, why = response.status == 200, f"HTTP {response.status}: {response.body[:200]!r}"
        except (ConnectionError, TimeoutError) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.latencies.append(time.perf_counter() - scheduled)
        else:
            self.errors += 1
            self.first_error = self.first_error or why

    async def drive(self, seconds: float) -> None:
        """Send round(seconds * rate) requests on schedule, then wait for the last answers. perf_counter, not
        loop.time(): uvloop's clock ticks in whole milliseconds. Ticks of >= 1 ms send whatever fell due,
        so the pacer never spins on sub-millisecond sleeps."""
        loop = asyncio.get_running_loop()
        start, total, sent = time.perf_counter(), round(seconds * self.rate), 0
        pending: set[asyncio.Task[None]] = set()
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * self.rate) + 1)
            for k in range(sent, due):
                task = loop.create_task(self._one(start + k / self.rate))
                pending.add(task)
                task.add_done_callback(pending.discard)
            sent = due
            await asyncio.sleep(max(TICK_S, start + sent / self.rate - time.perf_counter()))
        await asyncio.gather(*pending)

    @property
    def answered(self) -> int:
        return len(self.latencies) + self.errors


def _probe(process: psutil.Process) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of the server and any children it started."""
    procs = [process, *process.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    return rss, sum(sum(p.cpu_times()[:2]) for p in procs)


async def _sample(process: psutil.Process, load: PacedLoad, every_s: float, until: float) -> list[Probe]:
    """(t, RSS MB, CPU s, answered so far) every `every_s` on the loop's clock until `until`."""
    loop = asyncio.get_running_loop()
    start, rows = loop.time(), list[Probe]()
    while True:
        now = loop.time()
        rows.append((now - start, *_probe(process), load.answered))
        if now >= until - 1e-3:
            return rows
        await asyncio.sleep(min(start + len(rows) * every_s, until) - loop.time())


async def soak(
    url: str,
    pid: int,
    seconds: float,
    rate: float = RATE,
    warmup_s: float = 15.0,
    every_s: float = SAMPLE_EVERY_S,
) -> SoakReport:
    """Warm up at `rate`, then hold it for `seconds` while sampling the server's RSS every `every_s`."""
    process = psutil.Process(pid)
    load = PacedLoad(url, V2_PATH, payloads.v2_json_body("iris"), rate)
    try:
        if warmup_s > 0:
            await load.drive(warmup_s)
        load.latencies, load.errors, load.first_error = [], 0, ""
        loop = asyncio.get_running_loop()
        started = loop.time()
        sampler = loop.create_task(_sample(process, load, every_s, started + seconds))
        await load.drive(seconds)
        rows = await sampler
        elapsed = loop.time() - started
    finally:
        await load.client.aclose()
    return _report(load, rows, rate, elapsed)


def _report(load: PacedLoad, rows: list[Probe], rate: float, elapsed: float) -> SoakReport:
    lat_ms = np.array(load.latencies or [0.0]) * 1000
    windows = [(b[3] - a[3]) / (b[0] - a[0]) for a, b in zip(rows, rows[1:], strict=False) if b[0] > a[0]]
    return SoakReport(
        target_rps=rate,
        duration_s=elapsed,
        requests=load.answered,
        errors=load.errors,
        achieved_rps=len(load.latencies) / elapsed,
        p50_ms=float(np.percentile(lat_ms, 50)),
        p99_ms=float(np.percentile(lat_ms, 99)),
        mean_ms=float(lat_ms.mean()),
        cpu_us=1e6 * (rows[-1][2] - rows[0][2]) / max(1, load.answered),
        rss_start_mb=rows[0][1],
        rss_end_mb=rows[-1][1],
        slope_mb_per_min=slope_mb_per_min([(r[0], r[1]) for r in rows]),
        lowest_window_rps=min(windows, default=0.0),
        samples=[(round(r[0], 2), round(r[1], 3), round(r[2], 3)) for r in rows],
        first_error=load.first_error,
    )


@contextmanager
def load_cpus() -> Iterator[None]:
    """With `--pin`, this process (the load) runs on wrk's CPUs for the duration, away from the server."""
    if not wrk.CPUS:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in wrk.CPUS.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_loop(coro: Coroutine[Any, Any, SoakReport]) -> SoakReport:
    """Run on uvloop (what the servers use) when installed: the client's own cost stays small."""
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


def to_row(report: SoakReport, minutes: float, warmup_s: float) -> Row:
    met = (
        report.slope_mb_per_min <= SLOPE_TARGET_MB_PER_MIN
        and report.errors == 0
        and report.achieved_rps >= 0.95 * report.target_rps
    )
    return Row(
        item="soak",
        config=f"serve iris V2 JSON, open loop {report.target_rps:g} req/s, {minutes:g} min",
        conns=0,
        rps=report.achieved_rps,
        p50_ms=report.p50_ms,
        p99_ms=report.p99_ms,
        mean_ms=report.mean_ms,
        cpu_us=report.cpu_us,
        errors=report.errors,
        value=report.slope_mb_per_min,
        unit="MB/min",
        target=f"≤ {SLOPE_TARGET_MB_PER_MIN:g} MB/min, 0 errors, ≥ 95 % of the rate",
        met=met,
        load1=os.getloadavg()[0],
        note=(
            f"RSS {report.rss_start_mb:.1f} → {report.rss_end_mb:.1f} MB (start after {warmup_s:g} s warm-up); "
            f"slope: least squares over the second half, samples every {SAMPLE_EVERY_S:g} s; "
            f"slowest {SAMPLE_EVERY_S:g}-s window {report.lowest_window_rps:.0f} req/s"
        ),
    )


def run(bench: Bench) -> None:
    """The bench item: one `serving serve` of iris, soaked; one row, and the samples in bench-logs/."""
    minutes = MINUTES
    warmup_s = 15.0 if minutes >= 2 else 5.0
    with servers.serving_serve(model_dir(ISVC), bench.logs / "soak.log") as target, load_cpus():
        report = run_loop(soak(target.url, target.process.pid, minutes * 60, RATE, warmup_s))
    row = to_row(report, minutes, warmup_s)
    bench.rows.append(row)
    (bench.logs / "soak-samples.json").write_text(json.dumps(asdict(report), indent=1))
    print(
        f"  {row.config}: {report.achieved_rps:.1f} req/s (slowest window {report.lowest_window_rps:.0f}), "
        f"errors {report.errors}{' (' + report.first_error + ')' if report.first_error else ''}, "
        f"p50 {report.p50_ms:.2f} ms p99 {report.p99_ms:.2f} ms, server CPU {report.cpu_us:.0f} us/req; "
        f"RSS {report.rss_start_mb:.1f} -> {report.rss_end_mb:.1f} MB, slope {report.slope_mb_per_min:+.3f} MB/min",
        file=sys.stderr,
        flush=True,
    )
