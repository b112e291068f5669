"""The local control plane retries what KServe's controller and kubelet retry: a revision no ServingRuntime
served is selected again when runtimes change; a storage fetch that failed (KServe's storage-initializer in
CrashLoopBackOff) and a downloaded model that failed to load start again after an exponential backoff, the
status saying when. In-process: fake replicas (tests.test_control_local) and short backoffs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from serving.control.local.control_plane import RETRY_FIRST_S, RETRY_MAX_S, LocalControlPlane
from serving.control.local.state import StateStore
from serving.spec import parse
from serving.storage import StorageConfig
from serving.storage.leases import held
from tests.test_control_local import FakeReplica, Sink, _until
from tests.test_storage_http import ArtifactServer


def _isvc(name: str, uri: str, version: str | None = None) -> dict[str, Any]:
    model_format: dict[str, Any] = {"name": "sklearn"}
    if version is not None:
        model_format["version"] = version
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {"modelFormat": model_format, "storageUri": uri}}},
    }


def _runtime(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": version, "autoSelect": True}],
            "containers": [{"name": "kserve-container", "args": ["--predict-proba"]}],
        },
    }


def _plane(tmp_path: Path, **options: Any) -> LocalControlPlane:
    FakeReplica.instances.clear()
    FakeReplica.failing.clear()
    return LocalControlPlane(StateStore(tmp_path / "state"), Sink(), replica_factory=FakeReplica, **options)


@pytest.fixture
def artifacts() -> Iterator[ArtifactServer]:
    """A real http artifact server on loopback (tests.test_storage_http), for the fetches to read."""
    with ArtifactServer() as server:
        yield server


@asynccontextmanager
async def running(plane: LocalControlPlane) -> AsyncIterator[LocalControlPlane]:
    await plane.start()
    try:
        yield plane
    finally:
        await plane.shutdown()


def _message(plane: LocalControlPlane, name: str) -> str:
    status = plane.services[("default", name)].status
    return (status.get("modelStatus", {}).get("lastFailureInfo") or {}).get("message", "")


def _ready(plane: LocalControlPlane, name: str) -> bool:
    status = plane.services[("default", name)].status
    return status.get("conditions", [{}])[-1].get("status") == "True"


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_bytes(b"")
    return folder


@pytest.mark.asyncio
async def test_a_service_no_runtime_served_is_selected_again_when_a_runtime_is_applied(
    tmp_path: Path,
) -> None:
    model = _model(tmp_path / "iris")
    plane = _plane(tmp_path)
    await plane.start()
    try:
        await plane.apply(parse(_isvc("v9", str(model), "9")), _isvc("v9", str(model), "9"))
        await _until(lambda: "No runtime found" in _message(plane, "v9"))
        assert "retrying" not in _message(plane, "v9"), "selection waits for a runtime, not for a clock"
        await plane.apply_runtimes([_runtime("sk9", "9")])
        await _until(lambda: _ready(plane, "v9"))
        runner = next(iter(plane.runners.values()))
        assert (
            runner.runtime is not None
            and runner.runtime.name == "sk9"
            and "--predict-proba" in FakeReplica.instances[-1].spec.args
        )
    finally:
        await plane.shutdown()


@pytest.mark.asyncio
async def test_a_service_no_runtime_served_is_selected_again_when_a_runtime_is_deleted(
    tmp_path: Path,
) -> None:
    """A namespace runtime named like the built-in one shadows it; deleted, the built-in one serves."""
    model = _model(tmp_path / "iris")
    plane = _plane(tmp_path)
    await plane.start()
    try:
        shadow = _runtime("kserve-sklearnserver", "1")
        shadow["spec"]["supportedModelFormats"][0]["name"] = "xgboost"
        await plane.apply_runtimes([shadow])
        doc = _isvc("named", str(model))
        doc["spec"]["predictor"]["model"]["runtime"] = "kserve-sklearnserver"
        await plane.apply(parse(doc), doc)
        await _until(lambda: "does not support specified framework" in _message(plane, "named"))
        assert await plane.delete_runtime("ServingRuntime", "default", "kserve-sklearnserver") == []
        await _until(lambda: _ready(plane, "named"))
        runner = next(iter(plane.runners.values()))
        assert runner.runtime is not None and runner.runtime.cluster_scoped
    finally:
        await plane.shutdown()


@pytest.mark.asyncio
async def test_a_missing_object_is_fetched_again_with_backoff_until_it_appears(
    tmp_path: Path, artifacts: ArtifactServer
) -> None:
    async with running(_plane(tmp_path, retry_first_s=0.05, retry_max_s=0.2)) as plane:
        url = f"{artifacts.url}/models/iris.joblib"
        await plane.apply(parse(_isvc("late", url)), _isvc("late", url))
        await _until(lambda: "retrying in 0.05 s" in _message(plane, "late"))
        message = _message(plane, "late")
        assert message.startswith("spec.predictor.model.storageUri: ") and "attempt 1 failed" in message
        assert re.search(r"at \d\d:\d\d:\d\d UTC\)$", message), message
        await _until(lambda: "attempt 4 failed; retrying in 0.2 s" in _message(plane, "late"))  # capped
        assert plane.services[("default", "late")].status["modelStatus"]["transitionStatus"] != "UpToDate"
        artifacts.put("/models/iris.joblib", b"model bytes")
        await _until(lambda: _ready(plane, "late"))
        assert _message(plane, "late") == "" and not plane._retries, "ready: the backoff is reset"
        assert artifacts.count("/models/iris.joblib", 404) >= 4


@pytest.mark.asyncio
async def test_an_object_over_the_download_limit_is_refused_once_not_downloaded_on_every_backoff(
    tmp_path: Path, artifacts: ArtifactServer
) -> None:
    """The audit saw 5 GETs of a 3 GiB object in 40 s, each streaming 2 GiB before the refusal. A size
    refusal is final, as an unsafe archive's is: one GET, no backoff, a status that says so; the same spec
    applied again (after the object was replaced) fetches again."""
    storage = StorageConfig(cache_dir=tmp_path / "state" / "cache", max_download_bytes=4096)
    async with running(_plane(tmp_path, storage=storage, retry_first_s=0.01)) as plane:
        artifacts.send_length = False  # no Content-Length: refused only once 4096 bytes have streamed
        url = artifacts.put("/huge/model.joblib", b"x" * 50_000)
        await plane.apply(parse(_isvc("huge", url)), _isvc("huge", url))
        await _until(lambda: "larger than the download limit" in _message(plane, "huge"))
        for _ in range(3):  # each pass would schedule (and, after 10 ms, start) a retry of a retryable one
            await plane.reconcile()
        message = _message(plane, "huge")
        assert message == (
            f"spec.predictor.model.storageUri: {url}: larger than the download limit of 4096 bytes "
            "(refused, not retried: apply the spec again once it is fixed)"
        ), message
        assert not plane._retries and artifacts.count("/huge/model.joblib") == 1
        artifacts.put("/huge/model.joblib", b"small enough")
        await plane.apply(parse(_isvc("huge", url)), _isvc("huge", url))
        await _until(lambda: _ready(plane, "huge"))


@pytest.mark.asyncio
async def test_a_local_path_that_appears_later_is_served(tmp_path: Path) -> None:
    plane = _plane(tmp_path, retry_first_s=0.05)
    await plane.start()
    try:
        path = tmp_path / "later"
        await plane.apply(parse(_isvc("later", str(path))), _isvc("later", str(path)))
        await _until(lambda: "retrying" in _message(plane, "later"))
        _model(path)
        await _until(lambda: _ready(plane, "later"))
    finally:
        await plane.shutdown()


@pytest.mark.asyncio
async def test_a_downloaded_model_that_fails_to_load_is_retried_with_backoff_not_in_a_hot_loop(
    tmp_path: Path, artifacts: ArtifactServer
) -> None:
    async with running(_plane(tmp_path, retry_first_s=0.1, retry_max_s=0.4)) as plane:
        url = artifacts.put("/models/bad.joblib", b"not a model")
        FakeReplica.failing.add(str(tmp_path / "state" / "cache"))  # a model from the download cache fails
        await plane.apply(parse(_isvc("bad", url)), _isvc("bad", url))
        await _until(lambda: "attempt 3 failed; retrying in 0.4 s" in _message(plane, "bad"))
        assert "model failed to load" in _message(plane, "bad")
        assert len(FakeReplica.instances) == 3, "one replica per attempt: backoff, not a hot loop"
        cached = next(iter(plane.runners.values())).model_dir
        assert held(cached) == 1, "each attempt gives back the cache lease of the one before"
        FakeReplica.failing.clear()  # fixed in the store
        await _until(lambda: _ready(plane, "bad"))
        local = _model(tmp_path / "local")
        FakeReplica.failing.add(str(local))
        await plane.apply(parse(_isvc("local", str(local))), _isvc("local", str(local)))
        await _until(lambda: _message(plane, "local") == "model failed to load")
        started = len(FakeReplica.instances)
        for _ in range(3):  # each pass would schedule a retry of a retryable failure
            await plane.reconcile()
        assert not plane._retries and len(FakeReplica.instances) == started, "a local model is not retried"
        assert _message(plane, "local") == "model failed to load"


@pytest.mark.asyncio
async def test_a_revision_that_served_then_fails_to_load_is_retried_and_the_same_spec_applied_retries_now(
    tmp_path: Path,
) -> None:
    """A revision that was ready once and then fails to load (a cold start from zero while its file was being
    replaced) is retried with backoff, as kubelet restarts a crashing Pod: it comes back once the file is
    good. A local model that never loaded is not retried on a clock, but applying the same spec again (after
    fixing its files) starts it again at once, as deleting its Pod would."""
    from serving.control.local.processes import ReplicaState

    plane = _plane(tmp_path, retry_first_s=0.05, retry_max_s=0.1)
    await plane.start()
    try:
        served = _model(tmp_path / "served")
        await plane.apply(parse(_isvc("cold", str(served))), _isvc("cold", str(served)))
        await _until(lambda: _ready(plane, "cold"))
        await plane.reconcile()  # it was seen ready
        FakeReplica.failing.add(str(served))  # the file is being replaced as the revision starts again
        (replica,) = [r for r in FakeReplica.instances if not r.stopped]
        replica.state, replica.error = ReplicaState.FAILED, "model failed to load"
        replica._on_change()
        await _until(lambda: "retrying in" in _message(plane, "cold"))
        FakeReplica.failing.clear()  # the new file is in place
        await _until(lambda: _ready(plane, "cold"))

        never = _model(tmp_path / "never")
        FakeReplica.failing.add(str(never))
        await plane.apply(parse(_isvc("never", str(never))), _isvc("never", str(never)))
        await _until(lambda: _message(plane, "never") == "model failed to load")
        for _ in range(3):
            await plane.reconcile()
        assert not any(key[1].startswith("never") for key in plane._retries), "never loaded: not on a clock"
        FakeReplica.failing.clear()  # fixed on disk, then the same spec applied again
        await plane.apply(parse(_isvc("never", str(never))), _isvc("never", str(never)))
        await _until(lambda: _ready(plane, "never"))
    finally:
        await plane.shutdown()


@pytest.mark.asyncio
async def test_an_object_applied_while_a_fetch_runs_makes_its_failure_go_again_at_once(
    tmp_path: Path,
) -> None:
    """A ServiceAccount and its Secret applied one after the other: the first restarts the failed fetch, the
    second lands while that fetch runs (it cannot see it). That fetch's failure goes again at once instead of
    waiting for its doubled backoff (64 s in the audit)."""
    plane = _plane(tmp_path, retry_first_s=30.0)
    await plane.start()
    try:
        path = tmp_path / "later"
        await plane.apply(parse(_isvc("later", str(path))), _isvc("later", str(path)))
        await _until(lambda: "retrying in 30 s" in _message(plane, "later"))
        ((key, runner),) = plane.runners.items()
        failed_step, runner.failed_step = runner.failed_step, ""
        runner.fetching = True  # as if its fetch were under way when the object came
        plane._refetch("default")
        assert plane.runners[key] is runner  # a fetch under way is not cut short
        runner.fetching, runner.failed_step = False, failed_step  # ... and failed: the object came too late
        _model(path)  # what the object healed
        await plane.reconcile()
        await _until(lambda: _ready(plane, "later"), timeout_s=5)  # long before the 30 s backoff
        assert plane.runners[key] is not runner
    finally:
        await plane.shutdown()


@pytest.mark.asyncio
async def test_a_revision_fetched_again_with_other_content_says_so(
    tmp_path: Path,
    artifacts: ArtifactServer,
    caplog,  # noqa: ANN001
) -> None:
    """A restart of `serving up` fetches each revision's model again: if its URI's object changed meanwhile,
    the revision (same name) now serves the new content, as a recreated KServe pod would. It is said, naming
    the revision, instead of happening silently; the same content again says nothing."""
    import logging

    caplog.set_level(logging.WARNING, logger="serving.local")
    url = artifacts.put("/chg/model.joblib", b"version one")
    # storageUris: its model folder is composed per process (named by it), the content is the same
    composed = _isvc("multi", url)
    composed["spec"]["predictor"] = {
        "model": {"modelFormat": {"name": "sklearn"}},
        "storageUris": [{"uri": url}, {"uri": url, "mountPath": "/mnt/models/extra"}],
    }
    async with running(_plane(tmp_path)) as plane:
        await plane.apply(parse(_isvc("chg", url)), _isvc("chg", url))
        await plane.apply(parse(composed), composed)
        await _until(lambda: _ready(plane, "chg") and _ready(plane, "multi"))
    for content, changed in ((b"version one", False), (b"version two", True)):
        artifacts.put("/chg/model.joblib", content)
        caplog.clear()
        async with running(_plane(tmp_path)) as plane:  # `serving up` restarted on the same state directory
            await _until(lambda plane=plane: _ready(plane, "chg") and _ready(plane, "multi"))
        said = sorted(
            r.getMessage().split(":")[0]
            for r in caplog.records
            if "changed since the revision first fetched" in r.getMessage()
        )
        assert len(said) == (2 if changed else 0), said


def test_the_default_backoff_is_one_second_doubling_to_five_minutes(tmp_path: Path) -> None:
    assert (RETRY_FIRST_S, RETRY_MAX_S) == (1.0, 300.0)
    plane = LocalControlPlane(StateStore(tmp_path / "state"), Sink())
    retry = None
    delays = []
    for _ in range(11):
        retry = plane._backoff(retry, object(), "gone")  # type: ignore[arg-type]
        delays.append(retry.delay_s)
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert retry is not None and retry.message.startswith("gone (attempt 11 failed; retrying in 300 s, at ")


def test_state_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """A spec kept in the state directory may hold credentials written in its storageUri (userinfo, a SAS
    query), as the Secrets and the token do: 0600, like them."""
    import stat

    from serving.control.local.state import write_atomic

    store = StateStore(tmp_path / "state")
    store.prepare()
    store.save("default", "leak", {"spec": {"storageUri": "http://alice:s3cret@127.0.0.1/m.joblib"}})
    (saved,) = (tmp_path / "state" / "services").glob("*.json")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    write_atomic(tmp_path / "state" / "other", b"x")
    assert stat.S_IMODE((tmp_path / "state" / "other").stat().st_mode) == 0o600


@pytest.mark.asyncio
async def test_the_runtime_a_revision_was_given_is_said(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """Nothing but the process's command line said which ServingRuntime a revision got (a restart may select
    another, README says): one line as the revision starts."""
    import logging

    caplog.set_level(logging.INFO, logger="serving.local")
    model = _model(tmp_path / "iris")
    plane = _plane(tmp_path)
    await plane.start()
    try:
        await plane.apply_runtimes([_runtime("sk9", "9")])
        await plane.apply(parse(_isvc("v9", str(model), "9")), _isvc("v9", str(model), "9"))
        await _until(lambda: _ready(plane, "v9"))
    finally:
        await plane.shutdown()
    said = [r.getMessage() for r in caplog.records if r.getMessage().endswith("ServingRuntime sk9 selected")]
    assert said and said[0].startswith("revision v9-"), said
