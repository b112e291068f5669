"""Transformers on real processes: `serving serve` of a trained iris model behind `serving transform`.

Named feature records in (V1 objects, V2 BYTES JSON records, named columns) -> label names out, over V1
and V2 (tritonclient as the V2 client); bad records are 400s naming the feature; the example YAML runs
under `serving up` with transformer and predictor routed as a pair.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from serving.demo_models import IRIS_FEATURES, IRIS_LABELS, ensure_example_models
from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import REPO, train_iris_sklearn, wait_until
from tests.up_support import serving_up

FEATURES = ",".join(IRIS_FEATURES)
LABELS = ",".join(IRIS_LABELS)
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4], [7.7, 3.0, 6.1, 2.3]]  # one of each class
RECORDS = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in ROWS]


@pytest.fixture(scope="module")
def iris_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("iris") / "iris"
    train_iris_sklearn(folder)
    return folder


@pytest.fixture(scope="module")
def predictor(iris_folder: Path) -> Iterator[InProcessServer]:
    with serving_inprocess(["serve", "--model-dir", str(iris_folder), "--name", "iris"]) as server:
        yield server


@pytest.fixture(scope="module")
def expected(predictor: InProcessServer) -> list[str]:
    """What the predictor itself says for ROWS, as label names."""
    answer = httpx.post(predictor.url + "/v1/models/iris:predict", json={"instances": ROWS}).json()
    return [IRIS_LABELS[i] for i in answer["predictions"]]


PLACEMENTS = ["separate", "in-process"]
ARGS = {
    "v1": [
        "--model-name",
        "iris",
        "--transformer",
        "tabular",
        "--feature-names",
        FEATURES,
        "--labels",
        LABELS,
    ],
    # v2: started with the arguments KServe gives a custom transformer container
    "v2": ["--model_name", "iris", "--protocol", "v2", "--feature-names", FEATURES, "--labels", LABELS],
}


@contextmanager
def _transformer(
    protocol: str, placement: str, predictor: InProcessServer, folder: Path
) -> Iterator[InProcessServer]:
    """`transform ARGS` in front of the predictor server, or the same ARGS run inside the model's own process
    (`serve --with-transformer`): the tests below run against both placements."""
    args = ARGS[protocol]
    if placement == "in-process":
        argv = ["serve", "--model-dir", str(folder), "--name", "iris"]
        argv += ["--with-transformer", shlex.join(["transform", *args])]
    elif protocol == "v1":
        argv = ["transform", *args, "--predictor-url", predictor.url]
    else:
        argv = ["transform", *args, "--predictor_host", predictor.url.removeprefix("http://")]
    with serving_inprocess(argv) as server:
        yield server


def _placed(protocol: str) -> Any:
    """A module fixture: the `protocol` transformer, once per placement."""

    @pytest.fixture(scope="module", params=PLACEMENTS)
    def fixture(
        request: pytest.FixtureRequest, predictor: InProcessServer, iris_folder: Path
    ) -> Iterator[InProcessServer]:
        with _transformer(protocol, request.param, predictor, iris_folder) as server:
            yield server

    return fixture


v1_transformer = _placed("v1")
v2_transformer = _placed("v2")


@pytest.fixture(scope="module", params=[(p, pl) for p in ARGS for pl in PLACEMENTS], ids="-".join)
def any_transformer(
    request: pytest.FixtureRequest, predictor: InProcessServer, iris_folder: Path
) -> Iterator[InProcessServer]:
    with _transformer(*request.param, predictor, iris_folder) as server:
        yield server


def test_v1_records_in_label_names_out(v1_transformer: InProcessServer, expected: list[str]) -> None:
    assert expected == IRIS_LABELS  # the rows really are one of each class
    r = httpx.post(v1_transformer.url + "/v1/models/iris:predict", json={"instances": RECORDS})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}


def test_v1_named_columns_and_ordered_matrix(v1_transformer: InProcessServer, expected: list[str]) -> None:
    columns = {name: [row[i] for row in ROWS] for i, name in enumerate(IRIS_FEATURES)}
    r = httpx.post(v1_transformer.url + "/v1/models/iris:predict", json={"inputs": columns})
    assert r.status_code == 200 and r.json() == {"predictions": expected}, r.text
    r = httpx.post(v1_transformer.url + "/v1/models/iris:predict", json={"instances": ROWS})
    assert r.status_code == 200 and r.json() == {"predictions": expected}, r.text


def test_v2_records_in_v2_labels_out(any_transformer: InProcessServer, expected: list[str]) -> None:
    server = any_transformer
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_ready() and client.is_model_ready("iris")
        records = np.array([orjson.dumps(r) for r in RECORDS], dtype=object)
        tensor = triton.InferInput("records", [len(RECORDS)], "BYTES")
        tensor.set_data_from_numpy(records, binary_data=True)
        result = client.infer("iris", [tensor])
        (output,) = result.get_response()["outputs"]
        assert output["datatype"] == "BYTES" and output["shape"] == [3]
        assert [v.decode() for v in result.as_numpy(output["name"])] == expected
    finally:
        client.close()


def test_v2_named_columns(v2_transformer: InProcessServer, expected: list[str]) -> None:
    # One tensor per feature, deliberately in the wrong order: names decide, not positions.
    inputs = [
        {
            "name": name,
            "shape": [3],
            "datatype": "FP64",
            "data": [row[IRIS_FEATURES.index(name)] for row in ROWS],
        }
        for name in reversed(IRIS_FEATURES)
    ]
    r = httpx.post(v2_transformer.url + "/v2/models/iris/infer", json={"inputs": inputs, "id": "abc"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "abc" and body["model_name"] == "iris"
    assert body["outputs"][0]["data"] == expected


def test_missing_feature_is_a_400_naming_it(any_transformer: InProcessServer, expected: list[str]) -> None:
    server = any_transformer
    incomplete = [RECORDS[0], {k: v for k, v in RECORDS[1].items() if k != "petal_width"}]
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": incomplete})
    assert r.status_code == 400, r.text
    assert "record 1" in r.json()["error"] and "'petal_width'" in r.json()["error"]
    columns = [
        {"name": n, "shape": [1], "datatype": "FP64", "data": [1.0]}
        for n in IRIS_FEATURES
        if n != "sepal_width"
    ]
    r = httpx.post(server.url + "/v2/models/iris/infer", json={"inputs": columns})
    assert r.status_code == 400 and "'sepal_width'" in r.json()["error"], r.text
    wrong_type = [{**RECORDS[0], "sepal_length": "long"}]
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": wrong_type})
    assert r.status_code == 400 and "must be numbers" in r.json()["error"], r.text
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]})
    assert r.status_code == 400 and "[rows, 4]" in r.json()["error"], r.text
    # ... and it keeps serving.
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": RECORDS})
    assert r.status_code == 200 and r.json() == {"predictions": expected}, r.text


@pytest.fixture(scope="module", params=PLACEMENTS)
def identity_v2(
    request: pytest.FixtureRequest, predictor: InProcessServer, iris_folder: Path
) -> Iterator[InProcessServer]:
    args = ["--model-name", "iris", "--transformer", "identity", "--protocol", "v2"]
    if request.param == "in-process":
        argv = ["serve", "--model-dir", str(iris_folder), "--name", "iris"]
        argv += ["--with-transformer", shlex.join(["transform", *args])]
    else:
        argv = ["transform", *args, "--predictor-url", predictor.url]
    with serving_inprocess(argv) as server:
        yield server


def test_identity_forwards_the_requests_outputs_and_parameters(
    identity_v2: InProcessServer, predictor: InProcessServer
) -> None:
    """As KServe's transformer forwards its request whole: the outputs asked for and the request's parameters
    reach the predictor (the binary-extension flags stay with this hop: the answer is binary as asked)."""
    tensor = {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": sum(ROWS, [])}
    for body in (
        {"inputs": [tensor], "outputs": [{"name": "probabilities"}]},
        {"inputs": [tensor], "parameters": {"predict_proba": True}},
    ):
        through = httpx.post(identity_v2.url + "/v2/models/iris/infer", json=body)
        direct = httpx.post(predictor.url + "/v2/models/iris/infer", json=body)
        assert through.status_code == 200, through.text
        assert [(o["name"], o["data"]) for o in through.json()["outputs"]] == [
            (o["name"], o["data"]) for o in direct.json()["outputs"]
        ] and through.json()["outputs"][0]["name"] == "probabilities"
    client = triton.InferenceServerClient(identity_v2.url.removeprefix("http://"))
    row = triton.InferInput("input-0", [3, 4], "FP64")
    row.set_data_from_numpy(np.array(ROWS))
    result = client.infer(
        "iris", [row], outputs=[triton.InferRequestedOutput("probabilities", binary_data=True)]
    )
    assert result.as_numpy("probabilities").shape == (3, 3)


def test_transformer_is_one_data_plane(v1_transformer: InProcessServer) -> None:
    """Same app as a model server: 404 for an unknown model, V1 status, metrics counting its requests."""
    r = httpx.post(v1_transformer.url + "/v1/models/nope:predict", json={"instances": RECORDS})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    assert httpx.get(v1_transformer.url + "/v1/models/iris").json() == {"name": "iris", "ready": True}
    # Its own request to count (under pytest-xdist the module's other tests may run on another worker).
    assert (
        httpx.post(v1_transformer.url + "/v1/models/iris:predict", json={"instances": RECORDS}).status_code
        == 200
    )
    metrics = httpx.get(v1_transformer.url + "/metrics").text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("serving_requests_total{")
        and 'model="iris"' in line
        and 'code="200"' in line
        and 'protocol="v1"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1, metrics


@pytest.mark.parametrize("name", ["iris-transformer", "iris-transformer-in-process"])
def test_example_yaml_under_serving_up(tmp_path: Path, name: str) -> None:
    """examples/transformer/NAME.yaml as written: the router reaches the transformer, which calls the
    predictor of the same revision (over HTTP, or inside the predictor's process)."""
    ensure_example_models()
    example = REPO / "examples" / "transformer" / f"{name}.yaml"
    path = f"/v1/models/{name}:predict"
    with serving_up(tmp_path / "state", example) as up, up.client() as client:

        def answered() -> bool:
            return client.post(path, json={"instances": RECORDS}).status_code == 200

        wait_until(answered, 90, what="the example transformer to answer through the router")
        r = client.post(path, json={"instances": RECORDS})
        assert r.json() == {"predictions": IRIS_LABELS}
        assert r.headers["x-serving-revision"].startswith(f"{name}-")
        r = client.post(path, json={"instances": [{"sepal_length": 1}]})
        assert r.status_code == 400 and "'sepal_width'" in r.json()["error"], r.text
        metrics = client.get("/metrics").text
        # In-process, the predictor stage is counted as `<name>-predictor` by the same process.
        stages = [
            line
            for line in metrics.splitlines()
            if line.startswith("serving_requests_total{") and f'model="{name}-predictor"' in line
        ]
        assert bool(stages) == name.endswith("in-process"), metrics
        assert all('protocol="in-process"' in line and 'component="predictor"' in line for line in stages)


def test_transformer_args_are_checked_at_apply_naming_the_field() -> None:
    """What `serving transform` would refuse when its process starts is refused with the spec (KServe's own
    transformer flags are taken: --predictor_request_retries, --enable_predictor_health_check, --protocol
    grpc-v2)."""
    from serving.spec import SpecError, parse

    def spec(args: list[str]) -> dict:
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "t"},
            "spec": {
                "predictor": {"sklearn": {"storageUri": "/tmp"}},
                "transformer": {"containers": [{"name": "kserve-container", "image": "x", "args": args}]},
            },
        }

    kserve = ["--predictor_request_retries", "2", "--enable_predictor_health_check", "--protocol", "grpc-v2"]
    assert parse(spec(["serving", "transform", *kserve])).spec.transformer is not None
    with pytest.raises(
        SpecError, match=r"^spec\.transformer\.containers\[0\]\.args: unrecognized arguments: --bogus"
    ):
        parse(spec(["serving", "transform", "--bogus"]))
    with pytest.raises(SpecError, match=r"^spec\.transformer\.containers\[0\]\.args: argument --labels"):
        parse(spec(["transform", "--labels"]))
