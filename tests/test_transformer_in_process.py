"""A transformer run inside its predictor's process (`serving.dev/placement: in-process`).

The answers themselves are checked against the separate placement in tests/test_transformers.py (every test
there runs on both). Here: what only the in-process placement has — one data plane exported with both stages,
readiness and errors of the local predictor — and how the spec turns into one process (local argv, Kubernetes
objects: the Kubernetes API server is the one part not run here, the objects are only rendered).
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import httpx
import pytest

from serving.control.kubernetes.render import entry_component, revision_objects
from serving.control.process_args import WITH_TRANSFORMER, local_env, predictor_args, predictor_env
from serving.demo_models import IRIS_FEATURES, IRIS_LABELS
from serving.revision import Revision
from serving.spec import SpecError, parse
from tests.inprocess import serving_inprocess
from tests.support import train_iris_sklearn, wait_until
from tests.test_k8s_render import SETTINGS, _validate

FEATURES = ",".join(IRIS_FEATURES)
TABULAR = f"transform --transformer tabular --feature-names {FEATURES} --labels {','.join(IRIS_LABELS)}"
RECORD = dict(zip(IRIS_FEATURES, [6.8, 2.8, 4.8, 1.4], strict=True))


def _serve(folder: Path, transformer: str) -> list[str]:
    return ["serve", "--model-dir", str(folder), "--name", "iris", "--with-transformer", transformer]


def test_both_stages_on_one_metrics_page_and_only_the_transformer_listed(tmp_path: Path) -> None:
    train_iris_sklearn(tmp_path / "iris")
    with serving_inprocess(_serve(tmp_path / "iris", TABULAR)) as server:
        r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [RECORD]})
        assert r.status_code == 200 and r.json() == {"predictions": ["versicolor"]}, r.text
        assert httpx.get(server.url + "/v1/models").json() == {"models": ["iris"]}
        assert httpx.get(server.url + "/v2/models/iris").json()["platform"] == "transformer"
        metrics = httpx.get(server.url + "/metrics").text
        counted = {
            line.split("{", 1)[1].split("}", 1)[0]
            for line in metrics.splitlines()
            if line.startswith("serving_requests_total{") and line.endswith(" 1.0")
        }
        assert 'code="200",model="iris",protocol="v1",version="1"' in counted, metrics
        assert 'code="200",model="iris-predictor",protocol="in-process",version="1"' in counted, metrics


def test_readiness_follows_the_local_predictor(tmp_path: Path) -> None:
    """A model that fails to load keeps the transformer unready, with the predictor's reason, and live."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"not a pickle")
    with serving_inprocess(_serve(broken, TABULAR), ready_path="/v2/health/live") as server:

        def said_why() -> bool:
            body = httpx.get(server.url + "/v2/models/iris/ready")
            return body.status_code == 503 and "failed to load" in body.text

        wait_until(said_why, 30, what="the transformer to report its predictor's load failure")
        assert httpx.get(server.url + "/v2/health/live").status_code == 200
        assert httpx.get(server.url + "/v2/health/ready").status_code == 503
        r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [RECORD]})
        assert r.status_code == 503 and "error" in r.json(), r.text


def test_the_predictors_errors_keep_their_status(tmp_path: Path) -> None:
    """The identity transformer passes two features on: the model's 400 reaches the client, and it serves on."""
    train_iris_sklearn(tmp_path / "iris")
    with serving_inprocess(_serve(tmp_path / "iris", "transform --transformer identity")) as server:
        r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]})
        assert r.status_code == 400, r.text
        assert "iris-predictor" in r.json()["error"] and "4" in r.json()["error"]
        r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
        assert r.status_code == 200 and r.json() == {"predictions": [1]}, r.text


def test_a_predictor_url_or_a_bad_flag_is_refused_before_serving(tmp_path: Path) -> None:
    from serving.errors import BadRequest
    from serving.transformers.in_process import transformer_dataplane

    for argv, says in (
        ("transform --predictor-url http://127.0.0.1:1", "drop --predictor-url"),
        (
            "transform --protocol v9",
            "--with-transformer: argument --protocol/--predictor_protocol: invalid choice: 'v9'",
        ),
        ("transform --no-such-flag", "unrecognized arguments: --no-such-flag"),
        ("predict --labels a", "expected `transform` and its flags"),
        ("", r"takes them\), got ''"),  # `--with-transformer ""` is not "no transformer"
    ):
        with pytest.raises(BadRequest, match=says):
            transformer_dataplane(None, shlex.split(argv), None, "iris")  # type: ignore[arg-type]


def _isvc(annotations: dict[str, str], args: list[str] | None = None, image: str | None = None) -> dict:
    container: dict = {
        "name": "kserve-container",
        "args": args or shlex.split("serving " + TABULAR),
        "env": [{"name": "TRANSFORMER_SETTING", "value": "on"}],
    }
    if image:
        container["image"] = image
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {
            "predictor": {"sklearn": {"storageUri": "pvc://store/iris"}},
            "transformer": {"annotations": annotations, "containers": [container]},
        },
    }


IN_PROCESS = {"serving.dev/placement": "in-process"}


def test_the_spec_makes_one_process_with_the_transformer_inside() -> None:
    revision = Revision.from_spec(parse(_isvc(IN_PROCESS)))
    separate = Revision.from_spec(parse(_isvc({})))
    assert revision.digest != separate.digest  # changing the placement rolls out a new revision
    written = Revision.from_spec(parse(_isvc({"serving.dev/placement": "separate"})))
    assert written.transformer_process is not None and written.in_process_transformer is None
    assert revision.transformer_process is None and separate.transformer_process is not None
    args = predictor_args(revision, "/models")
    transformer = shlex.split(args[args.index(WITH_TRANSFORMER) + 1])
    assert transformer[0] == "transform" and "--predictor-url" not in transformer
    assert transformer[transformer.index("--model-name") + 1] == "iris"
    assert WITH_TRANSFORMER not in predictor_args(separate, "/models")
    # The transformer's environment comes along into the one process (locally and in the pod).
    assert local_env(predictor_env(revision)) == {"TRANSFORMER_SETTING": "on"}
    assert local_env(predictor_env(separate)) == {}
    # Kubernetes: one Deployment (the predictor's, running both), and the route enters there.
    isvc = parse(_isvc(IN_PROCESS))
    objects = revision_objects(isvc, revision, 1, SETTINGS)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == [f"{revision.name}-predictor"]
    (container,) = deployments[0]["spec"]["template"]["spec"]["containers"]
    assert WITH_TRANSFORMER in container["args"]
    assert {"name": "TRANSFORMER_SETTING", "value": "on"} in container["env"]
    assert entry_component(revision) == "predictor"
    for obj in objects:
        _validate(obj)  # against the Kubernetes API schemas, as every rendered object


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (_isvc({"serving.dev/placement": "inproc"}), "'inproc' is unknown; use one of separate, in-process"),
        (_isvc({"serving.dev/placement": ""}), "'' is unknown; use one of separate, in-process"),
        (
            _isvc(IN_PROCESS, ["--feature", "x"], image="me/tx:1"),
            "a custom transformer image runs as its own",
        ),
        (
            {**_isvc({}), "metadata": {"name": "iris", "annotations": IN_PROCESS}},
            "set it on spec.transformer.annotations",
        ),
    ],
)
def test_a_wrong_placement_is_refused_naming_the_field(doc: dict, says: str) -> None:
    with pytest.raises(SpecError, match="serving.dev/placement") as raised:
        parse(doc)
    assert says in raised.value.message


def test_grpc_reaches_the_transformer_too(tmp_path: Path) -> None:
    """`--grpc-port` serves the same data plane: a gRPC client sends records and gets label names."""
    import logging
    import re

    import numpy as np
    import orjson
    import tritonclient.grpc as triton_grpc

    logging.getLogger("serving.grpc").setLevel(logging.INFO)  # the port line is INFO
    train_iris_sklearn(tmp_path / "iris")
    with serving_inprocess([*_serve(tmp_path / "iris", TABULAR), "--grpc-port", "0"]) as server:
        port = re.search(r"gRPC \(Open Inference Protocol\) listening on 127\.0\.0\.1:(\d+)", server.log())
        assert port, server.log()
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port.group(1)}")
        try:
            records = triton_grpc.InferInput("records", [1], "BYTES")
            records.set_data_from_numpy(np.array([orjson.dumps(RECORD)], dtype=object))
            answer = client.infer("iris", [records])
            (output,) = answer.get_response().outputs
            assert answer.as_numpy(output.name).tolist() == [b"versicolor"]
        finally:
            client.close()


def test_the_transformers_own_scaling_and_resources_are_warned_about() -> None:
    """In the predictor's process, the transformer has no replicas or container of its own: `apply` says so."""
    doc = _isvc(IN_PROCESS)
    doc["spec"]["transformer"]["minReplicas"] = 2
    doc["spec"]["transformer"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    warnings = [w for w in parse(doc).warnings() if "serving.dev/placement" in w]
    assert [w.split(":", 1)[0] for w in warnings] == [
        "spec.transformer.minReplicas",
        "spec.transformer.containers[].resources",
    ]
    separate = _isvc({})
    separate["spec"]["transformer"]["minReplicas"] = 2
    assert not [w for w in parse(separate).warnings() if "serving.dev/placement" in w]


def test_the_transformers_concurrency_limit_reaches_its_data_plane(tmp_path: Path) -> None:
    """spec.transformer.containerConcurrency -> `transform --max-concurrency N`: the transformer's own slots,
    in its process or inside the predictor's (over the predictor's limit there)."""
    from serving.commands.transform import limits_from_args, parse_in_process
    from serving.dataplane import DataPlane
    from serving.metrics import Metrics
    from serving.repository import ModelRepository
    from serving.settings import Limits, ModelSettings
    from serving.transformers.in_process import transformer_dataplane

    flags = ["transform", "--model-name", "iris"]
    assert limits_from_args(parse_in_process([*flags, "--max-concurrency", "3"])).max_concurrency == 3
    assert limits_from_args(parse_in_process(flags)).max_concurrency == 0, "unset: no limit"
    model_dir = train_iris_sklearn(tmp_path / "iris").parent
    predictor = DataPlane(
        ModelRepository([ModelSettings(name="iris-predictor", model_dir=model_dir)]),
        Limits(max_concurrency=8),
        Metrics(),
    )
    inside = transformer_dataplane(
        predictor, ["transform", "--max-concurrency", "2"], predictor.limits, "iris"
    )
    assert inside.limits.max_concurrency == 2 and predictor.limits.max_concurrency == 8
    assert (
        transformer_dataplane(predictor, ["transform"], predictor.limits, "iris").limits.max_concurrency == 8
    )


def test_the_transformers_batcher_batches_what_reaches_its_predictor(tmp_path: Path) -> None:
    """spec.transformer.batcher -> `transform --max-batch-size N --max-latency-ms M`: concurrent clients'
    records are transformed as one batch and reach the predictor as one call, each client getting its own."""
    train_iris_sklearn(tmp_path / "iris")
    batched = TABULAR + " --max-batch-size 16 --max-latency-ms 200"
    records = [dict(RECORD, sepal_length=4.0 + i / 10) for i in range(12)]
    with serving_inprocess(_serve(tmp_path / "iris", batched)) as server:

        async def clients() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url) as client:
                return await asyncio.gather(
                    *(client.post("/v1/models/iris:predict", json={"instances": [r]}) for r in records)
                )

        answers = asyncio.run(clients())
        alone = [httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [r]}) for r in records]
        assert [a.json() for a in answers] == [a.json() for a in alone], "each client its own answer"
        metrics = httpx.get(server.url + "/metrics").text
    batches = _sample(metrics, 'serving_batch_size_count{model="iris",version="1"}')
    rows = _sample(metrics, 'serving_batch_size_sum{model="iris",version="1"}')
    assert rows == 24 and batches < 24, (batches, rows)  # 12 together, then 12 one by one


def _sample(metrics: str, name: str) -> float:
    return float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith(name + " ")))
