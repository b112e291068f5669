"""The local autoscaler loop end to end in-process: the real LocalControlPlane, reconcile loop, KPA and
Activator, with fake replicas (the `replica_factory` seam of tests/test_control_local.py) and a load source
the test sets (what the router's `RevisionLoad` would report). Time is a clock that moves 0.25 s per
reading, so a 6 s Knative window passes in a few dozen ticks of a 10 ms loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from serving.autoscale.metrics import ScalingMetrics
from serving.commands.isvc_table import format_table
from serving.control.local.api import build_control_app
from serving.control.local.autoscaler import stable_floor
from serving.control.local.control_plane import LocalControlPlane
from serving.control.local.state import StateStore
from serving.errors import ServiceUnavailable
from serving.router.activator import Activator
from serving.router.app import Router
from serving.router.load import RevisionLoad
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.spec import SpecError, parse
from tests.inprocess import serving_inprocess
from tests.support import train_iris_sklearn
from tests.test_control_local import PORTS, FakeReplica, Sink, _until

WINDOW = {"autoscaling.knative.dev/window": "6s"}


class SteppingClock:
    def __init__(self, step_s: float = 0.25) -> None:
        self.now, self.step_s = 1000.0, step_s

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


def _doc(model: Path, annotations: dict[str, str] | None = None, **predictor: object) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "annotations": {**WINDOW, **(annotations or {})}},
        "spec": {"predictor": {**predictor, "sklearn": {"storageUri": str(model)}}},
    }


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    FakeReplica.instances.clear()
    FakeReplica.failing.clear()
    FakeReplica.loading.clear()
    path = tmp_path / "model"
    path.mkdir()
    (path / "model.joblib").write_bytes(b"")
    return path


def _plane(tmp_path: Path, sink: Sink, load: RevisionLoad, registry: CollectorRegistry) -> LocalControlPlane:
    control = LocalControlPlane(
        StateStore(tmp_path / "state"),
        sink,
        replica_factory=FakeReplica,
        load=load,
        scaling_metrics=ScalingMetrics(registry),
        autoscale_interval_s=0.01,
    )
    control.autoscalers.clock = SteppingClock()
    return control


def _ready(sink: Sink) -> list[int]:
    return [n for _, n in sink.arms().values()]


def _running() -> int:
    return sum(1 for r in FakeReplica.instances if not r.stopped)


@pytest.mark.asyncio
async def test_replicas_follow_concurrency_up_and_back_down(tmp_path: Path, model: Path) -> None:
    sink, load, registry = Sink(), RevisionLoad(), CollectorRegistry()
    control = _plane(tmp_path, sink, load, registry)
    await control.start()
    try:
        doc = _doc(model, minReplicas=1, maxReplicas=5, scaleTarget=2)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        (revision,) = sink.arms()
        load.in_flight[("default", revision)] = 7  # 7 in flight / (2 x 0.7 per replica) = 5
        await _until(lambda: _ready(sink) == [5])
        predictor = control.get("default", "iris").status["components"]["predictor"]
        assert predictor["desiredReplicas"] == 5
        await _until(
            lambda: control.get("default", "iris").status["components"]["predictor"]["currentReplicas"] == 5
        )
        assert (
            b'serving_autoscaler_desired_replicas{isvc="iris",revision="%s"} 5.0' % revision.encode()
            in generate_latest(registry)
        )
        load.in_flight[("default", revision)] = 0
        await _until(lambda: _ready(sink) == [1] and _running() == 1, timeout_s=10)
        # Replicas taken away were drained (out of the table first, then waited for) before they stopped.
        drained = {url for kind, urls in sink.events if kind == "drain" for url in urls}
        assert {r.url for r in FakeReplica.instances if r.stopped} <= drained
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_min_zero_goes_to_zero_then_a_held_request_wakes_it(tmp_path: Path, model: Path) -> None:
    sink, load, registry = Sink(), RevisionLoad(), CollectorRegistry()
    control = _plane(tmp_path, sink, load, registry)
    await control.start()
    try:
        doc = _doc(model, minReplicas=0, maxReplicas=3)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        await _until(lambda: _running() == 0, timeout_s=10)  # idle for the window: no process left
        route = sink.tables[-1].services[("default", "iris")]
        assert route.activator and route.arms[0].percent == 100 and route.arms[0].endpoints == ()
        status = control.get("default", "iris").status
        assert status["conditions"][-1]["status"] == "True"  # scaled to zero is still a serving service
        assert status["components"]["predictor"]["desiredReplicas"] == 0
        # The router's activator holds a request and signals demand; the table with an endpoint releases it.
        activator = Activator(load, timeout_s=5)
        activator.on_demand = control.autoscalers.activate
        original_set = sink.set_table
        sink.set_table = lambda table: (original_set(table), activator.table_changed(table))[0]  # type: ignore[method-assign]
        arm = await activator.hold(route, route.arms[0])
        assert arm.endpoints and _running() == 1
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_a_replica_woken_from_zero_is_not_stopped_before_it_is_ready(
    tmp_path: Path, model: Path
) -> None:
    """A request wakes the revision and leaves (its timeout passed) while the replica still loads its model:
    with no load left the window would say zero, but the loading replica is kept until it is ready (stopped
    while loading, every request would wake one that is stopped the same way: the service never answers).
    Once ready it stays one window, then, idle, goes; `actual_replicas` counts it while it starts."""
    sink, load, registry = Sink(), RevisionLoad(), CollectorRegistry()
    control = _plane(tmp_path, sink, load, registry)
    await control.start()
    try:
        doc = _doc(model, minReplicas=0, maxReplicas=3)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        await _until(lambda: _running() == 0, timeout_s=10)
        FakeReplica.loading.add(str(model))
        ((namespace, revision),) = control.runners
        control.autoscalers.activate(namespace, revision)  # a held request's demand; it leaves at once
        await _until(lambda: _running() == 1)
        clock = control.autoscalers.clock
        assert isinstance(clock, SteppingClock)
        woke = clock.now
        await _until(lambda: clock.now > woke + 3 * 6)  # three windows of no load
        (loading,) = [r for r in FakeReplica.instances if not r.stopped]
        assert loading.state.value == "starting", "the loading replica was stopped"
        exposition = generate_latest(registry).decode()
        assert f'serving_autoscaler_actual_replicas{{isvc="iris",revision="{revision}"}} 1.0' in exposition
        loading.loaded()
        await _until(lambda: _ready(sink) == [1])
        ready_at = clock.now
        # kept one window after it is ready, so the next sparse request finds it (the one that woke it left)
        await _until(lambda: clock.now > ready_at + 5)
        assert _running() == 1, "the woken replica went before a window had passed"
        await _until(lambda: _running() == 0, timeout_s=10)  # idle for that window: scaled to zero
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_canary_arms_scale_on_their_own_load_and_stable_keeps_its_share(
    tmp_path: Path, model: Path
) -> None:
    other = model.parent / "v2"
    other.mkdir()
    (other / "model.joblib").write_bytes(b"")
    sink, load, registry = Sink(), RevisionLoad(), CollectorRegistry()
    control = _plane(tmp_path, sink, load, registry)
    await control.start()
    try:
        doc = _doc(model, minReplicas=1, maxReplicas=6, scaleTarget=1)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        (stable,) = sink.arms()
        load.in_flight[("default", stable)] = 3  # 3 / 0.7 -> 5 replicas
        await _until(lambda: _ready(sink) == [5])
        canary_doc = _doc(other, minReplicas=1, maxReplicas=6, scaleTarget=1, canaryTrafficPercent=20)
        await control.apply(parse(canary_doc), canary_doc)
        await _until(lambda: len(sink.arms()) == 2)
        canary = next(r for r in sink.arms() if r != stable)
        load.in_flight[("default", stable)] = 0  # the stable arm's own load drops; the canary's grows
        load.in_flight[("default", canary)] = 2
        await _until(lambda: sink.arms()[canary][1] == 3)
        await asyncio.sleep(0.3)  # many ticks: the stable arm would shrink to 1 on its own load
        assert sink.arms()[stable][1] >= stable_floor(80, {stable: 1, canary: 3}) == 4
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_an_idle_canary_runs_one_replica_per_arm(tmp_path: Path, model: Path) -> None:
    """Every service autoscales (KServe's Knative mode); idle, a 20 % canary and its stable arm run one each: the
    stable floor (its share of the total) only counts once an arm has scaled past one."""
    other = model.parent / "v2"
    other.mkdir()
    (other / "model.joblib").write_bytes(b"")
    sink, load, registry = Sink(), RevisionLoad(), CollectorRegistry()
    control = _plane(tmp_path, sink, load, registry)
    await control.start()
    try:
        doc = _doc(model)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        canary_doc = _doc(other, canaryTrafficPercent=20)
        await control.apply(parse(canary_doc), canary_doc)
        await _until(lambda: len(sink.arms()) == 2)
        for _ in range(20):  # many autoscaler ticks
            await asyncio.sleep(0.02)
        assert sorted(n for _, n in sink.arms().values()) == [1, 1], sink.arms()
    finally:
        await control.shutdown()


def test_router_load_averages_in_flight_over_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.25 s request in a 1 s reading is 0.25 requests in flight on average, though none is in flight then."""
    now = [10.0]
    monkeypatch.setattr("serving.router.load.time.monotonic", lambda: now[0])
    load = RevisionLoad()
    load.concurrency("default", "r")  # the first reading starts the interval
    load.begin("default", "r")
    now[0] += 0.25
    load.end("default", "r")
    now[0] += 0.75
    load.held[("default", "r")] = 2
    assert load.concurrency("default", "r") == pytest.approx(2.25) and load.requests("default", "r") == 1


@pytest.mark.parametrize("headers", [{}, {"x-serving-tag": "latest"}], ids=["split", "pinned-by-tag"])
def test_the_router_holds_a_request_for_a_revision_at_zero_then_forwards_it(
    tmp_path: Path, headers: dict
) -> None:
    """The Router's own path (balancer or tag pin, activator, table swap) against a real model server in-process:
    the request waits while the route has no endpoint and is answered once `on_demand` publishes one."""
    train_iris_sklearn(tmp_path / "iris")
    with serving_inprocess(["serve", "--model-dir", str(tmp_path / "iris")]) as server:

        async def run() -> tuple[httpx.Response, list[str]]:
            router = Router()
            cold = ServiceRoute(
                "iris", "default", (Arm("iris-1", 100, "stable", "latest", ()),), activator=True
            )
            router.set_table(RouteTable({("default", "iris"): cold}, 1))
            asked: list[str] = []

            def start_one(namespace: str, revision: str) -> None:  # what the control plane does, later
                asked.append(revision)
                warm = ServiceRoute(
                    "iris",
                    "default",
                    (Arm("iris-1", 100, "stable", "latest", (server.url,)),),
                    activator=True,
                )
                asyncio.get_running_loop().call_later(
                    0.2, router.set_table, RouteTable({("default", "iris"): warm}, 2)
                )

            router.activator.on_demand = start_one
            transport = httpx.ASGITransport(app=router)
            async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
                response = await client.post(
                    "/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]}, headers=headers
                )
            await router.upstreams.close()
            return response, asked

        response, asked = asyncio.run(run())
    assert response.status_code == 200 and response.headers["x-serving-revision"] == "iris-1", response.text
    assert asked == ["iris-1"]


def test_stable_floor_is_its_share_of_all_arms() -> None:
    assert stable_floor(75, {"a": 2, "b": 2}) == 3
    assert stable_floor(90, {"a": 1, "b": 0}) == 1


@pytest.mark.asyncio
async def test_activator_times_out_and_bounds_its_queue_with_retry_after() -> None:
    load = RevisionLoad()
    activator = Activator(load, timeout_s=0.2, max_queue=1)
    cold = ServiceRoute("iris", "default", (Arm("iris-1", 100, "stable", "latest", ()),), activator=True)
    activator.table_changed(RouteTable({("default", "iris"): cold}))
    demanded: list[tuple[str, str]] = []
    activator.on_demand = lambda ns, rev: demanded.append((ns, rev))
    first = asyncio.create_task(activator.hold(cold, cold.arms[0]))
    await _until(lambda: load.waiting("default", "iris-1") == 1)
    with pytest.raises(ServiceUnavailable) as full:
        await activator.hold(cold, cold.arms[0])
    assert "1 requests already wait" in full.value.message and full.value.headers["Retry-After"]
    with pytest.raises(ServiceUnavailable) as late:
        await first
    assert "did not become ready within 0.2s" in late.value.message and late.value.headers["Retry-After"]
    assert demanded == [("default", "iris-1")] and load.waiting("default", "iris-1") == 0


@pytest.mark.parametrize(
    ("predictor", "annotations", "path"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, {}, "spec.predictor"),
        ({"scaleTarget": -1}, {}, "spec.predictor.scaleTarget"),
        ({"scaleMetric": "gpu"}, {}, "spec.predictor.scaleMetric"),
        (
            {},
            {"autoscaling.knative.dev/window": "soon"},
            "metadata.annotations.autoscaling.knative.dev/window",
        ),
        (
            {"autoScaling": {"metrics": [{"type": "External"}]}},
            {},
            "spec.predictor.autoScaling.metrics[0].type",
        ),
        ({"autoScaling": {"metrics": 5}}, {}, "spec.predictor.autoScaling.metrics"),
        (
            {"autoScaling": {"metrics": [{"type": "Resource", "resource": "cpu"}]}},
            {},
            "spec.predictor.autoScaling.metrics[0].resource",
        ),
    ],
)
def test_bad_scaling_input_names_the_field(
    model: Path, predictor: dict, annotations: dict, path: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse(_doc(model, annotations, **predictor))
    assert err.value.status_code == 400 and path in err.value.message


@pytest.mark.asyncio
async def test_a_rejected_apply_leaves_the_running_service_alone(tmp_path: Path, model: Path) -> None:
    sink, load, registry = Sink(), RevisionLoad(), CollectorRegistry()
    control = _plane(tmp_path, sink, load, registry)
    await control.start()
    app = build_control_app(control, "t")
    try:
        doc = _doc(model, minReplicas=1, maxReplicas=2)
        await control.apply(parse(doc), doc)
        await _until(lambda: _ready(sink) == [1])
        before = sink.tables[-1].services
        bad = _doc(
            model, {"autoscaling.knative.dev/scale-down-delay": "5 minutes"}, minReplicas=1, maxReplicas=2
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://control"
        ) as client:
            response = await client.post(
                "/api/v1/inferenceservices", json=[bad], headers={"authorization": "Bearer t"}
            )
        assert response.status_code == 400
        assert "metadata.annotations.autoscaling.knative.dev/scale-down-delay" in response.json()["error"]
        assert control.get("default", "iris").document == doc and sink.tables[-1].services == before
    finally:
        await control.shutdown()


def test_serving_get_shows_ready_over_desired_replicas() -> None:
    item = {
        "metadata": {"name": "iris"},
        "status": {
            "url": "http://iris",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {"currentReplicas": 2, "desiredReplicas": 3}},
        },
    }
    header, row = format_table([item]).splitlines()
    assert header.split()[3] == "REPLICAS" and row.split()[3] == "2/3"


def test_unknown_knative_annotation_warns(model: Path) -> None:
    isvc = parse(_doc(model, {"autoscaling.knative.dev/widow": "6s"}))
    assert any("autoscaling.knative.dev/widow" in w for w in isvc.warnings())


class GatedReplica(FakeReplica):
    """A fake replica that becomes ready only when the test calls `release()`: one at a time."""

    def start(self, on_change) -> None:  # type: ignore[no-untyped-def]
        self._on_change = on_change
        self.port = next(PORTS)

    def release(self) -> None:
        self._ready()


INITIAL_2 = {"autoscaling.knative.dev/initial-scale": "2"}


def _gated_plane(tmp_path: Path) -> tuple[LocalControlPlane, SteppingClock, list[tuple[float, int, int]]]:
    """The plane with gated replicas; `ticks` records (time, ready replicas, desired) of every autoscaler tick."""
    control = LocalControlPlane(
        StateStore(tmp_path / "state"),
        Sink(),
        replica_factory=GatedReplica,
        load=RevisionLoad(),
        autoscale_interval_s=0.01,
    )
    clock = control.autoscalers.clock = SteppingClock()
    ticks: list[tuple[float, int, int]] = []
    tick = control.autoscalers.tick

    def recorded(key, scaler):  # type: ignore[no-untyped-def]
        decision = tick(key, scaler)
        ticks.append((scaler.samples[-1].time_s, control.autoscalers.fleet(*key).ready, decision.desired))
        return decision

    control.autoscalers.tick = recorded  # type: ignore[method-assign]
    return control, clock, ticks


def _condition(control: LocalControlPlane) -> str:
    return control.get("default", "iris").status["conditions"][-1]["status"]


@pytest.mark.asyncio
async def test_a_fresh_revision_keeps_its_initial_scale_for_one_window(tmp_path: Path, model: Path) -> None:
    """Knative: min-scale 0, initial-scale 2, idle. Both replicas run until one stable window (6 s) after the
    revision reached them; it went 2 -> 1 half a second after (the window was kept at one replica only)."""
    control, clock, ticks = _gated_plane(tmp_path)
    await control.start()
    try:
        doc = _doc(model, {**INITIAL_2, "autoscaling.knative.dev/min-scale": "0"}, maxReplicas=3)
        await control.apply(parse(doc), doc)
        await _until(lambda: len(FakeReplica.instances) == 2)
        for replica in FakeReplica.instances:
            replica.release()
        await _until(lambda: any(desired < 2 for _, _, desired in ticks), timeout_s=10)
        reached = next(t for t, ready, _ in ticks if ready == 2)
        first_below = next(t for t, _, desired in ticks if desired < 2)
        assert first_below - reached >= 6.0, ticks
        await _until(lambda: _running() == 0, timeout_s=10)  # then idle: scaled to zero as before
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_a_revision_is_ready_only_once_its_initial_scale_is(tmp_path: Path, model: Path) -> None:
    """Knative: initial-scale is what a revision reaches before it is marked Ready (`apply --wait` returned with
    1 of 2 replicas ready)."""
    from serving.control.local.canaries import LocalCanaries

    control, clock, ticks = _gated_plane(tmp_path)
    await control.start()
    try:
        doc = _doc(model, {**INITIAL_2, "autoscaling.knative.dev/min-scale": "0"}, maxReplicas=3)
        await control.apply(parse(doc), doc)
        await _until(lambda: len(FakeReplica.instances) == 2)
        first, second = FakeReplica.instances
        first.release()
        predictor = lambda: control.get("default", "iris").status["components"]["predictor"]  # noqa: E731
        await _until(lambda: predictor()["currentReplicas"] == 1)  # a reconcile saw it
        assert _condition(control) != "True" and not control.ready()
        assert predictor()["desiredReplicas"] == 2
        view = LocalCanaries(control, lambda: []).rollout_view(("default", "iris"))
        assert view is not None and not view.latest_ready  # a canary's analysis waits for it too
        second.release()
        await _until(lambda: _condition(control) == "True")
        assert predictor()["currentReplicas"] == 2
        view = LocalCanaries(control, lambda: []).rollout_view(("default", "iris"))
        assert view is not None and view.latest_ready
    finally:
        await control.shutdown()


@pytest.mark.asyncio
async def test_initial_scale_zero_is_ready_with_no_replica_and_the_first_request_wakes_one(
    tmp_path: Path, model: Path
) -> None:
    """Knative: initial-scale 0 with min-scale 0 creates the revision scaled to zero and marks it Ready (it used
    to wait for a replica nothing would start); the activator's first held request starts one."""
    control, clock, ticks = _gated_plane(tmp_path)
    await control.start()
    try:
        annotations = {"autoscaling.knative.dev/initial-scale": "0", "autoscaling.knative.dev/min-scale": "0"}
        doc = _doc(model, annotations, maxReplicas=2)
        await control.apply(parse(doc), doc)
        await _until(lambda: _condition(control) == "True")
        assert FakeReplica.instances == [] and control.ready()
        ((namespace, revision),) = control.runners
        control.autoscalers.activate(namespace, revision)
        await _until(lambda: len(FakeReplica.instances) == 1)
    finally:
        await control.shutdown()
