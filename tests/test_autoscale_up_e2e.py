"""Autoscaling on a real `serving up` (a process, its model servers OS processes): replicas go 1 -> N under a
step load of closed-loop users and back down when idle; with minReplicas 0 the service ends with no model
process and the next request is held by the activator and answered (200, not 503), its cold start printed.
The load is Locust's step shape (`serving loadtest v1 --shape step`, its own process) on a model that costs 5 ms
per call, one call at a time per replica, so more replicas is the only way to more throughput."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loadtests import servers
from loadtests.autoscale_bench import (
    cold_start_s,
    model_processes,
    predictor_status,
    serving_up,
    write_isvc,
)

pytestmark = pytest.mark.e2e


def test_scales_up_under_load_down_to_zero_and_wakes_for_the_next_request(tmp_path: Path) -> None:
    isvc = write_isvc(tmp_path, "elastic", min_replicas=0, max_replicas=3, target=1, window="6s")
    with serving_up(tmp_path, isvc, "elastic", tmp_path / "up.log", "--activator-timeout", "60") as target:
        report = tmp_path / "locust"
        locust = subprocess.Popen(  # 1 -> 8 users in 5 steps over 5 s
            [
                sys.executable,
                "-m",
                "serving.cli",
                "loadtest",
                "v1",
                "--url",
                target.url,
                "--model",
                "elastic",
                "--shape",
                "step",
                "--users",
                "8",
                "--duration",
                "5s",
                "--out",
                str(report),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        replicas, started = [], time.monotonic()
        before: set[str] = set()  # every model process seen while the load runs
        while locust.poll() is None:
            before |= model_pids(target)
            replicas.append(
                (time.monotonic() - started, predictor_status(target, "elastic").get("currentReplicas", 0))
            )
            time.sleep(0.25)  # sampling the replica count while Locust runs (not a synchronisation)
        summary = json.loads((report / "summary.json").read_text())
        peak = max(n for _, n in replicas)
        assert summary["requests"] > 0 and summary["failures"] == 0, (
            "a request failed while replicas were added"
        )
        assert peak >= 2, f"never scaled above one ready replica: {replicas}"
        second = next(t for t, n in replicas if n >= 2)
        print(
            f"\n1 -> {peak} ready replicas; 2nd ready after {second:.1f} s; Locust p99 {summary['p99_ms']} ms "
            f"over {summary['requests']} requests"
        )
        # the model processes seen under load (read from the process table: a federated scrape at the moment the
        # replicas scale down can miss them all on a loaded machine, and read nothing for 15 s)
        cold = cold_start_s(target, "elastic", idle_timeout_s=60)  # waits for zero processes first
        print(f"cold start from zero: {cold * 1000:.0f} ms (held by the activator, answered 200)")
        assert model_processes(target) == 1, target.log.read_text()[-6000:]
        status = predictor_status(target, "elastic")
        assert status["desiredReplicas"] >= 1
        servers.wait_until(
            lambda: predictor_status(target, "elastic")["currentReplicas"] == 1,
            10,
            "status to report the woken replica",
            target.process,
            target.log,
        )
        # the woken process counts from 0 again, as a series of its own (a `pid` Prometheus has not seen), so
        # an increase over the zero period is never read as a smaller one
        after = replica_pids(target.url)
        assert after and before and not after & before, (before, after)


def model_pids(target: servers.Target) -> set[str]:
    """The pids of the model-server processes under `serving up` (warm-forked ones are the spawner's children)."""
    import psutil

    found = set()
    for child in psutil.Process(target.process.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())  # a warm-forked replica's is its title: one string
        except psutil.Error:
            continue
        if " serve " in f" {command} " and "--model-dir" in command:
            found.add(str(child.pid))
    return found


def replica_pids(url: str, within_s: float = 15.0) -> set[str]:
    """The `pid` labels of the elastic predictor's request counters in `serving up`'s federated /metrics (a
    replica slow to answer its scrape under load contributes nothing to that scrape: asked again)."""
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + within_s
    while True:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        pids = {
            sample.labels["pid"]
            for family in text_string_to_metric_families(text)
            if family.name == "serving_requests"
            for sample in family.samples
            if sample.labels.get("isvc") == "elastic" and sample.name == "serving_requests_total"
        }
        if pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)  # polling the scrape (not a synchronisation)
