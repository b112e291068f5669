"""The local control plane's reconcile loop in-process: fake replicas (the `replica_factory` seam) and a
recording route sink stand in for processes and the router, so rollout, scaling, draining order, restart
of a predictor on a new port and persistence are checked without one subprocess."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from serving.control.local.control_plane import LocalControlPlane
from serving.control.local.processes import ProcessSpec, ReplicaState
from serving.control.local.state import StateStore
from serving.router.table import RouteTable
from serving.spec import parse

pytestmark = pytest.mark.asyncio
PORTS = itertools.count(20000)


class FakeReplica:
    """Listens on a made-up port at once and is ready on the next loop turn (or fails, if told to)."""

    instances: list[FakeReplica] = []
    failing: set[str] = set()
    loading: set[str] = set()  # replicas of these model folders stay starting until `loaded()`

    def __init__(self, name: str, spec: ProcessSpec, log_dir: Path) -> None:
        self.name, self.spec, self.log_dir = name, spec, log_dir
        self.state, self.error, self.port = ReplicaState.STARTING, "", 0
        self.stopped = False
        FakeReplica.instances.append(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:  # in this process: the port tells one incarnation from the next
        return self.port

    def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.port = next(PORTS)
        asyncio.get_running_loop().call_soon(self._ready)

    def _ready(self) -> None:
        storage = (
            self.spec.args[self.spec.args.index("--model-dir") + 1] if "--model-dir" in self.spec.args else ""
        )
        if any(marker in storage for marker in FakeReplica.loading):
            return  # still loading its model
        failed = any(marker in storage for marker in FakeReplica.failing)
        self.state, self.error = (
            (ReplicaState.FAILED, "model failed to load") if failed else (ReplicaState.READY, "")
        )
        self._on_change()

    def loaded(self) -> None:
        FakeReplica.loading.clear()
        self._ready()

    def restart_on_new_port(self) -> None:
        self.port = next(PORTS)
        self._on_change()

    async def stop(self) -> None:
        self.stopped, self.state = True, ReplicaState.STOPPED


class Sink:
    def __init__(self) -> None:
        self.tables: list[RouteTable] = []
        self.events: list[tuple[str, tuple[str, ...]]] = []

    def set_table(self, table: RouteTable) -> None:
        self.tables.append(table)

    async def drain(self, endpoints: Sequence[str]) -> None:
        self.events.append(("drain", tuple(endpoints)))

    def forget(self, isvc: str, namespace: str, revision: str) -> None:
        self.events.append(("forget", (revision,)))

    def arms(self) -> dict[str, tuple[int, int]]:
        route = self.tables[-1].services.get(("default", "iris"))
        return {a.revision: (a.percent, len(a.endpoints)) for a in route.arms} if route else {}


def _doc(model: Path, canary: int | None = None, replicas: int = 1, transformer: bool = False) -> dict:
    predictor: dict = {"minReplicas": replicas, "sklearn": {"storageUri": str(model)}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    spec: dict = {"predictor": predictor}
    if transformer:
        spec["transformer"] = {"containers": [{"args": ["serving", "transform", "--transformer", "tabular"]}]}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": spec,
    }


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture()
def models(tmp_path: Path) -> tuple[Path, Path]:
    FakeReplica.instances.clear()
    FakeReplica.failing.clear()
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for path in (v1, v2):
        path.mkdir()
        (path / "model.joblib").write_bytes(b"")
    return v1, v2


def _plane(tmp_path: Path, sink: Sink) -> LocalControlPlane:
    return LocalControlPlane(StateStore(tmp_path / "state"), sink, replica_factory=FakeReplica)


async def test_rollout_canary_promote_and_drain_order(tmp_path: Path, models: tuple[Path, Path]) -> None:
    v1, v2 = models
    sink = Sink()
    control = _plane(tmp_path, sink)
    await control.start()
    try:
        await control.apply(parse(_doc(v1, replicas=2)), _doc(v1, replicas=2))
        await _until(lambda: list(sink.arms().values()) == [(100, 2)])
        (first,) = sink.arms()
        await control.apply(parse(_doc(v2, canary=25, replicas=2)), _doc(v2, canary=25, replicas=2))
        await _until(lambda: len(sink.arms()) == 2 and all(n == 2 for _, n in sink.arms().values()))
        second = next(r for r in sink.arms() if r != first)
        assert sink.arms() == {second: (25, 2), first: (75, 2)}
        await control.apply(parse(_doc(v2, replicas=2)), _doc(v2, replicas=2))  # promote
        await _until(lambda: sink.arms() == {second: (100, 2)})
        await _until(lambda: ("forget", (first,)) in sink.events)
        # The retired revision was out of the table before it was drained, drained before it was stopped.
        old = [r for r in FakeReplica.instances if r.name.startswith(first)]
        drained = next(urls for kind, urls in sink.events if kind == "drain")
        assert set(drained) == {r.url for r in old} and all(r.stopped for r in old)
        status = control.get("default", "iris").status
        assert status["components"]["predictor"]["previousRolledoutRevision"] == first
    finally:
        await control.shutdown()
    assert sink.tables[-1].services == {}


async def test_a_failed_revision_gets_no_traffic_and_says_why(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    v1, v2 = models
    FakeReplica.failing.add(str(v2))
    sink = Sink()
    control = _plane(tmp_path, sink)
    await control.start()
    try:
        await control.apply(parse(_doc(v1)), _doc(v1))
        await _until(lambda: list(sink.arms().values()) == [(100, 1)])
        await control.apply(parse(_doc(v2)), _doc(v2))
        await _until(
            lambda: control.get("default", "iris").status["modelStatus"].get("lastFailureInfo") is not None
        )
        assert list(sink.arms().values()) == [(100, 1)]  # still the first revision
        conditions = control.get("default", "iris").status["conditions"]
        latest = next(c for c in conditions if c["type"] == "LatestDeploymentReady")
        assert latest["status"] == "False" and latest["message"] == "model failed to load"
    finally:
        await control.shutdown()


async def test_state_persists_and_a_restart_resumes(tmp_path: Path, models: tuple[Path, Path]) -> None:
    v1, _ = models
    sink = Sink()
    control = _plane(tmp_path, sink)
    await control.start()
    await control.apply(parse(_doc(v1)), _doc(v1))
    await _until(lambda: list(sink.arms().values()) == [(100, 1)])
    revision = next(iter(sink.arms()))
    await control.shutdown()
    again, sink2 = None, Sink()
    again = _plane(tmp_path, sink2)
    await again.start()
    try:
        await _until(lambda: sink2.arms() == {revision: (100, 1)})
    finally:
        await again.shutdown()


async def test_condition_transition_times_survive_a_restart(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    """The status is persisted with the rollout record: after a restart a condition whose status did not flip
    (a revision that fails again) keeps the lastTransitionTime it had."""
    v1, _ = models
    FakeReplica.failing.add(str(v1))
    control = _plane(tmp_path, Sink())
    await control.start()
    await control.apply(parse(_doc(v1)), _doc(v1))
    failed = lambda plane: "lastFailureInfo" in plane.get("default", "iris").status["modelStatus"]  # noqa: E731
    await _until(lambda: failed(control))
    await control.shutdown()
    path = tmp_path / "state" / "services" / "default__iris.json"
    record = json.loads(path.read_text())
    assert {c["type"] for c in record["status"]["conditions"]} >= {"IngressReady", "Ready"}
    for cond in record["status"]["conditions"]:
        cond["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(record))
    again = _plane(tmp_path, Sink())
    await again.start()
    try:
        await _until(lambda: failed(again))
        conditions = again.get("default", "iris").status["conditions"]
        assert {c["status"] for c in conditions} == {"False"}
        assert {c["lastTransitionTime"] for c in conditions} == {"2020-01-01T00:00:00Z"}
    finally:
        await again.shutdown()


async def test_transformer_follows_its_predictor_to_a_new_port(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    v1, _ = models
    sink = Sink()
    control = _plane(tmp_path, sink)
    await control.start()
    try:
        await control.apply(parse(_doc(v1, transformer=True)), _doc(v1, transformer=True))
        await _until(lambda: list(sink.arms().values()) == [(100, 1)])
        predictor = next(r for r in FakeReplica.instances if "-predictor-" in r.name)
        transformer = next(r for r in FakeReplica.instances if "-transformer-" in r.name)
        args = transformer.spec.args
        assert args[args.index("--predictor-url") + 1] == predictor.url
        predictor.restart_on_new_port()
        await _until(lambda: transformer.stopped)
        fresh = [r for r in FakeReplica.instances if "-transformer-" in r.name and not r.stopped]
        assert (
            len(fresh) == 1
            and fresh[0].spec.args[fresh[0].spec.args.index("--predictor-url") + 1] == predictor.url
        )
        await _until(
            lambda: sink.tables[-1].services[("default", "iris")].arms[0].endpoints == (fresh[0].url,)
        )
    finally:
        await control.shutdown()


async def test_one_revision_name_in_two_namespaces_keeps_two_log_files(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    v1, _ = models
    sink = Sink()
    control = _plane(tmp_path, sink)
    await control.start()
    try:
        for namespace in ("default", "ml"):
            doc = _doc(v1)
            doc["metadata"]["namespace"] = namespace
            await control.apply(parse(doc), doc)
        await _until(lambda: len(FakeReplica.instances) == 2)
        first, second = FakeReplica.instances
        assert first.name == second.name  # same spec, same revision name
        logs = tmp_path / "state" / "logs"
        assert {first.log_dir, second.log_dir} == {logs, logs / "ml"}
    finally:
        await control.shutdown()


async def test_kserves_stop_annotation_stops_and_resumes_the_same_revision(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    """`serving.kserve.io/stop: "true"`: no replica runs, the router answers 503 saying why (no activator hold),
    the status says Stopped; "false" brings the same revision back."""
    v1, _ = models
    sink = Sink()
    control = _plane(tmp_path, sink)
    await control.start()
    try:
        doc = _doc(v1)
        await control.apply(parse(doc), doc)
        await _until(lambda: list(sink.arms().values()) == [(100, 1)])
        (revision,) = sink.arms()
        stopped = {**doc, "metadata": {"name": "iris", "annotations": {"serving.kserve.io/stop": "true"}}}
        await control.apply(parse(stopped), stopped)
        await _until(lambda: all(r.stopped for r in FakeReplica.instances))
        route = sink.tables[-1].services[("default", "iris")]
        assert not route.activator and route.weighted == () and "serving.kserve.io/stop" in route.failure
        conditions = {c["type"]: c for c in control.get("default", "iris").status["conditions"]}
        assert conditions["Stopped"]["status"] == "True"
        assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Stopped")
        resumed = {**doc, "metadata": {"name": "iris", "annotations": {"serving.kserve.io/stop": "false"}}}
        await control.apply(parse(resumed), resumed)
        await _until(lambda: sink.arms() == {revision: (100, 1)})
        conditions = {c["type"]: c for c in control.get("default", "iris").status["conditions"]}
        assert conditions["Ready"]["status"] == "True" and "Stopped" not in conditions
    finally:
        await control.shutdown()


async def test_the_restored_services_are_said_before_any_of_them_starts(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    """`serving up`'s first line names what it restored (README): said before their replicas start."""
    v1, _ = models
    first = _plane(tmp_path, Sink())
    await first.start()
    try:
        await first.apply(parse(_doc(v1)), _doc(v1))
        await _until(lambda: len(FakeReplica.instances) == 1)
    finally:
        await first.shutdown()
    FakeReplica.instances.clear()
    said: list[tuple[list[tuple[str, str]], int]] = []
    again = _plane(tmp_path, Sink())
    await again.start(lambda keys: said.append((keys, len(FakeReplica.instances))))
    try:
        assert said == [([("default", "iris")], 0)]  # no replica had started yet
        await _until(lambda: len(FakeReplica.instances) == 1)
    finally:
        await again.shutdown()
