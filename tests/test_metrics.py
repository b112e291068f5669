"""Metrics: names and labels, no label values from URLs, router metrics, and `--workers 2` adding up."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import UNKNOWN_MODEL, Metrics, RouterMetrics
from serving.router.app import Router
from serving.router.table import Arm, RouteTable, ServiceRoute
from tests.inprocess import serving_inprocess
from tests.runtimes_for_tests import RELEASE_FILE
from tests.support import serving_process, train_iris_sklearn, wait_until
from tests.test_prometheus import promtool_check

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
ECHO = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}


def parsed(text: bytes | str) -> list:
    text = text.decode() if isinstance(text, bytes) else text
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: list, name: str, **labels: str) -> float:
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_documented_family_is_exposed_with_its_labels() -> None:
    metrics = Metrics()
    bound = metrics.model("iris", "3")
    bound.request("v2", 200, 0.01)
    bound.inference(0.002)
    bound.batch_formed(5, [0.001] * 5)
    bound.queue_depth(2)
    bound.in_flight.inc()
    bound.predict.observe(0.003)
    metrics.rejected("queue_full")
    metrics.unknown_model("v1", 404, 0.001)
    samples = parsed(metrics.exposition())
    assert total(samples, "serving_requests_total", model="iris", version="3", protocol="v2", code="200") == 1
    assert total(samples, "serving_request_duration_seconds_count", model="iris", protocol="v2") == 1
    assert total(samples, "serving_inference_duration_seconds_count", model="iris") == 1
    assert total(samples, "serving_batch_size_sum", model="iris") == 5
    assert total(samples, "serving_batch_wait_seconds_count", model="iris") == 5
    assert total(samples, "serving_batch_queue_depth", model="iris") == 2
    assert total(samples, "serving_requests_in_flight", model="iris", version="3") == 1
    assert total(samples, "serving_rejected_total", reason="queue_full") == 1
    assert total(samples, "request_predict_seconds_count", model_name="iris") == 1
    assert total(samples, "serving_requests_total", model=UNKNOWN_MODEL, code="404") == 1


def test_router_metrics_per_isvc_revision_and_arm() -> None:
    router = RouterMetrics()
    router.route_in_flight("iris", "default", "iris-aaaa", "stable", 1)
    router.observe_route("iris", "default", "iris-aaaa", "stable", 200, 0.004)
    router.route_in_flight("iris", "default", "iris-aaaa", "stable", -1)
    router.route_in_flight("iris", "default", "iris-bbbb", "canary", 1)
    router.observe_route("iris", "default", "iris-bbbb", "canary", 503, 0.2)
    samples = parsed(router.exposition())
    stable = {"isvc": "iris", "namespace": "default", "revision": "iris-aaaa", "arm": "stable"}
    canary = {"isvc": "iris", "namespace": "default", "revision": "iris-bbbb", "arm": "canary"}
    assert total(samples, "serving_router_requests_total", code="200", **stable) == 1
    assert total(samples, "serving_router_errors_total", code="503", **canary) == 1
    assert total(samples, "serving_router_errors_total", **stable) == 0
    assert total(samples, "serving_router_requests_in_flight", **stable) == 0
    assert total(samples, "serving_router_requests_in_flight", **canary) == 1
    assert total(samples, "serving_router_request_duration_seconds_count", **canary) == 1
    router.forget_revision("iris", "default", "iris-aaaa")
    assert not [s for s in parsed(router.exposition()) if s.labels.get("revision") == "iris-aaaa"]


def test_router_counts_through_bound_series_across_table_swaps_and_forget() -> None:
    """The router's metrics bind each arm's children once (`RouteSeries`): what it counts must still reach
    /metrics after the table is swapped (new arm objects) and after a retired revision's series are forgotten."""
    metrics = RouterMetrics()
    router = Router(metrics=metrics)

    def table(revision: str) -> tuple[ServiceRoute, Arm]:
        arm = Arm(revision, 100, "stable", "latest", ("http://127.0.0.1:9",))
        route = ServiceRoute("iris", "default", (arm,))
        router.set_table(RouteTable({("default", "iris"): route}))
        return route, arm

    def requests(revision: str) -> float:
        return total(parsed(metrics.exposition()), "serving_router_requests_total", revision=revision)

    for _ in range(50):  # the same revision, a new table each time (as endpoint changes make them)
        route, arm = table("iris-a")
        router.request_started(route, arm)
        router.request_finished(route, arm, 200, 0.001)
    assert requests("iris-a") == 50
    assert len(metrics._series) == 1  # one series per arm's labels, however many tables held it
    router.forget("iris", "default", "iris-a")
    assert requests("iris-a") == 0
    router.request_started(route, arm)  # the same arm object again, after its series were forgotten
    samples = parsed(metrics.exposition())
    assert [s.value for s in samples if s.name == "serving_router_requests_in_flight"] == [1]
    router.request_finished(route, arm, 200, 0.001)
    samples = parsed(metrics.exposition())
    assert total(samples, "serving_router_requests_total", revision="iris-a", code="200") == 1
    assert total(samples, "serving_router_request_duration_seconds_count", revision="iris-a") == 1
    assert [s.value for s in samples if s.name == "serving_router_requests_in_flight"] == [0]


def test_unknown_model_names_do_not_create_label_values(tmp_path: Path) -> None:
    train_iris_sklearn(tmp_path / "iris")
    with (
        serving_inprocess(["serve", "--model-dir", str(tmp_path / "iris")]) as server,
        server.client() as client,
    ):
        for i in range(20):
            assert client.post(f"/v1/models/attack-{i}:predict", json=ROW).status_code == 404
            assert client.post(f"/v2/models/attack-{i}/infer", json={"inputs": []}).status_code == 404
        assert client.post("/v1/models/iris:predict", json=ROW).status_code == 200
        text = client.get("/metrics").text
    assert "attack-" not in text
    samples = parsed(text)
    assert total(samples, "serving_requests_total", model=UNKNOWN_MODEL, code="404") == 40
    assert total(samples, "serving_requests_total", model="iris", version="1", protocol="v1", code="200") == 1
    assert total(samples, "request_preprocess_seconds_count", model_name="iris") == 1
    assert total(samples, "serving_model_ready", model="iris") == 1


@pytest.mark.e2e  # two worker processes
def test_two_workers_report_every_request(tmp_path: Path) -> None:
    train_iris_sklearn(tmp_path / "iris")
    args = ["serve", "--model-dir", str(tmp_path / "iris"), "--workers", "2", "--max-batch-size", "8"]
    with serving_process(args) as server:
        # /v2/health/ready answers from the first worker up, and from then on so does the ready gauge: a worker
        # counts in it once it serves (the second may still be loading: see the test below)
        sent = 60
        for _ in range(sent):  # a new connection each: the kernel spreads them over the serving workers
            assert httpx.post(server.url + "/v1/models/iris:predict", json=ROW, timeout=30).status_code == 200
        for _ in range(4):  # every scrape, whichever worker answers it, sees all of them
            samples = parsed(httpx.get(server.url + "/metrics", timeout=30).text)
            assert total(samples, "serving_requests_total", model="iris", code="200") == sent
            assert total(samples, "serving_batch_size_count", model="iris") == sent
            assert total(samples, "serving_model_ready", model="iris") == 1
        promtool_check(
            httpx.get(server.url + "/metrics", timeout=30).text
        )  # multiprocess output is valid too


@pytest.mark.e2e  # two worker processes
def test_a_worker_still_loading_does_not_pull_the_ready_gauge_down(tmp_path: Path) -> None:
    """A worker loads its models before it takes a connection (at start, and when uvicorn replaces one): until
    then the server answers from the workers that serve, so `serving_model_ready` says ready, as
    /v2/health/ready does. It said 0 (livemin over the loading worker's 0) while the ready worker answered."""
    folder = tmp_path / "echo"
    folder.mkdir()
    runtime = "tests.runtimes_for_tests:FirstLoadsRuntime"  # the second worker's load waits for RELEASE_FILE
    args = ["serve", "--model-dir", str(folder), "--workers", "2", "--runtime", runtime]
    with serving_process(args) as server:  # /v2/health/ready answered 200: one worker serves
        wait_until(lambda: len(list(folder.glob("loading-*"))) == 1, 60, what="the second worker loading")
        for _ in range(3):
            samples = parsed(httpx.get(server.url + "/metrics", timeout=30).text)
            assert total(samples, "serving_model_ready", model="echo") == 1
        (folder / RELEASE_FILE).touch()  # the second worker loads and serves too
        assert httpx.post(server.url + "/v2/models/echo/infer", json=ECHO, timeout=30).status_code == 200


def test_a_replaced_workers_live_gauges_are_forgotten(tmp_path: Path) -> None:
    """Workers share a PROMETHEUS_MULTIPROC_DIR; one that died not ready (and in the middle of a request) must not
    pin `serving_model_ready` at 0 or leave a request in flight forever, and the empty file of one starting must
    not fail the scrape (it did: struct.error). Real processes: prometheus-client picks its multiprocess mode
    when it is imported."""
    import subprocess
    import sys

    worker = (
        "import sys, types\n"
        "from serving.metrics import Metrics\n"
        "m = Metrics()\n"
        "m.model_state_changed(types.SimpleNamespace(name='iris', ready=sys.argv[1] == '1', load_seconds=0.1))\n"
        "m.model('iris', '1').in_flight.inc(int(sys.argv[2]))\n"
        "m.model('iris', '1').request('v1', 200, 0.01)\n"
        "if len(sys.argv) > 3: print(m.exposition().decode())\n"
    )
    env = {**__import__("os").environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", worker, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("0", "1")  # the replaced worker: not ready, one request in flight, then gone
    (tmp_path / "histogram_4194000.db").touch()  # a starting worker's file: created, not sized yet
    samples = parsed(run("1", "0", "scrape"))  # its replacement: ready, idle, and answering /metrics
    assert total(samples, "serving_model_ready", model="iris") == 1
    assert total(samples, "serving_requests_in_flight", model="iris") == 0
    assert (
        total(samples, "serving_requests_total", model="iris") == 2
    )  # what the dead one served still counts


def test_loop_owned_families_expose_what_prometheus_client_would() -> None:
    """The lock-free families answer /metrics byte for byte like prometheus-client's (bar _created times)."""
    import re

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    from serving.loop_metrics import counter, gauge, histogram

    def exposed(shared: bool) -> str:
        registry = CollectorRegistry()
        c = counter("c", "a counter", ["code"], registry, shared)
        g = gauge("g", "a gauge", ["m"], registry, shared)
        h = histogram("h", "a histogram", ["m"], (0.001, 0.01, 1.0), registry, shared)
        c.labels("200").inc()
        c.labels(404).inc(2)
        g.labels("x").inc()
        g.labels("x").dec(3)
        for value in (0.001, 0.0011, 0.5, 7.0):  # exactly on a bound counts in that bucket (le)
            h.labels("x").observe(value)
        assert (
            isinstance(c, Counter) == shared
            and isinstance(g, Gauge) == shared
            and isinstance(h, Histogram) == shared
        )
        return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())

    loop = exposed(False)
    assert loop == exposed(True)
    assert 'h_bucket{le="0.001",m="x"} 1.0' in loop and 'h_bucket{le="+Inf",m="x"} 4.0' in loop
    assert 'c_total{code="404"} 2.0' in loop and 'g{m="x"} -2.0' in loop
