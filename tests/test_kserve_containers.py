"""KServe's documented container forms, as KServe runs them (audit of the "custom model" and "custom transformer"
docs): a custom predictor container is rendered as written and refused by `serving up` naming the field; a
custom transformer's own `--model_name` is kept (KServe's IncludesArg) and its predictor serves that name, locally
too, reached by Host; a transformer whose predictor lacks its model fails its revision with the reason; KServe's
model-server flags in `model.args` are translated or refused at apply, and the user's flags win."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from serving.cli import build_parser
from serving.commands.render import render
from serving.control.kubernetes.documents import cluster_warnings, read_converted
from serving.control.kubernetes.render import RenderSettings
from serving.control.local.runner import RevisionRunner
from serving.control.process_args import predictor_args, predictor_model_name
from serving.revision import Revision
from serving.spec import SpecError, parse
from serving.transformers.base import Transformer
from serving.transformers.predictor_client import PredictorClient
from tests.inprocess import run_cli, serving_inprocess
from tests.support import train_iris_sklearn
from tests.up_support import cli, serving_up

SETTINGS = RenderSettings(image="registry.example/serving:test")
RECORD = {"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "petal_width": 1.4}
# KServe's "custom model" example, as its docs write it.
CUSTOM_MODEL = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: custom-model
spec:
  predictor:
    containers:
      - name: kserve-container
        image: registry.example/custom-model:v1
        command: ["python", "-m", "model"]
        args: ["--model_name", "custom-model"]
        env: [{name: MODEL_FLAVOUR, value: alexnet}]
        ports: [{containerPort: 8085, name: http1, protocol: TCP}]
        resources: {requests: {cpu: "1", memory: 2Gi}, limits: {memory: 2Gi}}
"""


def _doc(predictor: dict[str, Any], transformer: dict[str, Any] | None = None, name: str = "iris") -> dict:
    spec = {"predictor": predictor} | ({"transformer": transformer} if transformer else {})
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }


def _by_kind(objects: list[dict]) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['labels']['serving.dev/component']}": o for o in objects[1:]}


def _pod(objects: dict[str, dict], component: str = "predictor") -> dict:
    return objects[f"Deployment/{component}"]["spec"]["template"]["spec"]


def _validate(objects: dict[str, dict]) -> None:
    for obj in objects.values():
        for version in ("1.29", "1.37"):
            kubernetes_validate.validate(obj, version, strict=True)


# -- 1. a custom predictor container -----------------------------------------------------------------------
def test_custom_predictor_renders_the_users_container(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(CUSTOM_MODEL)
    objects = _by_kind(render(read_converted([path], "ml"), SETTINGS))
    _validate(objects)
    pod = _pod(objects)
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/custom-model:v1"  # not ours, not `serving serve`
    assert container["command"] == ["python", "-m", "model"]
    assert container["args"] == ["--model_name", "custom-model"]
    assert container["env"] == [{"name": "MODEL_FLAVOUR", "value": "alexnet"}]
    assert container["ports"] == [{"containerPort": 8085, "name": "http", "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert container["readinessProbe"]["tcpSocket"]["port"] == "http"
    assert "initContainers" not in pod and "volumeMounts" not in container  # no STORAGE_URI: no storage
    assert "runAsUser" not in pod["securityContext"]  # its image decides who it runs as
    service = objects["Service/predictor"]["spec"]["ports"]
    assert [(p["name"], p["targetPort"]) for p in service] == [("http", "http")]  # REST only: no gRPC port

    # KServe's STORAGE_URI env triggers the storage-initializer, mounted at /mnt/models in its container.
    doc = yaml.safe_load(CUSTOM_MODEL)
    doc["spec"]["predictor"]["containers"][0]["env"].append({"name": "STORAGE_URI", "value": "s3://bucket/m"})
    objects = _by_kind(render([doc], SETTINGS))
    _validate(objects)
    pod = _pod(objects)
    assert pod["initContainers"][0]["args"][:4] == ["storage", "pull", "s3://bucket/m", "/mnt/models"]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "model", "mountPath": "/mnt/models", "readOnly": True}
    ]


def test_render_command_prints_the_custom_container_and_warns_of_our_flags(tmp_path: Path) -> None:
    doc = yaml.safe_load(CUSTOM_MODEL)
    doc["spec"]["predictor"]["batcher"] = {}
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_cli("render", "-f", str(path))
    assert result.returncode == 0, result.stderr
    deployment = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "Deployment"][0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/custom-model:v1" and "serve" not in container["args"]
    assert "spec.predictor.batcher: no effect on a custom predictor container" in result.stderr


def test_custom_predictor_spec_errors_name_the_field() -> None:
    with pytest.raises(SpecError, match=r"spec\.predictor\.containers\[0\]\.image: .*needs the image"):
        parse(_doc({"containers": [{"name": "kserve-container", "args": ["x"]}]}))
    both = {
        "sklearn": {"storageUri": "pvc://s/iris"},
        "containers": [{"name": "kserve-container", "image": "i"}],
    }
    with pytest.raises(SpecError, match=r"containers\[0\]: a container named kserve-container .* not both"):
        parse(_doc(both))
    in_process = {
        "annotations": {"serving.dev/placement": "in-process"},
        "containers": [{"args": ["transform"]}],
    }
    with pytest.raises(SpecError, match=r"spec\.transformer\.annotations\.serving\.dev/placement: .*custom"):
        parse(_doc(yaml.safe_load(CUSTOM_MODEL)["spec"]["predictor"], in_process))


# -- 2a. a custom transformer's own --model_name (KServe's IncludesArg) -------------------------------------
@pytest.mark.parametrize(
    "given",
    [["--model_name", "mnist"], ["--model_name=mnist"]],
    ids=["separate", "equals"],
)
def test_custom_transformer_keeps_its_model_name_and_the_predictor_serves_it(given: list[str]) -> None:
    transformer = {"containers": [{"name": "kserve-container", "image": "me/tx:1", "args": given}]}
    doc = _doc({"sklearn": {"storageUri": "pvc://store/iris"}}, transformer)
    objects = _by_kind(render([doc], SETTINGS))
    _validate(objects)
    args = _pod(objects, "transformer")["containers"][0]["args"]
    assert args[: len(given)] == given and args.count("--model_name") == given.count("--model_name")
    assert "iris" not in args  # the InferenceService's name is not appended over the user's
    served = _pod(objects)["containers"][0]["args"]
    assert served[served.index("--name") + 1] == "mnist"  # what the transformer calls on its predictor


def test_a_model_name_in_a_custom_transformers_command_is_followed_by_kserves() -> None:
    """KServe's IncludesArg looks at `args` only: it appends `--model_name <isvc>`, which the process reads last."""
    command = ["python", "-m", "tx", "--model_name", "mnist"]
    transformer = {"containers": [{"name": "kserve-container", "image": "me/tx:1", "command": command}]}
    objects = _by_kind(render([_doc({"sklearn": {"storageUri": "pvc://s/i"}}, transformer)], SETTINGS))
    assert _pod(objects, "transformer")["containers"][0]["args"][:2] == ["--model_name", "iris"]
    served = _pod(objects)["containers"][0]["args"]
    assert served[served.index("--name") + 1] == "iris"


def test_custom_transformer_own_host_and_port_are_kept() -> None:
    args = ["--predictor_host", "elsewhere:80", "--http_port", "9000"]
    transformer = {"containers": [{"name": "kserve-container", "image": "me/tx:1", "args": args}]}
    objects = _by_kind(render([_doc({"sklearn": {"storageUri": "pvc://s/i"}}, transformer)], SETTINGS))
    container = _pod(objects, "transformer")["containers"][0]
    assert container["args"] == [*args, "--model_name", "iris"]
    assert container["ports"][0]["containerPort"] == 9000  # the Service reaches it where it listens


# -- 2b/1. locally: --model_name mnist works end to end (by Host), a predictor without the model fails with the
# reason, and a custom predictor container is refused naming the field --------------------------------------
class CallsAnotherModel(Transformer):
    """A user's transformer that calls a model its predictor does not serve."""

    async def start(self) -> None:
        c = self.config
        self.predictor = PredictorClient(c.predictor_url, "not-there", c.protocol, c.timeout_s)


def _transformer(*args: str) -> dict[str, Any]:
    base = ["serving", "transform", "--feature-names", "sepal_length,sepal_width,petal_length,petal_width"]
    return {
        "containers": [
            {"name": "kserve-container", "args": [*base, "--labels", "setosa,versicolor,virginica", *args]}
        ]
    }


def test_local_model_name_host_routing_failure_reason_and_custom_refusal(tmp_path: Path) -> None:
    iris = train_iris_sklearn(tmp_path / "iris")
    mnist = _doc({"sklearn": {"storageUri": str(iris)}}, _transformer("--model_name", "mnist"), "tx")
    mnist["metadata"]["namespace"] = "default"
    broken = _doc(
        {"sklearn": {"storageUri": str(iris)}},
        _transformer("--transformer", "tests.test_kserve_containers:CallsAnotherModel"),
        "broken",
    )
    broken["metadata"]["namespace"] = "default"
    (tmp_path / "mnist.yaml").write_text(yaml.safe_dump(mnist))
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    (tmp_path / "custom.yaml").write_text(CUSTOM_MODEL)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        cli(server, state, "apply", "-f", str(tmp_path / "mnist.yaml"), "--wait=60s")
        host = {"host": "tx.default.example.com"}
        r = client.post("/v1/models/mnist:predict", json={"instances": [RECORD]}, headers=host)
        assert r.status_code == 200 and r.json() == {"predictions": ["versicolor"]}, r.text
        v2 = client.post(
            "/v2/models/mnist/infer",
            headers=host,
            json={
                "inputs": [
                    {"name": "records", "shape": [1], "datatype": "BYTES", "data": [json.dumps(RECORD)]}
                ]
            },
        )
        assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == ["versicolor"], v2.text

        # A transformer whose predictor has no such model: the revision fails with the reason, and
        # `apply --wait` says it instead of waiting out its timeout.
        waited = cli(server, state, "apply", "-f", str(tmp_path / "broken.yaml"), "--wait=20s", check=False)
        assert waited.returncode == 1, waited.stdout + waited.stderr
        assert "has no model 'not-there'" in waited.stderr + waited.stdout
        status = json.loads(cli(server, state, "get", "broken", "-o", "json").stdout)["status"]
        failure = status["modelStatus"]["lastFailureInfo"]["message"]
        assert "has no model 'not-there'" in failure and "404" in failure, failure

        refused = cli(server, state, "apply", "-f", str(tmp_path / "custom.yaml"), check=False)
        assert refused.returncode != 0
        said = refused.stderr + refused.stdout
        assert "spec.predictor.containers: a custom predictor container" in said
        assert "Kubernetes only" in said and "model.runtime: module:Class" in said
        assert "custom-model" not in cli(server, state, "get").stdout  # nothing recorded


def test_a_stored_custom_predictor_fails_its_revision_with_the_same_reason(tmp_path: Path) -> None:
    """`serving up -f` (or a state directory) does not pass through the control API's refusal: the runner says it."""
    revision = Revision.from_spec(parse(yaml.safe_load(CUSTOM_MODEL)))
    runner = RevisionRunner(revision, tmp_path, tmp_path, lambda: None)
    assert runner.scale(1) == [] and runner.predictors == []
    assert runner.error.startswith("spec.predictor.containers: a custom predictor container")


# -- 3. KServe's model-server flags in model.args ------------------------------------------------------------
def _model(*args: str) -> dict[str, Any]:
    return {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://store/iris", "args": list(args)}
    }


def test_kserve_flags_are_translated_and_the_process_parses_them(tmp_path: Path) -> None:
    isvc = parse(_doc(_model("--model_name=flowers", "--workers", "1", "--http_port", "8080")))
    revision = Revision.from_spec(isvc)
    argv = predictor_args(revision, tmp_path)
    assert predictor_model_name(revision) == "flowers" and argv[argv.index("--name") + 1] == "flowers"
    assert "--http_port" not in argv and "--model_name=flowers" not in argv
    parsed = build_parser(argv).parse_args(argv)  # the real `serving serve` parser: nothing unrecognized
    assert (parsed.name, parsed.workers) == ("flowers", 1)
    assert isvc.warnings() == [
        "spec.predictor.model.args: --http_port is dropped: the backend sets the ports (8080 on Kubernetes)"
    ]
    assert cluster_warnings(_doc(_model("--http_port=9000"))) == [
        "spec.predictor.model.args: --http_port is dropped: the backend sets the ports (8080 on Kubernetes)"
    ]


def test_translated_model_name_is_served_by_a_real_server(model_repo: Path) -> None:
    revision = Revision.from_spec(parse(_doc(_model("--model_name", "flowers"))))
    with serving_inprocess(predictor_args(revision, model_repo / "sklearn-iris")) as server:
        assert httpx.get(f"{server.url}/v1/models/flowers", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--enable_docs_url=True"], "--enable_docs_url=True"), (["--max_threads", "4"], "--max_threads 4")],
)
def test_unknown_flags_are_refused_at_apply_naming_them(args: list[str], named: str) -> None:
    with pytest.raises(SpecError, match=rf"^spec\.predictor\.model\.args: unrecognized arguments: {named} "):
        parse(_doc(_model(*args)))
    with pytest.raises(SpecError, match=r"^spec\.predictor\.sklearn\.args: argument --workers: invalid int"):
        parse(_doc({"sklearn": {"storageUri": "pvc://s/i", "args": ["--workers", "many"]}}))


def test_the_users_runtime_wins_over_the_selected_runtimes() -> None:
    revision = Revision.from_spec(parse(_doc(_model("--runtime", "xgboost"))))
    selected = ["--runtime", "sklearn"]  # what the built-in kserve-sklearnserver adds
    argv = predictor_args(revision, "/m", selected)
    assert build_parser(argv).parse_args(argv).runtime == "xgboost"
    plain = predictor_args(Revision.from_spec(parse(_doc(_model()))), "/m", selected)
    assert plain.count("--runtime") == 1  # the selected runtime's replaces the format's (not both in `ps`)
    rendered = _pod(_by_kind(render([_doc(_model("--runtime", "xgboost"))], SETTINGS)))["containers"][0]
    assert build_parser(rendered["args"]).parse_args(rendered["args"]).runtime == "xgboost"


def test_the_services_own_fields_win_over_the_selected_runtimes_flags() -> None:
    """Precedence runtime < InferenceService < model.args: a shared ServingRuntime's `--max-batch-size 16` used
    to override the service's own `batcher.maxBatchSize: 32` (its flags came after), with no word."""
    doc = _doc({**_model(), "batcher": {"maxBatchSize": 32, "maxLatency": 500}, "timeout": 7})
    revision = Revision.from_spec(parse(doc))
    selected = ["--runtime", "sklearn", "--max-batch-size", "16", "--request-timeout", "99"]
    parsed = build_parser(argv := predictor_args(revision, "/m", selected)).parse_args(argv)
    assert (parsed.max_batch_size, parsed.max_latency_ms, parsed.request_timeout) == (32, 500, 7.0)
    doc = _doc(
        {**_model("--max-batch-size", "4"), "batcher": {"maxBatchSize": 32}}
    )  # the user's own args win
    argv = predictor_args(Revision.from_spec(parse(doc)), "/m", selected)
    assert build_parser(argv).parse_args(argv).max_batch_size == 4


def test_a_predictor_name_that_differs_from_the_transformers_is_refused() -> None:
    doc = _doc(_model("--model_name", "iris"), _transformer("--model_name", "mnist"))
    with pytest.raises(
        SpecError, match=r"spec\.predictor\.model\.args: .*'iris', but the transformer calls 'mnist'"
    ):
        parse(doc)
