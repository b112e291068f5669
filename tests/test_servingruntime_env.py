"""A ServingRuntime's `containers[].env` reaches the model server, under `serving up` and in `serving render`,
merged with the predictor's own `env` as Kubernetes merges KServe's runtime and predictor containers: the
predictor wins a name both set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from serving.commands.render import render
from serving.control.kubernetes.render import RenderSettings
from serving.control.local.control_plane import LocalControlPlane
from serving.control.local.state import StateStore
from serving.control.process_args import local_env, merge_env
from serving.spec import EnvVar, parse
from tests.test_control_local import FakeReplica, Sink, _until

RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "envrt", "namespace": "default"},
    "spec": {
        "supportedModelFormats": [{"name": "sklearn", "autoSelect": False}],
        "protocolVersions": ["v1", "v2"],
        "containers": [
            {
                "name": "kserve-container",
                "image": "x",
                "args": ["--predict-proba"],
                "env": [
                    {"name": "RT_FACTOR", "value": "10"},
                    {"name": "SHARED", "value": "from-runtime"},
                    {"name": "MODEL", "value": "{{.Name}}-model"},
                ],
            }
        ],
    },
}


def _isvc(storage: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "rt-env", "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "runtime": "envrt",
                    "storageUri": storage,
                    "env": [{"name": "SHARED", "value": "from-predictor"}],
                }
            }
        },
    }


def test_the_predictor_wins_a_name_both_set() -> None:
    runtime = (EnvVar(name="A", value="1"), EnvVar(name="B", value="runtime"))
    own = (EnvVar(name="B", value="predictor"), EnvVar(name="C", value="3"))
    assert local_env(merge_env(runtime, own)) == {"A": "1", "B": "predictor", "C": "3"}
    assert [e.name for e in merge_env(runtime, own)] == ["A", "B", "C"]


@pytest.mark.asyncio
async def test_serving_up_starts_the_runtime_processes_with_its_env(tmp_path: Path) -> None:
    model = tmp_path / "iris"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"")
    FakeReplica.instances.clear()
    plane = LocalControlPlane(StateStore(tmp_path / "state"), Sink(), replica_factory=FakeReplica)
    await plane.start()
    try:
        await plane.apply_runtimes([RUNTIME])
        await plane.apply(parse(_isvc(str(model))), _isvc(str(model)))
        await _until(lambda: bool(FakeReplica.instances))
        env = FakeReplica.instances[0].spec.env
        assert env == {"RT_FACTOR": "10", "SHARED": "from-predictor", "MODEL": "rt-env-model"}, env
    finally:
        await plane.shutdown()


def test_serving_render_puts_the_runtime_env_in_the_container() -> None:
    objects = render([dict(RUNTIME), _isvc("s3://models/iris")], RenderSettings())
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "kserve-container"
    )
    assert container["env"] == [
        {"name": "RT_FACTOR", "value": "10"},
        {"name": "MODEL", "value": "rt-env-model"},
        {"name": "SHARED", "value": "from-predictor"},
    ]
    assert "--predict-proba" in container["args"]


def test_the_operator_renders_with_the_runtime_env_too() -> None:
    from serving.control.kubernetes.runtimes import ClusterRuntimes
    from serving.revision import Revision

    runtimes = ClusterRuntimes()
    runtimes.event(dict(RUNTIME), "ADDED")
    revision = Revision.from_spec(parse(_isvc("s3://models/iris")))
    flags, failures, envs = runtimes.select_all([revision])
    assert not failures and "--predict-proba" in flags[revision.name]
    assert {e.name: e.value for e in envs[revision.name]}["RT_FACTOR"] == "10"
