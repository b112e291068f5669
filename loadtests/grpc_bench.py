"""Benchmark item `grpc`: the gRPC transport against REST on one server, with one asyncio client design.

wrk cannot speak gRPC (and ghz is not available), so both protocols are driven by the same closed loop
here: N workers, each with its own connection (an aiohttp session limited to one keep-alive connection,
or a grpc.aio channel with its own subchannel), each sending its next request when the last answered.
The client is Python in both cases, so absolute rates are client-bound on a small machine; the ratio
between the two columns is the point.

    iris single row, 16 connections: gRPC (raw FP64) vs V2 JSON           target: gRPC >= REST JSON
    1,000,000 FP32 ([250000, 4]) one at a time: raw_input_contents vs V2 binary   target: gRPC <= 1.5x binary
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import grpc
import numpy as np

from loadtests import payloads, servers
from loadtests.bench_table import Row
from loadtests.models import model_dir
from serving.grpc import messages as pb

if TYPE_CHECKING:
    from loadtests.bench import Bench

ISVC = "sklearn-iris"
INFER = f"/{pb.SERVICE}/ModelInfer"
CONNS = 16
BIG_ROWS = 1_000_000 // 4
Call = Callable[[], Awaitable[bool]]  # one request; True when the answer was a success


def grpc_infer_body(kind: str, count: int, input_name: str = "input-0") -> bytes:
    data = payloads.rows(kind, count)
    request = pb.ModelInferRequest(model_name=ISVC)
    request.inputs.add(name=input_name, datatype=payloads.KINDS[kind][1], shape=data.shape)
    request.raw_input_contents.append(
        np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()
    )
    return request.SerializeToString()


async def closed_loop(calls: list[Call], duration_s: float) -> tuple[list[float], int]:
    """Every worker loops over its own call until the deadline; latencies of successes, and the error count."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def worker(call: Call) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if await call():
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    await asyncio.gather(*(worker(call) for call in calls))
    return latencies, errors


def rest_calls(
    sessions: list[aiohttp.ClientSession], url: str, body: bytes, headers: dict[str, str]
) -> list[Call]:
    def one(session: aiohttp.ClientSession) -> Call:
        async def call() -> bool:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status == 200

        return call

    return [one(s) for s in sessions]


def grpc_calls(channels: list[grpc.aio.Channel], body: bytes) -> list[Call]:
    def one(channel: grpc.aio.Channel) -> Call:
        infer = channel.unary_unary(INFER)

        async def call() -> bool:
            try:
                await infer(body, timeout=60)
                return True
            except grpc.aio.AioRpcError:
                return False

        return call

    return [one(c) for c in channels]


async def measure_pair(
    http_url: str,
    grpc_target: str,
    conns: int,
    duration_s: float,
    rest: tuple[bytes, dict[str, str]],
    grpc_body: bytes,
    cpu: Callable[[], float],
) -> dict[str, dict[str, float]]:
    """REST then gRPC, same worker count and duration; per protocol: rps, p50/p99/mean ms, server CPU µs/request."""
    path = f"{http_url}/v2/models/{ISVC}/infer"
    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
    ]
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(conns)]
    channels = [grpc.aio.insecure_channel(grpc_target, options=options) for _ in range(conns)]
    results: dict[str, dict[str, float]] = {}
    try:
        for name, calls in (
            ("rest", rest_calls(sessions, path, *rest)),
            ("grpc", grpc_calls(channels, grpc_body)),
        ):
            await closed_loop(calls, min(1.0, duration_s))  # warm: connections, caches, allocator
            before = cpu()
            latencies, errors = await closed_loop(calls, duration_s)
            results[name] = summarize(latencies, errors, duration_s, cpu() - before)
    finally:
        for session in sessions:
            await session.close()
        for channel in channels:
            await channel.close()
    return results


def summarize(latencies: list[float], errors: int, duration_s: float, cpu_s: float) -> dict[str, float]:
    ordered = sorted(latencies) or [float("nan")]
    return {
        "rps": len(latencies) / duration_s,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean_ms": 1000 * statistics.fmean(ordered),
        "errors": errors,
        "cpu_us": 1e6 * cpu_s / max(1, len(latencies)),
    }


def run(bench: Bench) -> None:
    from loadtests.bench import cpu_seconds

    port = servers.free_port()
    with servers.serving_serve(model_dir(ISVC), bench.logs / "grpc.log", "--grpc-port", str(port)) as target:

        def cpu() -> float:
            return cpu_seconds(target.process.pid)

        json_rest = (payloads.v2_json_body("iris"), {"Content-Type": "application/json"})
        small = asyncio.run(
            measure_pair(
                target.url,
                f"127.0.0.1:{port}",
                CONNS,
                bench.duration_s,
                json_rest,
                grpc_infer_body("iris", 1),
                cpu,
            )
        )
        binary = payloads.v2_binary_body("iris-fp32", BIG_ROWS, binary_output=True)
        big = asyncio.run(
            measure_pair(
                target.url,
                f"127.0.0.1:{port}",
                1,
                bench.duration_s,
                (binary.body, binary.headers()),
                grpc_infer_body("iris-fp32", BIG_ROWS),
                cpu,
            )
        )
    add_rows(bench, small, "iris", CONNS, "V2 JSON", "≥ 1.0× REST JSON (req/s)")
    add_rows(bench, big, "1M FP32", 1, "V2 binary", "≤ 1.5× binary (mean latency)")


def add_rows(
    bench: Bench, results: dict[str, dict[str, float]], what: str, conns: int, rest_name: str, target: str
) -> None:
    rest, grpc_ = results["rest"], results["grpc"]
    by_latency = what != "iris"
    ratio = grpc_["mean_ms"] / rest["mean_ms"] if by_latency else grpc_["rps"] / rest["rps"]
    met = ratio <= 1.5 if by_latency else ratio >= 1.0
    for config, numbers, extra in (
        (f"{what} {rest_name} (asyncio client)", rest, {}),
        (
            f"{what} gRPC (asyncio client)",
            grpc_,
            {
                "ratio": ratio,
                "basis": "× REST mean latency" if by_latency else "× REST",
                "target": target,
                "met": met,
            },
        ),
    ):
        row = Row(
            item="grpc",
            config=config,
            conns=conns,
            rps=numbers["rps"],
            p50_ms=numbers["p50_ms"],
            p99_ms=numbers["p99_ms"],
            mean_ms=numbers["mean_ms"],
            cpu_us=numbers["cpu_us"],
            errors=int(numbers["errors"]),
            **extra,
        )  # type: ignore[arg-type]
        bench.rows.append(row)
        print(
            f"  {config:<40} c={conns:<3} {row.rps:9.1f} req/s  p50 {row.p50_ms:7.2f} ms  p99 {row.p99_ms:8.2f} ms"
            f"  server CPU {row.cpu_us:7.0f} us/req  errors {row.errors}",
            file=sys.stderr,
            flush=True,
        )
