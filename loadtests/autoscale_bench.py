"""Autoscaling under a step load, on a real `serving up` (benchmark item `autoscale`; the e2e test reuses it).

The model costs 5 ms per call, one call at a time per replica (`loadtests.fixed_cost_model`), so one replica
serves ~200 req/s and a queue forms above concurrency 1. A step load of 1, 2, 4, 8, 16 closed-loop users
(each sends its next request when the previous one answers) runs against:
- an autoscaled service (minReplicas 1, maxReplicas 8, scaleMetric concurrency, scaleTarget 2): when does
  it reach more replicas, and what p99 do users see during the ramp;
- the same service pinned at 8 replicas (minReplicas = maxReplicas = 8): the p99 floor for comparison;
- a service with minReplicas 0: idle until it has no process, then one request, timed (the cold start).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from loadtests import servers

RUNTIME = "loadtests.fixed_cost_model:FixedCostRuntime"
STEPS = (1, 2, 4, 8, 16)
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
YAML = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  annotations:
    autoscaling.knative.dev/window: "{window}"
spec:
  predictor:
    minReplicas: {min}
    maxReplicas: {max}
    scaleMetric: concurrency
    scaleTarget: {target}
    model:
      modelFormat: {{name: sklearn}}
      runtime: {runtime}
      storageUri: {uri}
"""


def write_isvc(
    folder: Path, name: str, min_replicas: int, max_replicas: int, target: int = 2, window: str = "6s"
) -> Path:
    model = folder / "fixed-cost-model"
    model.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        YAML.format(
            name=name,
            window=window,
            min=min_replicas,
            max=max_replicas,
            target=target,
            runtime=RUNTIME,
            uri=model,
        )
    )
    return path


@contextmanager
def serving_up(folder: Path, yaml_file: Path, name: str, log: Path, *extra: str) -> Iterator[servers.Target]:
    state = folder / f"state-{name}"
    argv = [
        sys.executable,
        "-m",
        "serving.cli",
        "up",
        "-f",
        str(yaml_file),
        "--state-dir",
        str(state),
        *extra,
    ]
    with servers.started(
        argv, "/v2/health/live", log, ready=lambda url: servers.isvc_ready(url, state, name), state_dir=state
    ) as target:
        yield target


def predictor_status(target: servers.Target, name: str) -> dict[str, Any]:
    from serving.control.local.client import ControlClient

    document = ControlClient(target.url, target.state_dir).get(name)
    status: dict[str, Any] = document.get("status", {}).get("components", {}).get("predictor", {})
    return status


def model_processes(target: servers.Target) -> int:
    """Model-server processes under `serving up` right now."""
    try:
        children = psutil.Process(target.process.pid).children(recursive=True)
        return sum(1 for c in children if "serve" in c.cmdline() and "--model-dir" in c.cmdline())
    except psutil.Error:
        return 0


@dataclass
class StepResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    replicas: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, ready replicas)

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) * 1000 if self.latencies_s else float("nan")

    def first_time_at(self, replicas: int) -> float | None:
        return next((t for t, n in self.replicas if n >= replicas), None)


async def _user(client: httpx.AsyncClient, path: str, until: float, result: StepResult) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        response = await client.post(path, json=BODY)
        if response.status_code == 200:
            result.latencies_s.append(time.monotonic() - started)
        else:
            result.errors += 1


async def _watch(target: servers.Target, name: str, until: float, result: StepResult, t0: float) -> None:
    while time.monotonic() < until:
        status = await asyncio.to_thread(predictor_status, target, name)
        result.replicas.append((time.monotonic() - t0, int(status.get("currentReplicas", 0))))
        await asyncio.sleep(0.25)


async def _step_load(target: servers.Target, name: str, step_s: float) -> StepResult:
    result, path = StepResult(), f"/v2/models/{name}/infer"
    t0 = time.monotonic()
    end = t0 + step_s * len(STEPS)
    limits = httpx.Limits(max_connections=max(STEPS) + 4)
    async with httpx.AsyncClient(base_url=target.url, timeout=60, limits=limits) as client:
        watcher = asyncio.create_task(_watch(target, name, end, result, t0))
        users: list[asyncio.Task[None]] = []
        for index, count in enumerate(STEPS):
            while len(users) < count:
                users.append(asyncio.create_task(_user(client, path, end, result)))
            await asyncio.sleep(max(0.0, t0 + (index + 1) * step_s - time.monotonic()))
        await asyncio.gather(*users, watcher)
    return result


def step_load(target: servers.Target, name: str, step_s: float = 6.0) -> StepResult:
    """1 -> 16 closed-loop users, `step_s` per step; latencies, errors and ready replicas over time."""
    return asyncio.run(_step_load(target, name, step_s))


def cold_start_s(target: servers.Target, name: str, idle_timeout_s: float = 120.0) -> float:
    """Wait until the service has no model process, then time one request (held by the activator)."""
    servers.wait_until(
        lambda: model_processes(target) == 0,
        idle_timeout_s,
        f"{name} to scale to zero",
        target.process,
        target.log,
        interval_s=0.25,
    )
    started = time.monotonic()
    response = httpx.post(f"{target.url}/v2/models/{name}/infer", json=BODY, timeout=90)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, f"cold request answered {response.status_code}: {response.text}"
    return elapsed


def run(bench: Any, step_s: float) -> None:
    """The benchmark item: rows for the autoscaled ramp, the pinned ramp and the cold start."""
    from loadtests.bench_table import Row

    folder = bench.workdir / "autoscale"
    for label, low, high in (("autoscaled 1..8", 1, 8), ("pinned at 8", 8, 8)):
        name = "auto" if low != high else "pinned"
        with serving_up(
            folder, write_isvc(folder, name, low, high), name, bench.logs / f"autoscale-{name}.log"
        ) as t:
            result = step_load(t, name, step_s)
        peak = max((n for _, n in result.replicas), default=0)
        up_at = result.first_time_at(2)
        note = (
            f"ready replicas peak {peak}; 2nd replica ready at {up_at:.1f} s"
            if up_at is not None and low != high
            else f"ready replicas {peak}"
        )
        rps = len(result.latencies_s) / (step_s * len(STEPS))
        bench.rows.append(
            Row(
                item="autoscale",
                config=f"step 1->16 users, {label}",
                conns=16,
                rps=rps,
                p50_ms=result.p(50),
                p99_ms=result.p(99),
                errors=result.errors,
                note=note,
            )
        )
        print(
            f"  {label:<18} {rps:8.1f} req/s  p50 {result.p(50):7.2f} ms  p99 {result.p(99):8.2f} ms  "
            f"errors {result.errors}  {note}",
            file=sys.stderr,
            flush=True,
        )
    with serving_up(folder, write_isvc(folder, "zero", 0, 2), "zero", bench.logs / "autoscale-zero.log") as t:
        cold = cold_start_s(t, "zero")
    bench.rows.append(
        Row(
            item="autoscale",
            config="cold start from zero (held by the activator)",
            conns=1,
            p50_ms=cold * 1000,
            note="one request after the service had no process",
        )
    )
    print(f"  cold start from zero: {cold * 1000:.0f} ms", file=sys.stderr, flush=True)
