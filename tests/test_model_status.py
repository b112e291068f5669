"""`status.modelStatus` as KServe's controller writes it (UpdateModelRevisionStates / UpdateModelTransitionStatus):
no supporting runtime is InvalidSpec / FailedToLoad with reason NoSupportingRuntime (or RuntimeNotRecognized,
RuntimeDisabled); a storage or load failure is BlockedByFailedLoad / FailedToLoad with ModelLoadFailed; a
revision still coming is InProgress / Pending; a ready one UpToDate / Loaded. Both backends share `plan`."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.control.reconcile import Observed, plan
from serving.revision import Revision
from serving.servingruntime import NO_RUNTIME
from serving.spec import load_documents, parse
from tests.test_control_local import FakeReplica, Sink, _until

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    sklearn: {storageUri: /m/v1}
"""


def _model_status(observed: Observed) -> dict:
    isvc = load_documents(ISVC)[0]
    return plan(isvc, None, observed).status["modelStatus"]


def _name() -> str:
    return Revision.from_spec(load_documents(ISVC)[0]).name


def test_no_supporting_runtime_is_an_invalid_spec() -> None:
    name = _name()
    observed = Observed(
        failed={name: f"spec.predictor.model.runtime: {NO_RUNTIME}"}, no_runtime={name: NO_RUNTIME}
    )
    assert _model_status(observed) == {
        "transitionStatus": "InvalidSpec",
        "states": {"activeModelState": "Pending", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": "NoSupportingRuntime", "message": NO_RUNTIME},
    }
    for message, reason in (
        ("No ServingRuntimes or ClusterServingRuntimes with the name: x", "RuntimeNotRecognized"),
        ("Specified runtime x is disabled", "RuntimeDisabled"),
    ):
        status = _model_status(Observed(failed={name: message}, no_runtime={name: message}))
        assert status["lastFailureInfo"] == {"reason": reason, "message": message}


def test_a_storage_or_load_failure_is_failed_to_load() -> None:
    why = "spec.predictor.model.storageUri: s3://models/doesnotexist: no such bucket, key or prefix"
    assert _model_status(Observed(failed={_name(): why})) == {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": "Pending", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": why},
    }


def test_in_progress_is_pending_and_ready_is_loaded() -> None:
    assert _model_status(Observed()) == {
        "transitionStatus": "InProgress",
        "states": {"activeModelState": "Pending", "targetModelState": "Pending"},
    }
    assert _model_status(Observed(ready=frozenset({_name()}))) == {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
    }


@pytest.mark.asyncio
async def test_serving_up_reports_kserves_model_status(tmp_path: Path) -> None:
    from serving.control.local.control_plane import LocalControlPlane
    from serving.control.local.state import StateStore

    def doc(name: str, uri: str, version: str | None = None) -> dict:
        model_format = {"name": "sklearn", **({"version": version} if version else {})}
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {"predictor": {"model": {"modelFormat": model_format, "storageUri": uri}}},
        }

    plane = LocalControlPlane(StateStore(tmp_path / "state"), Sink(), replica_factory=FakeReplica)
    await plane.start()
    try:
        for d in (doc("v9", str(tmp_path), "9"), doc("gone", str(tmp_path / "gone"))):
            await plane.apply(parse(d), d)

        def model_status(name: str) -> dict:
            return plane.services[("default", name)].status.get("modelStatus", {})

        await _until(
            lambda: "lastFailureInfo" in model_status("v9") and "lastFailureInfo" in model_status("gone")
        )
        v9, gone = model_status("v9"), model_status("gone")
        assert v9["transitionStatus"] == "InvalidSpec" and v9["states"]["targetModelState"] == "FailedToLoad"
        assert v9["lastFailureInfo"] == {"reason": "NoSupportingRuntime", "message": NO_RUNTIME}
        conditions = plane.services[("default", "v9")].status["conditions"]
        assert conditions[-1]["message"] == f"spec.predictor.model.runtime: {NO_RUNTIME}", (
            "the field path stays"
        )
        assert gone["transitionStatus"] == "BlockedByFailedLoad"
        assert gone["states"]["targetModelState"] == "FailedToLoad"
        assert gone["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    finally:
        await plane.shutdown()
