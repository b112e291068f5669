"""The binary tensor extension and tritonclient.http against real servers (echo and ONNX iris)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.inprocess import InProcessServer, serving_inprocess

ECHO = "tests.runtimes_for_tests:EchoRuntime"

ARRAYS: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([[0, 1], [200, 255]], np.uint8),
    "UINT16": np.array([[0, 1], [40000, 65535]], np.uint16),
    "UINT32": np.array([[0, 1], [3_000_000_000, 4_294_967_295]], np.uint32),
    "UINT64": np.array([[0, 1], [2**40, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, -1], [0, 127]], np.int8),
    "INT16": np.array([[-32768, -1], [0, 32767]], np.int16),
    "INT32": np.array([[-(2**31), -1], [0, 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), -1], [0, 2**63 - 1]], np.int64),
    "FP16": np.array([[0.5, -1.25], [2048.0, 0.099975586]], np.float16),
    "FP32": np.array([[0.25, -3.5], [1e30, 0.1]], np.float32),
    "FP64": np.array([[0.1, -2.5e300], [np.pi, 0.0]], np.float64),
    "BYTES": np.array([[b"hello", b""], ["ünïcödé".encode(), b"\x00\xff raw"]], dtype=object),
}


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    folder = tmp_path_factory.mktemp("bin") / "echo"
    folder.mkdir()
    with serving_inprocess(["serve", "--model-dir", str(folder), "--runtime", ECHO]) as server:
        yield server


@pytest.fixture(scope="module")
def onnx_iris(model_repo: Path) -> Iterator[InProcessServer]:
    with serving_inprocess(["serve", "--model-dir", str(model_repo / "onnx-iris")]) as server:
        yield server


def _client(server: InProcessServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_round_trips_every_datatype(echo: InProcessServer, binary: bool) -> None:
    client = _client(echo)
    inputs, outputs = [], []
    for datatype, array in ARRAYS.items():
        if datatype == "BYTES" and not binary:
            array = np.array([[b"hello", b""], ["ünïcödé".encode(), b"4"]], dtype=object)  # JSON carries text
        tensor = triton.InferInput(datatype.lower(), list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
        outputs.append(triton.InferRequestedOutput(datatype.lower(), binary_data=binary))
    result = client.infer("echo", inputs, outputs=outputs, request_id="tri-1")
    response = result.get_response()
    assert response["id"] == "tri-1" and response["model_name"] == "echo"
    for tensor in inputs:
        out = result.as_numpy(tensor.name())
        sent = ARRAYS[tensor.datatype()]
        assert out is not None and out.shape == sent.shape, tensor.name()
        if tensor.datatype() == "BYTES":
            if binary:
                assert out.tolist() == sent.tolist()  # raw bytes, even invalid UTF-8, survive binary
            else:
                assert out.tolist() == [["hello", ""], ["ünïcödé", "4"]]  # JSON BYTES come back as text
        else:
            assert out.dtype == sent.dtype and np.array_equal(out, sent), tensor.name()
        entry = next(o for o in response["outputs"] if o["name"] == tensor.name())
        assert ("binary_data_size" in entry.get("parameters", {})) is binary


def test_tritonclient_server_and_model_calls(onnx_iris: InProcessServer) -> None:
    client = _client(onnx_iris)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("onnx-iris")
    assert not client.is_model_ready("nope")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("onnx-iris")
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    config = client.get_model_config("onnx-iris")
    assert config["name"] == "onnx-iris" and config["input"][0]["data_type"] == "TYPE_FP32"
    index = client.get_model_repository_index()
    assert [(m["name"], m["state"]) for m in index] == [("onnx-iris", "READY")]
    client.unload_model("onnx-iris")
    # Triton's strict readiness: a model not ready because it was unloaded does not make the server unready
    assert not client.is_model_ready("onnx-iris") and client.is_server_ready()
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("onnx-iris")
    client.load_model("onnx-iris")
    assert client.is_model_ready("onnx-iris") and client.is_server_ready()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infers_iris_with_onnx(onnx_iris: InProcessServer, binary: bool) -> None:
    client = _client(onnx_iris)
    x = triton.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(
        np.array([[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]], np.float32), binary_data=binary
    )
    wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    result = client.infer("onnx-iris", [x], outputs=wanted)
    assert result.as_numpy("label").tolist() == [1, 0]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, 3)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    only = client.infer("onnx-iris", [x], outputs=[triton.InferRequestedOutput("label", binary_data=binary)])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["label"]


def _frame_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_raw_binary_body_with_header_length(echo: InProcessServer) -> None:
    """A hand-built body: JSON header, then FP16 and BYTES tensors; outputs asked for as binary."""
    half = np.array([1.5, -2.0, 65504.0], np.float16)
    words = [b"a", b"", b"longer \xff"]
    header = orjson.dumps(
        {
            "id": "raw",
            "inputs": [
                {"name": "h", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": 6}},
                {
                    "name": "w",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(_frame_bytes(words))},
                },
            ],
            "outputs": [
                {"name": "h", "parameters": {"binary_data": True}},
                {"name": "w", "parameters": {"binary_data": True}},
            ],
        }
    )
    body = header + half.tobytes() + _frame_bytes(words)
    response = httpx.post(
        echo.url + "/v2/models/echo/infer",
        content=body,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    doc = orjson.loads(response.content[:length])
    assert doc["id"] == "raw"
    h, w = doc["outputs"]
    assert (h["datatype"], h["parameters"]["binary_data_size"]) == ("FP16", 6)
    tail = response.content[length:]
    assert np.array_equal(np.frombuffer(tail[:6], "<f2"), half)
    assert tail[6:] == _frame_bytes(words) and w["parameters"]["binary_data_size"] == len(tail) - 6

    # binary_data_output at request level turns every output binary; JSON inputs may be mixed with binary ones
    mixed = orjson.dumps(
        {
            "inputs": [
                {"name": "h", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": 6}},
                {"name": "j", "shape": [2], "datatype": "INT32", "data": [1, 2]},
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    response = httpx.post(
        echo.url + "/v2/models/echo/infer",
        content=mixed + half.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(mixed))},
    )
    length = int(response.headers["inference-header-content-length"])
    outputs = orjson.loads(response.content[:length])["outputs"]
    assert [o["parameters"]["binary_data_size"] for o in outputs] == [6, 8]
    assert np.frombuffer(response.content[length + 6 :], "<i4").tolist() == [1, 2]


@pytest.mark.parametrize(
    ("header", "tail", "needle"),
    [
        (
            {"name": "h", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": 4}},
            b"\0" * 4,
            "needs 6 bytes",
        ),
        (
            {"name": "h", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": 6}},
            b"\0" * 4,
            "overruns",
        ),
        (
            {"name": "w", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 5}},
            _frame_bytes([b"a"]),
            "BYTES",
        ),
        (
            {"name": "h", "shape": [1], "datatype": "FP16", "parameters": {"binary_data_size": 2}},
            b"\0" * 5,
            "no input claims",
        ),
    ],
)
def test_bad_binary_bodies_are_400(echo: InProcessServer, header: dict, tail: bytes, needle: str) -> None:
    doc = orjson.dumps({"inputs": [header]})
    response = httpx.post(
        echo.url + "/v2/models/echo/infer",
        content=doc + tail,
        headers={"Inference-Header-Content-Length": str(len(doc))},
    )
    assert response.status_code == 400 and needle in response.json()["error"], response.text
    good = httpx.post(
        echo.url + "/v2/models/echo/infer",
        json={"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}]},
    )
    assert good.status_code == 200


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_as_tritonclient_sends_them(onnx_iris: InProcessServer, algorithm: str) -> None:
    client = _client(onnx_iris)
    x = triton.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(
        np.array([[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]], np.float32), binary_data=True
    )
    for binary in (True, False):  # the header length counts the inflated JSON, binary part or not
        wanted = [triton.InferRequestedOutput("label", binary_data=binary)]
        result = client.infer("onnx-iris", [x], outputs=wanted, request_compression_algorithm=algorithm)
        assert result.as_numpy("label").tolist() == [1, 0]


def test_compressed_bodies_that_cannot_be_read_are_refused(echo: InProcessServer) -> None:
    import gzip
    import zlib

    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [3]}]})
    url = echo.url + "/v2/models/echo/infer"
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    sent = {
        "raw deflate": (b"deflate", raw_deflate.compress(body) + raw_deflate.flush(), 200, '"data":[3]'),
        "brotli": (b"br", body, 415, "Content-Encoding 'br' is not supported"),
        "plain bytes said to be gzip": (b"gzip", body, 400, "not valid gzip"),
        "cut short": (b"gzip", gzip.compress(body)[:-12], 400, "cut short"),
        "a bomb": (b"gzip", gzip.compress(b" " * 70_000_000, 1), 413, "inflates to over the limit"),
        "gzip then other bytes": (b"gzip", gzip.compress(body) + b"GARBAGE", 400, "7 bytes after its gzip"),
        "two gzip members": (b"gzip", gzip.compress(body[:9]) + gzip.compress(body[9:]), 200, '"data":[3]'),
    }
    for what, (coding, payload, status, needle) in sent.items():
        answer = httpx.post(url, content=payload, headers={"content-encoding": coding.decode()})
        assert answer.status_code == status and needle in answer.text, (what, answer.text)
    assert httpx.post(url, content=body).json()["outputs"][0]["data"] == [3]
