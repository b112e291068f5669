"""gRPC Open Inference Protocol against `serving serve --grpc-port 0` (the CLI's own code path, in process):
tritonclient.grpc (sync and aio) for every RPC, answers equal to REST JSON for sklearn/xgboost/onnx, typed
`contents` and raw tensors for all 13 datatypes, the bad-input battery with its status codes, deadlines,
health, reflection and metrics with protocol="grpc".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from serving.grpc import messages as pb
from serving.grpc.tensor_codec import CONTENTS_FIELD
from tests.inprocess import InProcessServer, serving_inprocess
from tests.runtimes_for_tests import EchoRuntime

IRIS_ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]
MAX_BODY = 2_000_000
SERVICE = "/inference.GRPCInferenceService/"
VALUES: dict[str, list] = {  # each datatype at the edges of its range
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 200, 255],
    "UINT16": [0, 1, 40000, 65535],
    "UINT32": [0, 1, 3_000_000_000, 4_294_967_295],
    "UINT64": [0, 1, 2**40, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-32768, -1, 0, 32767],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [0.5, -1.25, 2048.0, 0.0],
    "FP32": [0.25, -3.5, 1e30, 0.0],
    "FP64": [0.1, -2.5e300, 3.141592653589793, 0.0],
    "BYTES": [b"hello", b"", "ünïcödé".encode(), b"4"],
}


class SleepyEcho(EchoRuntime):
    """Echo that first sleeps `sleep_s` (a request parameter): a slow model for deadline tests."""

    def predict(self, inputs, outputs, parameters):  # type: ignore[no-untyped-def]
        time.sleep(float(parameters.get("sleep_s", 0)))
        return super().predict(inputs, outputs, parameters)


class Served:
    def __init__(self, http: InProcessServer) -> None:
        self.http = http
        found = re.search(r"gRPC \(Open Inference Protocol\) listening on 127\.0\.0\.1:(\d+)", http.log())
        assert found, f"no gRPC port in the log:\n{http.log()}"
        self.target = f"127.0.0.1:{found.group(1)}"

    def call(self, method: str, payload: bytes, timeout: float = 10) -> bytes:
        with grpc.insecure_channel(self.target, options=[("grpc.max_send_message_length", -1)]) as channel:
            return channel.unary_unary(SERVICE + method)(payload, timeout=timeout)

    def infer(self, request: object, timeout: float = 10) -> object:
        return pb.ModelInferResponse.FromString(self.call("ModelInfer", request.SerializeToString(), timeout))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def servers(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    import logging

    logging.getLogger("serving.grpc").setLevel(
        logging.INFO
    )  # the port line is INFO; the harness root is WARNING
    echo_dir = tmp_path_factory.mktemp("echo") / "echo"
    echo_dir.mkdir()
    grpc_args = ["--grpc-port", "0", "--max-body-bytes", str(MAX_BODY)]
    with (
        serving_inprocess(["serve", "--model-dir", str(model_repo), *grpc_args]) as iris,
        serving_inprocess(
            [
                "serve",
                "--model-dir",
                str(echo_dir),
                "--runtime",
                "tests.test_grpc_server:SleepyEcho",
                *grpc_args,
            ]
        ) as echo,
    ):
        yield {"iris": Served(iris), "echo": Served(echo)}


def test_health_metadata_and_repository_through_tritonclient(servers: dict[str, Served]) -> None:
    client = triton.InferenceServerClient(servers["iris"].target)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("sklearn-iris") and client.is_model_ready("sklearn-iris", "1")
    assert {"binary_tensor_data", "model_repository"} <= set(client.get_server_metadata().extensions)
    meta = client.get_model_metadata("onnx-iris")
    assert meta.name == "onnx-iris" and meta.versions == ["1"] and meta.inputs[0].shape[-1] == 4
    config = client.get_model_config("onnx-iris").config  # the model_configuration extension it advertises
    rest = httpx.get(f"{servers['iris'].http.url}/v2/models/onnx-iris/config").json()
    assert config.name == "onnx-iris" and config.platform == rest["platform"]
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        (i["name"], i["data_type"], i["dims"]) for i in rest["input"]
    ]
    assert rest["max_batch_size"] == 0 and rest["input"][0]["dims"] == [-1, 4]  # unbatched: the full shape
    assert [o.name for o in config.output] == [o["name"] for o in rest["output"]] and config.output
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert index == {"sklearn-iris": "READY", "xgboost-iris": "READY", "onnx-iris": "READY"}
    client.unload_model("xgboost-iris")
    assert not client.is_model_ready("xgboost-iris")
    with pytest.raises(InferenceServerException) as unloaded:
        client.infer("xgboost-iris", [_iris_input("FP32")])
    assert unloaded.value.status() == "StatusCode.UNAVAILABLE" and "not ready" in unloaded.value.message()
    client.load_model("xgboost-iris")
    assert client.is_model_ready("xgboost-iris")
    with pytest.raises(InferenceServerException) as missing:
        client.is_model_ready("no-such-model")
    assert missing.value.status() == "StatusCode.NOT_FOUND"


def test_load_parameters_are_invalid_argument_naming_the_parameter(servers: dict[str, Served]) -> None:
    client = triton.InferenceServerClient(servers["echo"].target)
    with pytest.raises(InferenceServerException) as refused:
        client.load_model("echo", config='{"max_batch_size": 4}')
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "load parameter 'config' is not supported" in refused.value.message()
    request = pb.RepositoryModelLoadRequest(model_name="echo")
    request.parameters["file:1/model.onnx"].bytes_param = b"onnx"
    with pytest.raises(grpc.RpcError) as files:
        servers["echo"].call("RepositoryModelLoad", request.SerializeToString())
    assert files.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'file:1/model.onnx' is not supported" in (files.value.details() or "")
    request = pb.RepositoryModelLoadRequest(model_name="echo")
    request.parameters["priority"].int64_param = 1
    with pytest.raises(grpc.RpcError) as unknown:
        servers["echo"].call("RepositoryModelLoad", request.SerializeToString())
    assert "unknown load parameter 'priority'" in (unknown.value.details() or "")
    client.load_model("echo")  # no parameters: loads (here: reloads)
    assert client.is_model_ready("echo")


def _iris_input(datatype: str) -> triton.InferInput:
    tensor = triton.InferInput("input-0", [2, 4], datatype)
    tensor.set_data_from_numpy(np.array(IRIS_ROWS, dtype=np.float32 if datatype == "FP32" else np.float64))
    return tensor


@pytest.mark.parametrize("model", ["sklearn-iris", "xgboost-iris", "onnx-iris"])
def test_answers_equal_rest_json(servers: dict[str, Served], model: str) -> None:
    served = servers["iris"]
    client = triton.InferenceServerClient(served.target)
    meta = client.get_model_metadata(model)
    datatype = meta.inputs[0].datatype
    result = client.infer(model, [_iris_input(datatype)], request_id="req-7")
    body = {
        "id": "req-7",
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": datatype, "data": IRIS_ROWS}],
    }
    rest = httpx.post(f"{served.http.url}/v2/models/{model}/infer", content=orjson.dumps(body)).json()
    assert result.get_response().id == "req-7" and result.get_response().model_name == model
    assert [o.name for o in result.get_response().outputs] == [o["name"] for o in rest["outputs"]]
    for output in rest["outputs"]:
        got = result.as_numpy(output["name"])
        assert result.get_output(output["name"]).datatype == output["datatype"]
        assert list(got.shape) == output["shape"]
        np.testing.assert_allclose(got.ravel(), np.asarray(output["data"], dtype=got.dtype), rtol=1e-6)
    assert list(result.as_numpy(rest["outputs"][0]["name"])) == [1, 0]


def test_requested_outputs_and_typed_contents(servers: dict[str, Served]) -> None:
    request = pb.ModelInferRequest(model_name="sklearn-iris", id="typed")
    request.inputs.add(name="input-0", datatype="FP64", shape=[2, 4]).contents.fp64_contents.extend(
        sum(IRIS_ROWS, [])
    )
    request.outputs.add(name="probabilities")
    response = servers["iris"].infer(request)
    assert [o.name for o in response.outputs] == ["probabilities"] and not response.raw_output_contents
    probabilities = np.array(response.outputs[0].contents.fp64_contents).reshape(response.outputs[0].shape)
    assert probabilities.shape == (2, 3) and list(probabilities.argmax(1)) == [1, 0]
    np.testing.assert_allclose(probabilities.sum(1), 1.0)


@pytest.mark.parametrize("datatype", sorted(VALUES))
def test_every_datatype_round_trips_raw_and_typed(servers: dict[str, Served], datatype: str) -> None:
    from serving.protocol.dtypes import V2_TO_NUMPY

    values = np.array(VALUES[datatype], dtype=V2_TO_NUMPY[datatype]).reshape(2, 2)
    sent = triton.InferInput("x", [2, 2], datatype)
    sent.set_data_from_numpy(values)
    echoed = triton.InferenceServerClient(servers["echo"].target).infer("echo", [sent]).as_numpy("x")
    assert echoed.dtype == values.dtype and np.array_equal(echoed, values)
    request = pb.ModelInferRequest(model_name="echo")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[2, 2])
    if datatype == "FP16":  # no typed field for FP16 (Triton: raw only), said clearly
        with pytest.raises(grpc.RpcError) as refused:
            servers["echo"].infer(request)
        assert (
            refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "raw_input_contents" in refused.value.details()
        )
        return
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(VALUES[datatype])
    output = servers["echo"].infer(request).outputs[0]
    assert output.datatype == datatype and list(output.shape) == [2, 2]
    returned = np.array(list(getattr(output.contents, CONTENTS_FIELD[datatype])), dtype=values.dtype).reshape(
        2, 2
    )
    assert np.array_equal(returned, values)


def test_parameters_reach_the_model_and_id_is_echoed(servers: dict[str, Served]) -> None:
    request = pb.ModelInferRequest(model_name="echo", id="abc")
    request.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(3)
    request.parameters["flag"].bool_param = True
    request.parameters["count"].int64_param = 7
    request.parameters["label"].string_param = "hi"
    request.outputs.add(name="parameters")
    response = servers["echo"].infer(request)
    assert response.id == "abc"
    assert orjson.loads(response.outputs[0].contents.bytes_contents[0]) == {
        "flag": True,
        "count": 7,
        "label": "hi",
    }


def _bad(
    datatype: str = "FP64",
    shape: tuple = (1, 4),
    raw: bytes | None = None,
    model: str = "sklearn-iris",
    version: str = "",
    name: str = "input-0",
) -> bytes:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    request.raw_input_contents.append(np.array(IRIS_ROWS[0]).tobytes() if raw is None else raw)
    return request.SerializeToString()


def _switch(kind: str, value: object, on_output: bool) -> bytes:
    """A good raw request whose `binary_data_output` (or an output's `binary_data`) is not a bool_param."""
    request = pb.ModelInferRequest.FromString(_bad())
    params = request.outputs.add(name="output-0").parameters if on_output else request.parameters
    setattr(params["binary_data" if on_output else "binary_data_output"], kind, value)
    return request.SerializeToString()


def _two_contents() -> bytes:
    """FP64 data in fp64_contents, plus an fp32_contents beside it."""
    request = pb.ModelInferRequest(model_name="sklearn-iris")
    contents = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4]).contents
    contents.fp64_contents.extend(IRIS_ROWS[0])
    contents.fp32_contents.extend([9.0])
    return request.SerializeToString()


BATTERY = {
    "binary_data_output a string": (
        _switch("string_param", "true", on_output=False),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'parameters.binary_data_output' must be a bool_param (true or false), not string_param 'true'",
    ),
    "binary_data an int": (
        _switch("int64_param", 1, on_output=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'outputs[0].parameters.binary_data' must be a bool_param (true or false), not int64_param 1",
    ),
    "two contents fields": (
        _two_contents(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input-0': FP64 data goes in fp64_contents only, but fp32_contents is set too",
    ),
    "wrong datatype": (_bad(datatype="FP99"), grpc.StatusCode.INVALID_ARGUMENT, "unknown datatype 'FP99'"),
    "shape vs data length": (_bad(shape=(1, 5)), grpc.StatusCode.INVALID_ARGUMENT, "needs 40 bytes"),
    "negative dimension": (_bad(shape=(-1, 4)), grpc.StatusCode.INVALID_ARGUMENT, "negative dimension"),
    "no elements, dimensions past int64": (
        _bad(shape=(0, 2**40, 2**40), raw=b""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "too large to represent",
    ),
    "unknown model": (_bad(model="nope"), grpc.StatusCode.NOT_FOUND, "model 'nope' not found"),
    "unknown version": (_bad(version="9"), grpc.StatusCode.NOT_FOUND, "no version '9'"),
    "oversized message": (
        _bad(raw=bytes(MAX_BODY + 10)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "larger than max",
    ),
    "missing inputs": (
        pb.ModelInferRequest(model_name="sklearn-iris").SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "at least one tensor",
    ),
    "two inputs of one name": (_bad() + _bad(), grpc.StatusCode.INVALID_ARGUMENT, "appears more than once"),
    "garbage bytes": (
        b"\xff\xff\xff\x07garbage",
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a valid ModelInferRequest",
    ),
    "raw entries vs inputs": (
        _bad() + pb.ModelInferRequest(raw_input_contents=[b"a"]).SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "2 entries for 1 inputs",
    ),
}


@pytest.mark.parametrize("case", sorted(BATTERY))
def test_bad_input_battery_gets_the_right_code_and_the_server_keeps_serving(
    servers: dict[str, Served], case: str
) -> None:
    payload, code, words = BATTERY[case]
    with pytest.raises(grpc.RpcError) as failed:
        servers["iris"].call("ModelInfer", payload)
    assert failed.value.code() == code, failed.value.details()
    assert words in (failed.value.details() or ""), failed.value.details()
    good = pb.ModelInferResponse.FromString(servers["iris"].call("ModelInfer", _bad()))
    assert good.outputs[0].name == "output-0"
    assert pb.ServerLiveResponse.FromString(servers["iris"].call("ServerLive", b"")).live


def test_client_deadline_is_honoured(servers: dict[str, Served]) -> None:
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    request.parameters["sleep_s"].double_param = 3.0
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as late:
        servers["echo"].infer(request, timeout=0.3)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.5


def test_health_service_and_reflection(servers: dict[str, Served]) -> None:
    with grpc.insecure_channel(servers["iris"].target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= set(database.get_services())
        infer = database.FindFileContainingSymbol("inference.GRPCInferenceService")
        assert "ModelInfer" in [m.name for m in infer.service[0].method]
        assert "raw_input_contents" in [
            f.name for f in next(m for m in infer.message_type if m.name == "ModelInferRequest").field
        ]


@pytest.mark.asyncio
async def test_tritonclient_aio_and_metrics_count_grpc(servers: dict[str, Served]) -> None:
    client = triton_aio.InferenceServerClient(servers["iris"].target)
    try:
        assert await client.is_server_ready()
        result = await client.infer("onnx-iris", [_iris_input("FP32")])
        assert list(result.as_numpy(result.get_response().outputs[0].name)) == [1, 0]
        short = triton_aio.InferInput("input-0", [1, 3], "FP32")
        short.set_data_from_numpy(np.ones((1, 3), np.float32))
        with pytest.raises(InferenceServerException) as refused:
            await client.infer("onnx-iris", [short])
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        await client.close()
    metrics = httpx.get(servers["iris"].http.url + "/metrics").text
    assert 'serving_requests_total{code="200",model="onnx-iris",protocol="grpc",version="1"}' in metrics
    assert 'serving_requests_total{code="400",model="onnx-iris",protocol="grpc",version="1"}' in metrics


def test_port_zero_with_several_workers_is_refused_before_they_start(model_repo: Path) -> None:
    from tests.inprocess import run_cli

    result = run_cli(
        "serve", "--model-dir", str(model_repo / "sklearn-iris"), "--grpc-port", "0", "--workers", "2"
    )
    assert result.returncode == 2 and "give a fixed port with --workers > 1" in result.stderr


def test_class_count_answers_the_top_classes_over_grpc_and_http(servers: dict[str, Served]) -> None:
    """Triton's classification extension through tritonclient (`class_count`), gRPC and HTTP: the top K
    probabilities as "value:index" BYTES, best first, as Triton answers; a bad count is refused by name."""
    import tritonclient.http as triton_http

    rows = np.array(IRIS_ROWS, dtype=np.float64)
    http_url = servers["iris"].http.url.removeprefix("http://")
    for module, client in (
        (triton, triton.InferenceServerClient(servers["iris"].target)),
        (triton_http, triton_http.InferenceServerClient(http_url)),
    ):
        tensor = module.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        plain = client.infer("sklearn-iris", [tensor], outputs=[module.InferRequestedOutput("probabilities")])
        probabilities = plain.as_numpy("probabilities")
        top = client.infer(
            "sklearn-iris", [tensor], outputs=[module.InferRequestedOutput("probabilities", class_count=2)]
        ).as_numpy("probabilities")
        assert top.shape == (2, 2)
        for row, answer in zip(probabilities, top, strict=True):
            best = np.argsort(-row, kind="stable")[:2]
            assert [a.decode() for a in answer] == [f"{row[i]:f}:{i}" for i in best]
    bad = httpx.post(
        f"{servers['iris'].http.url}/v2/models/sklearn-iris/infer",
        json={
            "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROWS[0]}],
            "outputs": [{"name": "probabilities", "parameters": {"classification": "two"}}],
        },
    )
    assert bad.status_code == 400 and "parameter 'classification' must be a positive integer" in bad.text
    labels = httpx.post(  # one label per row: ranking the rows as classes would mean nothing
        f"{servers['iris'].http.url}/v2/models/sklearn-iris/infer",
        json={
            "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": IRIS_ROWS}],
            "outputs": [{"name": "output-0", "parameters": {"classification": 2}}],
        },
    )
    assert labels.status_code == 400 and "holds one value per row (2 rows)" in labels.json()["error"]
    extensions = triton.InferenceServerClient(servers["iris"].target).get_server_metadata().extensions
    assert "classification" in extensions


def test_triton_extensions_not_served_say_so_over_grpc_and_http(servers: dict[str, Served]) -> None:
    """tritonclient's statistics, shared-memory, trace and log calls and ModelStreamInfer: UNIMPLEMENTED / 404
    naming the extension (they said "Method not found!" / "no route")."""
    client = triton.InferenceServerClient(servers["iris"].target)
    for call, says in (
        (lambda: client.get_inference_statistics("sklearn-iris"), "statistics extension"),
        (lambda: client.get_system_shared_memory_status(), "system shared memory extension"),
        (lambda: client.get_trace_settings(), "trace extension"),
    ):
        with pytest.raises(InferenceServerException) as refused:
            call()
        assert refused.value.status() == "StatusCode.UNIMPLEMENTED" and says in refused.value.message()
    with grpc.insecure_channel(servers["iris"].target) as channel:
        stream = channel.stream_stream(SERVICE + "ModelStreamInfer")(iter([b""]), timeout=10)
        with pytest.raises(grpc.RpcError) as streamed:
            list(stream)
    assert (
        streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED
        and "call ModelInfer" in streamed.value.details()
    )
    url = servers["iris"].http.url
    for path, says in (
        ("/v2/models/sklearn-iris/stats", "statistics"),
        ("/v2/systemsharedmemory/status", "system shared memory"),
        ("/v2/cudasharedmemory/region/r/register", "CUDA shared memory"),
        ("/v2/trace/setting", "trace"),
        ("/v2/logging", "logging"),
    ):
        answer = httpx.get(url + path)
        assert (
            answer.status_code == 404
            and f"Triton's {says} extension is not served here" in answer.json()["error"]
        )


def test_shared_memory_and_repeated_outputs_are_refused_naming_them(servers: dict[str, Served]) -> None:
    """A tensor in a shared-memory region would travel in the body instead (an output region stale after a 200);
    an output asked for twice would be answered once: 400 / INVALID_ARGUMENT, as Triton answers a repeat."""
    client = triton.InferenceServerClient(servers["iris"].target)
    in_region = triton.InferInput("input-0", [1, 4], "FP32")
    in_region.set_shared_memory("in0", 16)
    out_region = triton.InferRequestedOutput("output-0")
    out_region.set_shared_memory("out0", 8)
    twice = [triton.InferRequestedOutput("output-0"), triton.InferRequestedOutput("output-0")]
    for inputs, outputs, says in (
        ([in_region], None, "input 'input-0': shared memory"),
        ([_iris_input("FP32")], [out_region], "output 'output-0': shared memory"),
        ([_iris_input("FP32")], twice, "output 'output-0' is requested more than once"),
    ):
        with pytest.raises(InferenceServerException) as refused:
            client.infer("sklearn-iris", inputs, outputs=outputs)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and says in refused.value.message()
    url = servers["iris"].http.url + "/v2/models/sklearn-iris/infer"
    row = {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [6.8, 2.8, 4.8, 1.4]}
    region = {"shared_memory_region": "r", "shared_memory_byte_size": 16}
    for body, says in (
        ({"inputs": [{**row, "parameters": region}]}, "input 'input-0': shared memory"),
        (
            {"inputs": [row], "outputs": [{"name": "output-0", "parameters": region}]},
            "output 'output-0': shared memory",
        ),
        ({"inputs": [row], "outputs": [{"name": "output-0"}] * 2}, "requested more than once"),
    ):
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400 and says in answer.json()["error"], answer.text


def test_an_unknown_model_with_a_huge_name_is_still_not_found(servers: dict[str, Served]) -> None:
    """grpc-message rides in the trailers (8 KiB by default): a message quoting a 100 kB name is cut, so the
    client reads NOT_FOUND, not RESOURCE_EXHAUSTED."""
    client = triton.InferenceServerClient(servers["iris"].target)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("m" * 100_000, [_iris_input("FP32")])
    assert missing.value.status() == "StatusCode.NOT_FOUND", missing.value
    assert "more characters" in missing.value.message() and len(missing.value.message()) < 2200
