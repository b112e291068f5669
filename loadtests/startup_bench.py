"""Cold start and idle memory (issue 16, targets 4 and 5): what a scale-from-zero and a replica cost.

Cold start: wall time from process spawn to the first answer that counts, polled every 5 ms (never slept
for): `serving serve` of iris to `/v2/health/ready` 200, and `serving up -f sklearn-iris.yaml` to the first
200 of an inference through the router. Memory: RSS of one idle `serving serve` process per runtime after
ready and a few requests. Medians of `runs` starts; each row says the load average when measured.

A linear scikit-learn model starts from its compiled form once its artifact has been loaded before
(runtimes/linear_cache.py): rows say which case they measure, each with a cache directory of its own —
"first start" empty every time, "restart" filled by one start that is not counted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from loadtests import payloads, servers
from loadtests.bench_table import Row
from loadtests.models import model_dir

POLL_S = 0.005
SERVE_READY_TARGET_S, UP_FIRST_200_TARGET_S, RSS_TARGET_MB = 0.8, 1.5, 90.0
RUNTIMES = ("sklearn-iris", "xgboost-iris", "onnx-iris")
ISVC = "sklearn-iris"


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results folder yet
    with log.open("wb") as out:
        return subprocess.Popen(
            servers.pinned(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=servers.REPO,
            env=env,
            start_new_session=True,
        )


def _seconds_until(
    answered: Callable[[], bool], process: subprocess.Popen, started: float, log: Path
) -> float:
    servers.wait_until(answered, 90, "first answer", process, log, interval_s=POLL_S)
    return time.monotonic() - started


def serve_to_ready(log: Path) -> float:
    """Spawn `serving serve` of iris; seconds until /v2/health/ready answers 200."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    started = time.monotonic()
    process = _spawn(
        [
            sys.executable,
            "-m",
            "serving.cli",
            "serve",
            "--model-dir",
            str(model_dir(ISVC)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log,
    )
    try:
        return _seconds_until(lambda: httpx.get(url, timeout=1).status_code == 200, process, started, log)
    finally:
        servers.stop_process(process)


def up_to_first_200(log: Path, *flags: str) -> float:
    """Spawn `serving up -f sklearn-iris.yaml` (fresh state); seconds until an inference through it answers 200.
    By default its replica is forked from the warm spawner; `--no-warm-start` execs it (the path before)."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}/v2/models/{ISVC}/infer"
    body = payloads.v2_json_body("iris")
    with tempfile.TemporaryDirectory(prefix="bench-state-") as state:
        started = time.monotonic()
        process = _spawn(
            [
                sys.executable,
                "-m",
                "serving.cli",
                "up",
                "-f",
                str(servers.EXAMPLES / f"{ISVC}.yaml"),
                "--state-dir",
                state,
                "--log-level",
                "warning",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *flags,
            ],
            log,
        )
        try:
            return _seconds_until(
                lambda: httpx.post(url, content=body, timeout=2).status_code == 200, process, started, log
            )
        finally:
            servers.stop_process(process)


def apply_to_first_200(log: Path) -> float:
    """A running `serving up` (router ready, warm spawner preloaded): seconds from `serving apply -f
    sklearn-iris.yaml` (the CLI process included) until an inference through the router answers 200."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    body = payloads.v2_json_body("iris")
    with tempfile.TemporaryDirectory(prefix="bench-state-") as state:
        up = _spawn(
            [sys.executable, "-m", "serving.cli", "up", "--state-dir", state, "--log-level", "warning"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            log,
        )
        try:
            servers.wait_until(
                lambda: httpx.get(url + "/v2/health/live", timeout=2).status_code == 200, 90, "up", up, log
            )
            time.sleep(3)  # not synchronisation: lets the spawner finish preloading, as a running server has
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "serving.cli", "apply", "-f", str(servers.EXAMPLES / f"{ISVC}.yaml")]
                + ["--server", url, "--state-dir", state],
                check=True,
                capture_output=True,
                cwd=servers.REPO,
            )
            infer = f"{url}/v2/models/{ISVC}/infer"
            return _seconds_until(
                lambda: httpx.post(infer, content=body, timeout=2).status_code == 200, up, started, log
            )
        finally:
            servers.stop_process(up)


def idle_rss_mb(name: str, log: Path) -> float:
    """RSS of one `serving serve` process holding example `name`, after ready and 20 requests."""
    import psutil

    with servers.serving_serve(model_dir(name), log) as target:
        body = payloads.v2_json_body(payloads.kind_for_model(name))
        with httpx.Client(base_url=target.url) as client:
            for _ in range(20):
                client.post(f"/v2/models/{name}/infer", content=body).raise_for_status()
        return float(psutil.Process(target.process.pid).memory_info().rss) / 2**20


def _row(item: str, config: str, values: list[float], unit: str, target: float, note: str) -> Row:
    value = statistics.median(values)
    return Row(
        item=item,
        config=config,
        conns=0,
        value=value,
        unit=unit,
        target=f"≤ {target:g} {unit}",
        met=value <= target,
        load1=os.getloadavg()[0],
        note=f"{note}; runs: {', '.join(format(v, '.2f') for v in values)}",
    )


@contextmanager
def compiled_cache(filled: bool) -> Iterator[None]:
    """`SERVING_CACHE_DIR` of this bench's own for the processes started inside: empty, or holding the
    compiled form of the iris model (one `serving serve` start, not counted)."""
    previous = os.environ.get("SERVING_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as directory:
        os.environ["SERVING_CACHE_DIR"] = directory
        try:
            if filled:
                serve_to_ready(Path(directory) / "fill.log")
            yield
        finally:
            if previous is None:
                os.environ.pop("SERVING_CACHE_DIR", None)
            else:
                os.environ["SERVING_CACHE_DIR"] = previous


def coldstart(bench: Any, runs: int = 3) -> None:
    logs = bench.logs
    first_start = []
    for _ in range(runs):
        with compiled_cache(filled=False):
            first_start.append(serve_to_ready(logs / "coldstart-serve-first.log"))
    with compiled_cache(filled=True):
        ready = [serve_to_ready(logs / "coldstart-serve.log") for _ in range(runs)]
        first, cold = [], []
        for _ in range(runs):  # interleaved: both see the same machine
            first.append(up_to_first_200(logs / "coldstart-up.log"))
            cold.append(up_to_first_200(logs / "coldstart-up-cold.log", "--no-warm-start"))
        applied = [apply_to_first_200(logs / "coldstart-apply.log") for _ in range(runs)]
    for row in (
        _row(
            "coldstart",
            "serve iris, restart, spawn -> /v2/health/ready",
            ready,
            "s",
            SERVE_READY_TARGET_S,
            f"median of {runs}; the artifact loaded before: served from its compiled form, no scikit-learn",
        ),
        _row(
            "coldstart",
            "serve iris, first start, spawn -> /v2/health/ready",
            first_start,
            "s",
            SERVE_READY_TARGET_S,
            f"median of {runs}; empty compiled cache: unpickled with scikit-learn (import floor ~1.05 s)",
        ),
        _row(
            "coldstart",
            "up -f sklearn-iris, spawn -> first 200",
            first,
            "s",
            UP_FIRST_200_TARGET_S,
            f"median of {runs}; replica forked from the warm spawner; compiled cache filled",
        ),
        _row(
            "coldstart",
            "up -f sklearn-iris --no-warm-start, -> first 200",
            cold,
            "s",
            UP_FIRST_200_TARGET_S,
            f"median of {runs}; for comparison: replica exec'd (the path before warm start)",
        ),
        _row(
            "coldstart",
            "apply -f sklearn-iris to a running up, -> first 200",
            applied,
            "s",
            UP_FIRST_200_TARGET_S,
            f"median of {runs}; the CLI process included; replica forked from the preloaded spawner",
        ),
    ):
        bench.rows.append(row)
        print(f"  {row.config:<52} {row.value:6.2f} s  (load {row.load1:.1f})", file=sys.stderr, flush=True)


def memory(bench: Any, runs: int = 1) -> None:
    cases = [(name, name == "sklearn-iris") for name in RUNTIMES] + [("sklearn-iris", False)]
    for name, filled in cases:
        with compiled_cache(filled):
            values = [idle_rss_mb(name, bench.logs / f"memory-{name}.log") for _ in range(runs)]
        case = "" if name != "sklearn-iris" else (", restart" if filled else ", first start")
        note = "one serve process, after 20 requests"
        if name == "sklearn-iris":
            note += "; from the compiled form" if filled else "; empty compiled cache: scikit-learn imported"
        row = _row("memory", f"idle RSS, {name}{case}", values, "MB", RSS_TARGET_MB, note)
        bench.rows.append(row)
        print(f"  {row.config:<52} {row.value:6.1f} MB  (load {row.load1:.1f})", file=sys.stderr, flush=True)
    rss, pss, uss = forked_replica_memory_mb(bench.logs / "memory-forked.log")
    row = _row(
        "memory",
        "idle replica under serving up (forked), sklearn-iris",
        [rss],
        "MB",
        RSS_TARGET_MB,
        f"RSS counts the pages it shares with the warm spawner: PSS {pss:.1f} MB, USS (its own) {uss:.1f} MB",
    )
    bench.rows.append(row)
    print(f"  {row.config:<52} {row.value:6.1f} MB  {row.note}", file=sys.stderr, flush=True)


def forked_replica_memory_mb(log: Path) -> tuple[float, float, float]:
    """(RSS, PSS, USS) of the one iris replica of a `serving up -f sklearn-iris.yaml`, after 20 requests."""
    import psutil

    with (
        tempfile.TemporaryDirectory(prefix="bench-state-") as state,
        servers.serving_up([servers.EXAMPLES / f"{ISVC}.yaml"], [ISVC], Path(state), log) as target,
    ):
        body = payloads.v2_json_body("iris")
        with httpx.Client(base_url=target.url) as client:
            for _ in range(20):
                client.post(f"/v2/models/{ISVC}/infer", content=body).raise_for_status()
        replicas = [
            p
            for p in psutil.Process(target.process.pid).children(recursive=True)
            if "--model-dir" in p.cmdline()
        ]
        info = replicas[0].memory_full_info()
        return info.rss / 2**20, info.pss / 2**20, info.uss / 2**20
