"""Batching in a real `serving serve`: concurrent V1, V2 JSON and V2 binary callers each get exactly their
own rows (checked against the model's own unbatched predictions), batches really form, and requests
of other shapes or dtypes in flight at the same time are answered correctly (or refused alone)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import tritonclient.http.aio as triton_aio
from prometheus_client.parser import text_string_to_metric_families

from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import train_iris_sklearn

MODEL = "iris"


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batching") / MODEL
    train_iris_sklearn(folder)
    return folder


@pytest.fixture(scope="module")
def batching_server(iris_dir: Path) -> Iterator[InProcessServer]:
    args = ["serve", "--model-dir", str(iris_dir), "--max-batch-size", "32", "--max-latency-ms", "20"]
    with serving_inprocess(args) as server:
        yield server


def samples(metrics: str, name: str, model: str = MODEL) -> dict[str, float]:
    """`le` (or '' when absent) -> value for one family's samples named `name`."""
    return {
        s.labels.get("le", ""): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.name == name and s.labels.get("model") == model
    }


def test_concurrent_v1_v2_json_and_binary_callers_get_their_own_rows(
    batching_server: InProcessServer, iris_dir: Path
) -> None:
    estimator = joblib.load(next(iris_dir.glob("*.joblib")))
    rng = np.random.default_rng(3)
    rows = [rng.uniform(0.1, 7.5, size=(int(rng.integers(1, 5)), 4)).round(3) for _ in range(150)]

    async def v1(client: httpx.AsyncClient, x: np.ndarray) -> None:
        r = await client.post(f"/v1/models/{MODEL}:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == estimator.predict(x).tolist()

    async def v2_json(client: httpx.AsyncClient, x: np.ndarray, datatype: str) -> None:
        body = {
            "inputs": [
                {"name": "input-0", "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}
            ],
            "outputs": [{"name": "probabilities"}],
        }
        r = await client.post(f"/v2/models/{MODEL}/infer", json=body)
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        expected = estimator.predict_proba(x.astype(np.float32) if datatype == "FP32" else x)
        assert out["shape"] == list(expected.shape)
        np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), expected, rtol=1e-9, atol=1e-12)

    async def v2_binary(client: triton_aio.InferenceServerClient, x: np.ndarray) -> None:
        tensor = triton_aio.InferInput("input-0", list(x.shape), "FP64")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = await client.infer(
            MODEL, [tensor], outputs=[triton_aio.InferRequestedOutput("probabilities", binary_data=True)]
        )
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), estimator.predict_proba(x), rtol=1e-9, atol=1e-12
        )

    async def bad_shape(client: httpx.AsyncClient) -> None:
        body = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": [1.0] * 6}]}
        r = await client.post(f"/v2/models/{MODEL}/infer", json=body)
        assert r.status_code == 400 and "feature" in r.json()["error"], r.text

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=batching_server.url, timeout=30, limits=limits) as client:
            triton = triton_aio.InferenceServerClient(
                batching_server.url.removeprefix("http://"), conn_limit=32
            )
            try:
                calls = []
                for i, x in enumerate(rows):
                    kind = i % 5
                    if kind == 0:
                        calls.append(v1(client, x))
                    elif kind in (1, 2):
                        calls.append(v2_json(client, x, "FP64" if kind == 1 else "FP32"))
                    elif kind == 3:
                        calls.append(v2_binary(triton, x))
                    else:
                        calls.append(bad_shape(client) if i % 10 == 4 else v2_json(client, x, "FP64"))
                await asyncio.gather(*calls)
            finally:
                await triton.close()

    asyncio.run(scenario())
    metrics = httpx.get(batching_server.url + "/metrics").text
    sizes = samples(metrics, "serving_batch_size_bucket")
    assert sizes["+Inf"] - sizes["1.0"] > 0, f"no batch of more than one row: {sizes}"
    codes: dict[str, float] = {}
    for f in text_string_to_metric_families(metrics):
        for s in f.samples:
            if s.name == "serving_requests_total" and s.labels["model"] == MODEL:
                codes[s.labels["code"]] = codes.get(s.labels["code"], 0) + s.value
    assert codes.get("200", 0) >= 135 and codes.get("400", 0) >= 15, codes


def test_a_lone_request_does_not_wait_for_max_latency(iris_dir: Path) -> None:
    args = ["serve", "--model-dir", str(iris_dir), "--max-batch-size", "32", "--max-latency-ms", "2000"]
    with serving_inprocess(args) as server, server.client() as client:
        for _ in range(3):
            r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
            assert r.status_code == 200 and r.elapsed.total_seconds() < 1.0, (r.status_code, r.elapsed)


DATATYPES = {"FP32": np.float32, "INT64": np.int64, "UINT8": np.uint8, "FP16": np.float16, "BYTES": object}


def test_echo_model_batches_every_datatype_and_each_caller_gets_its_tensor(tmp_path: Path) -> None:
    """Echo returns what it was sent: under batching every caller must still get back exactly its tensor."""
    folder = tmp_path / "echo"
    folder.mkdir()
    args = [
        "serve",
        "--model-dir",
        str(folder),
        "--runtime",
        "tests.runtimes_for_tests:EchoRuntime",
        "--max-batch-size",
        "16",
        "--max-latency-ms",
        "20",
    ]
    rng = np.random.default_rng(5)
    cases = []
    for i in range(80):
        datatype = list(DATATYPES)[i // 16]  # runs of one datatype (a mismatch closes a batch: FIFO)
        shape = (int(rng.integers(1, 6)), 2 + (i // 8) % 2)
        if datatype == "BYTES":
            x = np.array([f"r{i}-{k}".encode() for k in range(int(np.prod(shape)))], dtype=object).reshape(
                shape
            )
        else:
            x = (rng.integers(0, 100, size=shape) + i).astype(DATATYPES[datatype])
        cases.append((datatype, x))

    async def echo(client: triton_aio.InferenceServerClient, datatype: str, x: np.ndarray) -> None:
        tensor = triton_aio.InferInput("x", list(x.shape), datatype)
        tensor.set_data_from_numpy(x, binary_data=True)
        result = await client.infer(
            "echo", [tensor], outputs=[triton_aio.InferRequestedOutput("x", binary_data=True)]
        )
        back = result.as_numpy("x")
        assert back.shape == x.shape and back.dtype == x.dtype and (back == x).all(), (datatype, x, back)

    async def scenario(url: str) -> None:
        client = triton_aio.InferenceServerClient(url.removeprefix("http://"), conn_limit=40)
        try:
            await asyncio.gather(*(echo(client, d, x) for d, x in cases))
        finally:
            await client.close()

    with serving_inprocess(args) as server:
        asyncio.run(scenario(server.url))
        sizes = samples(httpx.get(server.url + "/metrics").text, "serving_batch_size_bucket", "echo")
    assert sizes["+Inf"] - sizes["1.0"] > 0, sizes
    assert sizes["+Inf"] < len(cases), f"every request ran alone: {sizes}"


@pytest.fixture(scope="module")
def failing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    folder = tmp_path_factory.mktemp("failing") / "failing"
    folder.mkdir()
    args = [
        "serve",
        "--model-dir",
        str(folder),
        "--runtime",
        "tests.runtimes_for_tests:FailingRuntime",
        "--max-batch-size",
        "16",
        "--max-latency-ms",
        "20",
    ]
    with serving_inprocess(args) as server:
        yield server


def test_failing_requests_get_500_and_their_neighbours_200(failing_server: InProcessServer) -> None:
    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, int]:
        body = {
            "inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [i, -i]}],
            "parameters": {"fail": i % 4 == 0},
        }
        r = await client.post("/v2/models/failing/infer", json=body)
        if r.status_code == 200:
            assert r.json()["outputs"][0]["data"] == [i, -i], r.text
        else:
            assert "exploded" in r.json()["error"], r.text
        return i, r.status_code

    async def scenario() -> list[tuple[int, int]]:
        async with httpx.AsyncClient(base_url=failing_server.url, timeout=30) as client:
            return await asyncio.gather(*(one(client, i) for i in range(40)))

    for i, status in asyncio.run(scenario()):
        assert status == (500 if i % 4 == 0 else 200), (i, status)


def test_model_config_dims_leave_out_the_batch_dimension_when_batching(iris_dir: Path) -> None:
    """Triton: with max_batch_size > 0 the full shape is [-1] + dims (REST /config and gRPC ModelConfig
    alike); metadata keeps the full shape."""
    import logging
    import re

    import tritonclient.grpc as triton_grpc
    from tritonclient.grpc import model_config_pb2

    logging.getLogger("serving.grpc").setLevel(logging.INFO)  # the port line
    args = ["serve", "--model-dir", str(iris_dir), "--max-batch-size", "8", "--grpc-port", "0"]
    with serving_inprocess(args) as server:
        meta = httpx.get(f"{server.url}/v2/models/{MODEL}").json()
        assert meta["inputs"][0]["shape"] == [-1, 4] and meta["outputs"][0]["shape"] == [-1]
        config = httpx.get(f"{server.url}/v2/models/{MODEL}/config").json()
        assert config["max_batch_size"] == 8
        assert [(t["name"], t["dims"]) for t in config["input"]] == [(meta["inputs"][0]["name"], [4])]
        full = {t["name"]: t["shape"] for t in meta["outputs"]}
        assert {t["name"]: [-1, *t["dims"]] for t in config["output"]} == full  # output-0: [-1] + []
        port = re.search(r"gRPC \(Open Inference Protocol\) listening on 127\.0\.0\.1:(\d+)", server.log())
        assert port, server.log()
        grpc_config = triton_grpc.InferenceServerClient(f"127.0.0.1:{port.group(1)}").get_model_config(MODEL)
        assert grpc_config.config.max_batch_size == 8
        assert [list(t.dims) for t in grpc_config.config.input] == [[4]]
        assert (
            model_config_pb2.DataType.Name(grpc_config.config.input[0].data_type)
            == config["input"][0]["data_type"]
        )
