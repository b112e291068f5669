"""Batching benchmark, one command: a 200-tree RandomForest on 32 features, served with the batcher off and
on, 64 concurrent single-row V2 JSON clients (wrk), throughput and p50/p99 both ways and the ratio.

    python -m loadtests.batching_bench [--duration 15] [--connections 64] [--max-batch-size 64]
                                       [--max-latency-ms 10] [--in-flight 1] [--json OUT]

Why batching pays here: scikit-learn's forest predict costs about the same for 1 row as for 64 (a Python
loop over 200 trees, each call with fixed overhead), so one call per batch amortises it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtests import payloads, servers, wrk
from loadtests.bench import cpu_seconds
from loadtests.models import RF_NAME, model_dir

PATH = f"/v2/models/{RF_NAME}/infer"


def check_answer(url: str, body: bytes) -> None:
    r = httpx.post(url + PATH, content=body, headers={"content-type": "application/json"}, timeout=30)
    if r.status_code != 200 or r.json()["outputs"][0]["shape"] != [1]:
        raise RuntimeError(f"unexpected answer {r.status_code}: {r.text[:300]}")


def batch_sizes(url: str) -> tuple[float, float]:
    """(batches, rows) from the server's serving_batch_size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    found = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name in ("serving_batch_size_count", "serving_batch_size_sum")
    }
    return found.get("serving_batch_size_count", 0.0), found.get("serving_batch_size_sum", 0.0)


def measure(label: str, extra: list[str], args: argparse.Namespace, workdir: Path) -> dict:
    request = wrk.Request("rf-v2", PATH, payloads.v2_json_body("rf32"))
    log = workdir / f"rf-{label}.log"
    with servers.serving_serve(model_dir(RF_NAME), log, *extra) as target:
        check_answer(target.url, request.body)
        wrk.run(
            target.url, request, workdir, args.connections, 2
        )  # warm-up: threads, caches, branch predictors
        before, cpu_before = batch_sizes(target.url), cpu_seconds(target.process.pid)
        result = wrk.run(target.url, request, workdir, args.connections, args.duration, threads=2)
        after, cpu_after = batch_sizes(target.url), cpu_seconds(target.process.pid)
    batches, rows = after[0] - before[0], after[1] - before[1]
    result["cpu_us"] = 1e6 * (cpu_after - cpu_before) / max(1, result["requests"])
    result["mean_batch_rows"] = rows / batches if batches else 1.0
    result["label"] = label
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds of load per configuration")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-latency-ms", type=float, default=10.0)
    p.add_argument("--in-flight", type=int, default=1, help="--max-batches-in-flight for the batching server")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if not wrk.available():
        print("wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 2
    model_dir(RF_NAME)  # train once, outside the measurement
    load = os.getloadavg()[0]
    on = [
        "--max-batch-size",
        str(args.max_batch_size),
        "--max-latency-ms",
        str(args.max_latency_ms),
        "--max-batches-in-flight",
        str(args.in_flight),
    ]
    with tempfile.TemporaryDirectory(prefix="batching-bench-") as tmp:
        off_result = measure("off", ["--max-queue-wait", "60"], args, Path(tmp))  # queue, don't shed
        on_result = measure("on", on, args, Path(tmp))
    ratio = on_result["rps"] / off_result["rps"] if off_result["rps"] else float("inf")
    print(
        f"RandomForest 200 trees x 32 features, {args.connections} connections, single-row V2 JSON, "
        f"{args.duration:g}s each (load average before: {load:.2f} on {os.cpu_count()} cores)"
    )
    print(
        f"{'batching':<36}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'rows/batch':>12}{'CPU us/req':>12}{'errors':>8}"
    )
    for r, name in (
        (off_result, "off"),
        (on_result, f"on (max {args.max_batch_size}, {args.max_latency_ms:g} ms)"),
    ):
        print(
            f"{name:<36}{r['rps']:>10.0f}{r['p50_us'] / 1000:>10.1f}{r['p99_us'] / 1000:>10.1f}"
            f"{r['mean_batch_rows']:>12.1f}{r['cpu_us']:>12.0f}{r['errors']:>8}"
        )
    print(
        f"throughput ratio on/off: {ratio:.1f}x (target >= 20x); server CPU per request off/on: "
        f"{off_result['cpu_us'] / max(1.0, on_result['cpu_us']):.1f}x"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "off": off_result,
                    "on": on_result,
                    "ratio": ratio,
                    "load_average": load,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "args": vars(args) | {"json": None},
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
