"""The benchmark: every configuration alone, same machine, one sitting, one table of ratios.

    python -m loadtests.bench [--quick] [--pin] [--only ceiling,direct,router,batching,binary,transformer,grpc,autoscale,coldstart,memory,soak]

Load comes from wrk (one thread, so it leaves the server a core; `--pin` puts the server and everything it
starts on CPU 0 and wrk on CPU 1 with taskset); each server is started, warmed up,
measured and stopped before the next. Results go to loadtests/results/bench-TIME.json and a dated
table is appended to BENCHMARKS.md. Absolute numbers depend on the machine; the ratios are the point.
Every row carries the server's CPU µs per request and the 1-minute load average when it was measured: on a
shared machine throughput moves with other load, CPU per request much less.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtests import payloads, servers, wrk
from loadtests.bench_table import ITEMS, Row, annotate, format_markdown, format_text
from loadtests.models import RF_NAME, model_dir
from serving import sched

CONNECTIONS = (1, 16, 64)
ISVC = "sklearn-iris"
V1_PATH, V2_PATH = f"/v1/models/{ISVC}:predict", f"/v2/models/{ISVC}/infer"
BENCHMARKS_MD = servers.REPO / "BENCHMARKS.md"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server and its children (the router's model servers): a per-request cost
    that other load on a shared machine disturbs far less than throughput."""
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(sum(p.cpu_times()[:2]) for p in (root, *root.children(recursive=True)))
    except psutil.Error:
        return 0.0


def model_seconds(url: str) -> tuple[float, float]:
    """(sum, count) of serving_inference_duration_seconds on a model server's /metrics: its model calls alone."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "serving_inference_duration_seconds_sum":
                total += sample.value
            elif sample.name == "serving_inference_duration_seconds_count":
                count += sample.value
    return total, count


@contextlib.contextmanager
def _children_scheduled(policy: str) -> Iterator[None]:
    """Processes started inside get `policy` (they inherit this thread's); the thread's own is restored after."""
    before = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    sched.apply(policy)
    try:
        yield
    finally:
        if before is not None:
            os.sched_setscheduler(0, before, os.sched_param(0))


# Every server of ours the bench starts, as `serving up --log-level warning` (servers.serving_up) runs its
# replicas: no access lines, like the ceiling app and the featureless router, so direct and routed compare alike.
QUIET = ("--log-level", "warning")


class Bench:
    def __init__(self, workdir: Path, duration_s: float, logs: Path) -> None:
        self.workdir, self.duration_s, self.logs = workdir, duration_s, logs
        self.rows: list[Row] = []

    def measure(
        self, target: servers.Target, request: wrk.Request, conns: int, item: str, config: str, note: str = ""
    ) -> Row:
        cpu_before = cpu_seconds(target.process.pid)
        result = wrk.run(target.url, request, self.workdir, conns, self.duration_s)
        cpu_us = 1e6 * (cpu_seconds(target.process.pid) - cpu_before) / max(1, result["requests"])
        row = Row(
            item=item,
            config=config,
            conns=conns,
            rps=result["rps"],
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
            mean_ms=result["mean_us"] / 1000,
            cpu_us=cpu_us,
            errors=result["errors"],
            note=note,
            load1=os.getloadavg()[0],
        )
        self.rows.append(row)
        print(
            f"  {config:<34} c={conns:<3} {row.rps:9.1f} req/s  p50 {row.p50_ms:7.2f} ms  p99 {row.p99_ms:8.2f} ms"
            f"  server CPU {cpu_us:7.0f} us/req  errors {row.errors}  load {row.load1:.1f}",
            file=sys.stderr,
            flush=True,
        )
        return row

    def warm(self, url: str, request: wrk.Request) -> None:
        wrk.run(url, request, self.workdir, 4, 1)

    def iris_matrix(self, target: servers.Target, item: str, label: str) -> None:
        """V1 and V2 JSON single-row iris at 1, 16 and 64 connections."""
        v1 = wrk.Request("iris-v1", V1_PATH, payloads.v1_body("iris"))
        v2 = wrk.Request("iris-v2", V2_PATH, payloads.v2_json_body("iris"))
        self.warm(target.url, v2)
        for request, protocol in ((v1, "V1"), (v2, "V2 JSON")):
            for conns in CONNECTIONS:
                self.measure(target, request, conns, item, f"{label} {protocol}")

    def ceiling(self) -> None:
        with servers.ceiling_app(self.logs / "ceiling.log") as target:
            self.iris_matrix(target, "ceiling", "bare Starlette")

    def direct(self) -> None:
        with servers.serving_serve(model_dir(ISVC), self.logs / "direct.log", *QUIET) as target:
            self.iris_matrix(target, "direct", "server")

    def router(self) -> None:
        model_dir(ISVC)
        with (
            tempfile.TemporaryDirectory(prefix="bench-state-") as state,
            servers.serving_up(
                [servers.EXAMPLES / f"{ISVC}.yaml"], [ISVC], Path(state), self.logs / "router.log"
            ) as target,
        ):
            self.iris_matrix(target, "router", "router")
            if servers.SERVER_CPUS and wrk.CPUS:
                self.router_own_core(target)
        self.router_floor()

    def router_floor(self) -> None:
        """loadtests/raw_router.py (no features: the least a Python router process does) in front of one
        `serving serve`, both on the server's CPUs and under the CPU policy `serving up` gives its router and
        replicas (serving/sched.py): the bound for any Python router on this machine."""
        v1 = wrk.Request("iris-v1", V1_PATH, payloads.v1_body("iris"))
        with (
            _children_scheduled(sched.default_policy()),
            servers.serving_serve(model_dir(ISVC), self.logs / "floor-predictor.log", *QUIET) as predictor,
        ):
            self.warm(predictor.url, v1)
            self.measure(predictor, v1, 16, "router-floor", "direct V1 (this sitting)")
            argv = [sys.executable, "-m", "loadtests.raw_router", "--upstream", predictor.url]
            with servers.started(argv, "/v2/health/ready", self.logs / "floor-router.log") as router:
                self.warm(router.url, v1)
                self.measure(
                    router,
                    v1,
                    16,
                    "router-floor",
                    "featureless Python router V1",
                    f"router CPU only; CPU policy {sched.default_policy()}, as serving up's",
                )

    def router_own_core(self, target: servers.Target) -> None:
        """The same `serving up`, its router process moved to wrk's CPU, its predictors left on the server's:
        whether the router can keep one predictor busy (on 2 cores the router shares its core with wrk)."""
        import psutil

        router = psutil.Process(target.process.pid)
        predictors = router.children(recursive=True)
        router.cpu_affinity([int(c) for c in str(wrk.CPUS).split(",")])
        for child in predictors:
            child.cpu_affinity([int(c) for c in str(servers.SERVER_CPUS).split(",")])
        v1 = wrk.Request("iris-v1", V1_PATH, payloads.v1_body("iris"))
        v2 = wrk.Request("iris-v2", V2_PATH, payloads.v2_json_body("iris"))
        self.warm(target.url, v2)
        for request, protocol in ((v1, "V1"), (v2, "V2 JSON")):
            self.measure(target, request, 16, "router-own-core", f"router {protocol}")

    def batching(self) -> None:
        note = (
            "" if importlib.util.find_spec("serving.batching") else "batcher not landed: flag had no effect"
        )
        rf = wrk.Request("rf-v2", f"/v2/models/{RF_NAME}/infer", payloads.v2_json_body("rf32"))
        # Unbatched: queue rather than shed (--max-queue-wait), so both columns measure the model, not admission.
        for label, extra in (
            ("off", ("--max-queue-wait", "60")),
            ("on", ("--max-batch-size", "64", "--max-latency-ms", "5")),
        ):
            with servers.serving_serve(model_dir(RF_NAME), self.logs / f"rf-{label}.log", *extra) as target:
                self.warm(target.url, rf)
                self.measure(
                    target, rf, 64, "batching", f"RF-200 batching {label}", note if label == "on" else ""
                )
        iris = wrk.Request("iris-v2", V2_PATH, payloads.v2_json_body("iris"))
        with servers.serving_serve(
            model_dir(ISVC),
            self.logs / "iris-batch.log",
            "--max-batch-size",
            "64",
            "--max-latency-ms",
            "2",
            *QUIET,
        ) as target:
            self.warm(target.url, iris)
            self.measure(target, iris, 64, "batching", "server V2 JSON batching on", note)

    def binary(self) -> None:
        """1,000,000 FP32 elements ([250000, 4] iris rows) as JSON vs the binary extension, end to end."""
        count = 1_000_000 // 4
        as_json = wrk.Request("big-json", V2_PATH, payloads.v2_json_body("iris-fp32", count))
        body = payloads.v2_binary_body("iris-fp32", count, binary_output=True)
        as_binary = wrk.Request("big-binary", V2_PATH, body.body, tuple(body.headers().items()))
        with servers.serving_serve(model_dir(ISVC), self.logs / "big.log", *QUIET) as target:
            self.warm(target.url, as_binary)
            self.measure(
                target, as_json, 1, "binary", "1M FP32 V2 JSON", f"{len(as_json.body) / 1e6:.1f} MB body"
            )
            before = model_seconds(target.url)
            row = self.measure(
                target, as_binary, 1, "binary", "1M FP32 V2 binary", f"{len(body.body) / 1e6:.1f} MB body"
            )
            after = model_seconds(target.url)
        with servers.ceiling_app(self.logs / "big-ceiling.log") as target:  # the HTTP floor for those bytes
            self.warm(target.url, as_binary)
            self.measure(
                target,
                as_binary,
                1,
                "binary",
                "bare Starlette: the same binary request read, a fixed small reply",
                "the framework's cost of the bytes alone (no decode, no model, no 2 MB answer)",
            )
        calls = after[1] - before[1]
        if calls and row.mean_ms and row.p50_ms:
            model_ms = 1000 * (after[0] - before[0]) / calls
            # p50: on a shared machine a few stalls move the mean (the note keeps it)
            ratio, by_mean = row.p50_ms / model_ms, row.mean_ms / model_ms
            self.rows.append(
                Row(
                    item="binary",
                    config="1M FP32 V2 binary: end to end vs model call",
                    conns=1,
                    ratio=ratio,
                    basis=f"× the model call ({model_ms:.1f} ms mean), p50",
                    value=None,
                    target="≤ 1.5× the model call",
                    met=ratio <= 1.5,
                    load1=os.getloadavg()[0],
                    note=f"by mean latency {by_mean:.2f}×; model time from serving_inference_duration_seconds",
                )
            )
            print(
                f"  end to end p50 {row.p50_ms:.1f} ms = {ratio:.2f}x (mean: {by_mean:.2f}x) the model call "
                f"{model_ms:.1f} ms",
                file=sys.stderr,
                flush=True,
            )

    def transformer(self) -> None:
        """iris-transformer (records in, labels out) vs the sklearn-iris predictor alone, both via `serving up`."""
        model_dir(ISVC)
        alone = wrk.Request("iris-v1", V1_PATH, payloads.v1_body("iris"))
        paired = wrk.Request(
            "iris-records", "/v1/models/iris-transformer:predict", payloads.v1_records_body()
        )
        in_process = wrk.Request(
            "iris-records", "/v1/models/iris-transformer-in-process:predict", payloads.v1_records_body()
        )
        names = ["iris-transformer", "iris-transformer-in-process"]
        files = [servers.EXAMPLES / f"{ISVC}.yaml", *map(servers.example_yaml, names)]
        with (
            tempfile.TemporaryDirectory(prefix="bench-state-") as state,
            servers.serving_up(files, [ISVC, *names], Path(state), self.logs / "transformer.log") as target,
        ):
            self.warm(target.url, paired)
            self.warm(target.url, in_process)
            self.measure(target, alone, 16, "transformer", "predictor alone V1")
            self.measure(target, paired, 16, "transformer", "transformer + predictor V1")
            self.measure(target, in_process, 16, "transformer", "transformer in-process + predictor V1")

    def grpc(self) -> None:
        """gRPC vs REST on one server with one asyncio client design (wrk cannot speak gRPC): loadtests/grpc_bench.py."""
        from loadtests import grpc_bench

        grpc_bench.run(self)

    def autoscale(self) -> None:
        """Step load 1->16 users on a 5 ms model: autoscaled vs pinned at max, and the cold start from zero."""
        from loadtests import autoscale_bench

        autoscale_bench.run(self, step_s=max(2.0, self.duration_s / 2))

    def coldstart(self) -> None:
        """Spawn -> /v2/health/ready of `serving serve` iris, and `serving up -f` -> first 200 (medians of 3)."""
        from loadtests import startup_bench

        startup_bench.coldstart(self)

    def memory(self) -> None:
        """RSS of one idle predictor per runtime (sklearn, xgboost, onnx iris)."""
        from loadtests import startup_bench

        startup_bench.memory(self)

    def soak(self) -> None:
        """RSS of one iris predictor over a soak at a fixed 1,000 req/s (open loop): start, end, slope."""
        from loadtests import soak_bench

        soak_bench.run(self)


def pin(server_cpus: str, load_cpus: str) -> None:
    """Servers (and their children) on `server_cpus`, wrk on `load_cpus` (taskset CPU lists)."""
    servers.SERVER_CPUS, wrk.CPUS = server_cpus, load_cpus


def run(only: list[str], duration_s: float, quick: bool) -> dict:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(Path(tmp), duration_s, servers.RESULTS / "bench-logs")
        for item in ITEMS:
            if item in only:
                print(f"[{item}]", file=sys.stderr, flush=True)
                getattr(bench, item)()
    annotate(bench.rows)
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "pinned": {"server": servers.SERVER_CPUS, "load": wrk.CPUS} if servers.SERVER_CPUS else None,
        },
        "duration_s": duration_s,
        "quick": quick,
        "rows": [r.to_dict() for r in bench.rows],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per measurement instead of 10 s")
    parser.add_argument("--duration", type=float, help="seconds per measurement (overrides --quick)")
    parser.add_argument(
        "--only", default=",".join(ITEMS), help=f"comma-separated items or numbers 1-{len(ITEMS)} of {ITEMS}"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server (and its children) on CPU 0, wrk on CPU 1 (taskset; needs 2+ CPUs)",
    )
    parser.add_argument("--no-append", action="store_true", help="do not append the table to BENCHMARKS.md")
    parser.add_argument(
        "--soak-minutes", type=float, help="length of the soak item (default 10; 1 with --quick)"
    )
    parser.add_argument("--results", type=Path, default=servers.RESULTS, help="folder for the results JSON")
    args = parser.parse_args(argv)
    if not wrk.available():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    only = [ITEMS[int(x) - 1] if x.strip().isdigit() else x.strip() for x in args.only.split(",")]
    unknown = [x for x in only if x not in ITEMS]
    if unknown:
        parser.error(f"unknown items {unknown}; choose from {ITEMS}")
    if args.pin:
        if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
            parser.error("--pin needs taskset and at least 2 CPUs")
        pin("0", "1")
    duration_s = args.duration or (3.0 if args.quick else 10.0)
    from loadtests import soak_bench

    soak_bench.MINUTES = args.soak_minutes or (1.0 if args.quick else 10.0)
    result = run(only, duration_s, args.quick)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"bench-{result['date'].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(format_text(result))
    print(f"results: {path}")
    if not args.no_append:
        with BENCHMARKS_MD.open("a") as f:
            f.write(format_markdown(result))
        print(f"appended to {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
