"""The hostile-request catalogue against real servers: every case is a 4xx `{"error": ...}` naming the problem,
and the server keeps serving (the next good request succeeds).

Two servers: sklearn iris (a numeric model, V1 and V2) and an echo model (every datatype reaches the codec's
checks and comes back, so a silent coercion would show as a 200).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from tests.inprocess import InProcessServer, serving_inprocess

ECHO = "tests.runtimes_for_tests:EchoRuntime"
IRIS_ROW = [6.8, 2.8, 4.8, 1.4]
GOOD_V2 = orjson.dumps(
    {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
)
DEEP = 100_000


@pytest.fixture(scope="module")
def servers(
    model_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, InProcessServer]]:
    echo_dir = tmp_path_factory.mktemp("echo") / "echo"
    echo_dir.mkdir()
    with (
        serving_inprocess(
            ["serve", "--model-dir", str(model_repo)]
        ) as iris,  # sklearn-iris, xgboost-iris, onnx-iris
        serving_inprocess(["serve", "--model-dir", str(echo_dir), "--runtime", ECHO]) as echo,
    ):
        yield {"iris": iris, "echo": echo}


def v2(*inputs: dict, **extra: object) -> bytes:
    """A V2 JSON body (stdlib json: it writes integers past 64 bits, which orjson refuses)."""
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def tensor(datatype: str = "FP64", shape: object = (1, 4), data: object = IRIS_ROW, **extra: object) -> dict:
    return {
        "name": "x",
        "datatype": datatype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "data": data,
        **extra,
    }


def binary(
    header: dict, tail: bytes, length_delta: int | None = 0, length: str | None = None
) -> tuple[bytes, dict]:
    """A binary-extension body; `length` overrides Inference-Header-Content-Length as sent."""
    head = orjson.dumps(header)
    sent = length if length is not None else str(len(head) + (length_delta or 0))
    return head + tail, {"inference-header-content-length": sent, "content-type": "application/octet-stream"}


def bin_input(datatype: str, shape: list[int], size: object) -> dict:
    return {
        "inputs": [
            {"name": "x", "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}
        ]
    }


@dataclass
class Case:
    id: str
    body: bytes | None
    status: int
    says: str  # a fragment the error message must contain (case-insensitive)
    server: str = "iris"
    path: str = "/v2/models/{model}/infer"
    method: str = "POST"
    headers: dict = field(default_factory=dict)


def _bin_case(id: str, parts: tuple[bytes, dict], says: str, status: int = 400) -> Case:
    return Case(id, parts[0], status, says, server="echo", headers=parts[1])


CASES = [
    # --- malformed JSON and wrong types (V2)
    Case("malformed-json", b'{"inputs": [', 400, "not valid json"),
    Case("truncated-json", GOOD_V2[:-7], 400, "not valid json"),
    Case("not-an-object", b"[1, 2, 3]", 400, "must be a json object"),
    Case("empty-body", b"", 400, "empty"),
    Case("whitespace-body", b"  \n ", 400, "not valid json"),
    Case("inputs-not-a-list", b'{"inputs": {"x": 1}}', 400, "'inputs' must be a non-empty list"),
    Case("inputs-empty", b'{"inputs": []}', 400, "'inputs' must be a non-empty list"),
    Case("input-not-an-object", v2([1, 2]), 400, "inputs[0] must be a json object"),  # type: ignore[arg-type]
    Case(
        "name-missing",
        b'{"inputs":[{"shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}]}',
        400,
        "name must be",
    ),
    Case("name-not-a-string", v2({**tensor(), "name": 7}), 400, "name must be a non-empty string"),
    Case("shape-not-ints", v2(tensor(shape=["1", "4"])), 400, "'shape' must be a list of integers"),
    Case("shape-floats", v2(tensor(shape=[1.0, 4.0])), 400, "'shape' must be a list of integers"),
    Case("shape-bools", v2(tensor(shape=[True, True])), 400, "'shape' must be a list of integers"),
    Case("shape-not-a-list", v2(tensor(shape=4)), 400, "'shape' must be a list of integers"),
    Case("shape-negative", v2(tensor(shape=[-1, 4])), 400, "has a negative dimension"),
    # no elements, but dimensions numpy cannot represent (their product past int64): refused, not a 500
    Case("shape-empty-but-huge", v2(tensor(shape=[0, 2**40, 2**40], data=[])), 400, "too large to represent"),
    _bin_case(
        "shape-empty-but-huge-binary",
        binary(bin_input("BOOL", [0, 27017090, 341390284330], 0), b""),
        "too large to represent",
    ),
    Case(
        "input-parameters-not-an-object",
        v2({**tensor(), "parameters": [1]}),
        400,
        "parameters' must be a json object",
    ),
    Case("datatype-not-a-string", v2(tensor(datatype=12)), 400, "'datatype' must be a string"),  # type: ignore[arg-type]
    Case("datatype-unknown", v2(tensor(datatype="FP128")), 400, "unknown datatype 'fp128'"),
    Case("data-a-dict", v2(tensor(data={"a": 1})), 400, "'data' must be a list"),
    Case("data-missing", v2({"name": "x", "datatype": "FP64", "shape": [1, 4]}), 400, "has no 'data'"),
    Case(
        "data-strings-for-fp64",
        v2(tensor(data=["a", "b", "c", "d"])),
        400,
        "must hold only numbers, not strings",
    ),
    Case("data-nulls", v2(tensor(data=[None, 1, 2, 3])), 400, "nulls"),
    Case("data-ragged", v2(tensor(data=[[1, 2], [3]])), 400, "not a rectangular array"),
    Case("parameters-not-an-object", v2(tensor(), parameters=[1]), 400, "'parameters' must be a json object"),
    Case("outputs-not-a-list", v2(tensor(), outputs={"name": "y"}), 400, "'outputs' must be a list"),
    Case("output-unknown", v2(tensor(), outputs=[{"name": "nope"}]), 400, "no output 'nope'"),
    Case("id-not-a-string", v2(tensor(), id=5), 400, "'id' must be a string"),
    Case("duplicate-input", v2(tensor(), tensor()), 400, "appears more than once"),
    # --- deep nesting: no recursion blow-up, whatever the level
    Case(
        "nested-100k-in-data",
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":' + b"[" * DEEP + b"]" * DEEP + b"}]}",
        400,
        "depth limit",
    ),
    Case("nested-100k-unclosed", b"[" * DEEP, 400, "depth limit"),
    Case(
        "nested-over-max-json-depth",
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":'
        + b"[" * 40
        + b"1"
        + b"]" * 40
        + b"}]}",
        400,
        "nested deeper than 32",
    ),
    # --- shape x dtype vs data
    Case("shape-data-mismatch", v2(tensor(shape=[2, 4])), 400, "needs 8 elements of fp64 but 'data' has 4"),
    Case("shape-negative", v2(tensor(shape=[-1, 4])), 400, "negative dimension"),
    Case(
        "nesting-disagrees-with-shape",
        v2(tensor("INT32", [2, 2], [[1, 2, 3, 4]])),
        400,
        "nested as [1, 4] but 'shape' is [2, 2]",
        server="echo",
    ),
    Case(
        "nesting-deeper-than-shape",
        v2(tensor("BYTES", [4], [["a", "b"], ["c", "d"]])),
        400,
        "nested as [2, 2] but 'shape' is [4]",
        server="echo",
    ),
    Case(
        "binary-output-flag-a-string",
        v2(tensor(), parameters={"binary_data_output": "true"}),
        400,
        "'parameters.binary_data_output' must be true or false",
    ),
    Case(
        "binary-data-flag-a-string",
        v2(tensor(), outputs=[{"name": "output-0", "parameters": {"binary_data": "yes"}}]),
        400,
        "'outputs[0].parameters.binary_data' must be true or false",
    ),
    Case("shape-overflowing", v2(tensor(shape=[2**63, 2**63])), 400, "over the limit"),
    Case(
        "shape-10e12-tiny-data", v2(tensor(shape=[10**6, 10**6], data=[1.0])), 400, "1000000000000 elements"
    ),
    # --- values that would be silently coerced
    Case("nan-literal", GOOD_V2.replace(b"6.8", b"NaN"), 400, "not valid json"),
    Case("infinity-literal", GOOD_V2.replace(b"6.8", b"Infinity"), 400, "not valid json"),
    Case("number-overflowing-double", GOOD_V2.replace(b"6.8", b"1e999"), 400, "infinity"),
    Case("fp16-overflow", v2(tensor("FP16", [1], [1e10])), 400, "out of range for fp16", server="echo"),
    Case(
        "int8-out-of-range",
        v2(tensor("INT8", [2], [1, 300])),
        400,
        "300 is out of range for int8",
        server="echo",
    ),
    Case("uint8-negative", v2(tensor("UINT8", [1], [-1])), 400, "out of range for uint8", server="echo"),
    Case(
        "int64-over-64-bits", v2(tensor("INT64", [1], [10**26])), 400, "out of range for int64", server="echo"
    ),
    Case(  # the JSON parser rounds a literal past the range to its end, a float: not taken as the end
        "int64-below-64-bits",
        v2(tensor("INT64", [2], [-(2**63) - 1, 1])),
        400,
        "out of range for int64",
        server="echo",
    ),
    Case(
        "uint64-past-64-bits",
        v2(tensor("UINT64", [1], [2**64])),
        400,
        "out of range for uint64",
        server="echo",
    ),
    Case("int32-fraction", v2(tensor("INT32", [1], [1.5])), 400, "must hold only integers", server="echo"),
    Case("int32-string", v2(tensor("INT32", [1], ["5"])), 400, "not strings", server="echo"),
    Case("int32-bool", v2(tensor("INT32", [1], [True])), 400, "not booleans", server="echo"),
    Case("bool-from-ints", v2(tensor("BOOL", [2], [1, 0])), 400, "true/false", server="echo"),
    Case(
        "bytes-not-strings",
        v2(tensor("BYTES", [2], [1, 2])),
        400,
        "bytes elements must be strings",
        server="echo",
    ),
    Case(
        "bytes-objects", v2(tensor("BYTES", [1], [{"a": 1}])), 400, "must be strings, got dict", server="echo"
    ),
    # --- binary tensor extension
    _bin_case(
        "header-length-over-body", binary(bin_input("INT32", [2], 8), b"\0" * 8, 1000), "outside the body"
    ),
    _bin_case(
        "header-length-negative",
        binary(bin_input("INT32", [2], 8), b"\0" * 8, length="-5"),
        "is not a length in bytes",
    ),
    _bin_case(
        "header-length-not-a-number",
        binary(bin_input("INT32", [2], 8), b"\0" * 8, length="ten"),
        "is not a length in bytes",
    ),
    _bin_case(  # a count, as Content-Length: `int()` took the sign
        "header-length-signed",
        binary(bin_input("INT32", [2], 8), b"\0" * 8, length="+0"),
        "is not a length in bytes",
    ),
    *(  # 'data' not a list: said so (it read as a count mismatch)
        Case(
            f"data-{label}",
            orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": data}]}),
            400,
            says,
        )
        for label, data, says in (
            ("null", None, "'data' must be a list of values, not null"),
            ("scalar", "12", "'data' is a single value, not a list, and shape [2] needs 2"),
        )
    ),
    _bin_case(
        "header-length-cuts-json", binary(bin_input("INT32", [2], 8), b"\0" * 8, -10), "not valid json"
    ),
    _bin_case("binary-size-overruns", binary(bin_input("INT32", [2], 800), b"\0" * 8), "overruns"),
    _bin_case("binary-size-negative", binary(bin_input("INT32", [2], -8), b"\0" * 8), "non-negative integer"),
    _bin_case("binary-size-not-int", binary(bin_input("INT32", [2], "8"), b"\0" * 8), "non-negative integer"),
    _bin_case("binary-size-vs-shape", binary(bin_input("INT32", [3], 8), b"\0" * 8), "needs 12 bytes"),
    _bin_case(
        "binary-bytes-unclaimed", binary(bin_input("INT32", [2], 8), b"\0" * 12), "no input claims them"
    ),
    _bin_case(
        "bytes-length-prefix-overruns",
        binary(bin_input("BYTES", [1], 8), b"\xff\xff\xff\x7fabcd"),
        "claims 2147483647 bytes",
    ),
    _bin_case(
        "bytes-length-prefix-missing",
        binary(bin_input("BYTES", [2], 6), b"\x01\0\0\0ab"),
        "no 4-byte length prefix",
    ),
    _bin_case("bool-bytes-not-0-or-1", binary(bin_input("BOOL", [2], 2), b"\x01\x07"), "must be 0 or 1"),
    _bin_case(
        "binary-10e12-elements", binary(bin_input("FP64", [10**6, 10**6], 8), b"\0" * 8), "over the limit"
    ),
    _bin_case(
        "binary-and-data",
        binary(
            {"inputs": [{**tensor("INT32", [2], [1, 2]), "parameters": {"binary_data_size": 8}}]}, b"\0" * 8
        ),
        "both 'data' and 'binary_data_size'",
    ),
    # --- transport
    Case(
        "multipart-form",
        GOOD_V2,
        415,
        "multipart/form-data",
        headers={"content-type": "multipart/form-data; b=x"},
    ),
    Case("image-body", GOOD_V2, 415, "image/png", headers={"content-type": "image/png"}),
    Case("get-on-infer", None, 405, "method get not allowed", method="GET"),
    Case("delete-on-ready", None, 405, "method delete not allowed", method="DELETE", path="/v2/health/ready"),
    Case("unknown-path", None, 404, "no route for /v3/models", method="GET", path="/v3/models"),
    Case("unknown-model", GOOD_V2, 404, "model 'nope' not found", path="/v2/models/nope/infer"),
    Case("unknown-version", GOOD_V2, 404, "no version '9'", path="/v2/models/{model}/versions/9/infer"),
    # --- V1
    Case(
        "v1-instances-ragged",
        b'{"instances": [[1, 2, 3, 4], [1, 2]]}',
        400,
        "not a rectangular array",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-instances-strings",
        b'{"instances": [["a", "b", "c", "d"]]}',
        400,
        "takes numbers; input 'instances' holds strings",
        path="/v1/models/{model}:predict",
    ),
    Case(  # numpy would parse them: a silent coercion
        "v1-instances-numbers-as-strings",
        b'{"instances": [["6.8", "2.8", "4.8", "1.4"]]}',
        400,
        "holds strings",
        path="/v1/models/{model}:predict",
    ),
    Case(  # KServe's named-record rows, sent to a predictor without a transformer
        "v1-instances-named-records",
        b'{"instances": [{"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "petal_width": 1.4}]}',
        400,
        "holds named records (JSON objects)",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-instances-a-boolean-among-numbers",
        b'{"instances": [[true, 2.8, 4.8, 1.4]]}',
        400,
        "'instances' mixes booleans with numbers",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-named-columns-of-booleans",
        b'{"inputs": {"a": [true], "b": [2.8], "c": [4.8], "d": [1.4]}}',
        400,
        "input 'a' holds booleans",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v2-a-boolean-among-integers",
        v2(tensor("INT32", [2], [1, True])),
        400,
        "must hold only integers, not booleans",
        server="echo",
    ),
    Case(
        "v2-a-boolean-among-floats",
        v2(tensor("FP32", [2, 1], [[2.5], [True]])),
        400,
        "must hold only numbers, not booleans",
        server="echo",
    ),
    Case(
        "v1-explain",  # KServe's explainer verb: said so, not a bare 405
        b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}',
        404,
        "explainers (spec.explainer, :explain) are not supported",
        path="/v1/models/{model}:explain",
    ),
    Case(
        "v1-instances-empty",
        b'{"instances": []}',
        400,
        "'instances' is empty",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-instances-not-a-list",
        b'{"instances": 5}',
        400,
        "'instances' must be a list",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-instances-wrong-width",
        b'{"instances": [[1, 2, 3]]}',
        400,
        "got shape [1, 3]",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-neither-key",
        b'{"rows": [[1, 2, 3, 4]]}',
        400,
        "'instances' or 'inputs'",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-nested-100k",
        b'{"instances":' + b"[" * DEEP + b"]" * DEEP + b"}",
        400,
        "depth limit",
        path="/v1/models/{model}:predict",
    ),
    Case(
        "v1-onnx-wrong-rank",
        b'{"instances": [1, 2, 3, 4]}',
        400,
        "expects input 'X' of shape [-1, 4]",
        path="/v1/models/onnx-iris:predict",
    ),
    Case(
        "v2-onnx-wrong-width",
        v2(tensor(shape=[1, 3], data=[1, 2, 3])),
        400,
        "of shape [-1, 4] (-1: any size); got shape [1, 3]",
        path="/v2/models/onnx-iris/infer",
    ),
    Case(  # ONNX's input is FP32: a value the cast would change is refused, not changed
        "v2-onnx-fp64-out-of-fp32-range",
        v2(tensor("FP64", [1, 4], [1e39, 2.8, 4.8, 1.4])),
        400,
        "input 'X' takes FP32; a value is out of its range",
        path="/v2/models/onnx-iris/infer",
    ),
    Case(
        "v1-onnx-booleans",
        b'{"instances": [[true, false, true, false]]}',
        400,
        "input 'X' takes FP32; it got BOOL",
        path="/v1/models/onnx-iris:predict",
    ),
    Case(  # an input the model does not have would be dropped without a word
        "v2-onnx-an-extra-input",
        v2({**tensor("FP32"), "name": "X"}, {**tensor("FP32"), "name": "Z"}),
        400,
        "has no input 'Z'; its inputs: X",
        path="/v2/models/onnx-iris/infer",
    ),
    Case(
        "v2-xgboost-wrong-width",
        v2(tensor(shape=[1, 3], data=[1, 2, 3])),
        400,
        "expects shape [rows, 4] (4 features per row); got shape [1, 3]",
        path="/v2/models/xgboost-iris/infer",
    ),
    Case(  # the shape said is of the inputs side by side: say so, and what each was
        "v2-xgboost-two-matrices",
        v2(tensor(), {**tensor(), "name": "y"}),
        400,
        "got shape [1, 8], the 2 inputs (x [1, 4], y [1, 4]) side by side as columns",
        path="/v2/models/xgboost-iris/infer",
    ),
    Case(
        "v1-xgboost-strings",
        b'{"instances": [["a", "b", "c", "d"]]}',
        400,
        "takes numbers; input 'instances' holds strings",
        path="/v1/models/xgboost-iris:predict",
    ),
    Case(
        "v1-unknown-model", b'{"instances": [[1, 2, 3, 4]]}', 404, "not found", path="/v1/models/nope:predict"
    ),
    # --- repository extension
    Case("repo-load-traversal", b"", 404, "no route", path="/v2/repository/models/..%2F..%2Fetc/load"),
    Case("repo-load-dotdot", b"", 404, "not found", path="/v2/repository/models/%2E%2E/load"),
    Case("repo-load-unknown", b"", 404, "model 'nope' not found", path="/v2/repository/models/nope/load"),
    Case("repo-unload-unknown", b"", 404, "model 'nope' not found", path="/v2/repository/models/nope/unload"),
    Case("repo-index-bad-json", b'{"ready":', 400, "not valid json", path="/v2/repository/index"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_gets_a_clear_4xx_and_the_server_keeps_serving(
    servers: dict[str, InProcessServer], case: Case
) -> None:
    server = servers[case.server]
    model = "sklearn-iris" if case.server == "iris" else "echo"
    started = time.monotonic()
    response = httpx.request(
        case.method,
        server.url + case.path.format(model=model),
        content=case.body,
        headers=case.headers,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert case.says.lower() in message.lower(), message
    assert elapsed < 5, f"{case.id} took {elapsed:.1f}s"
    _assert_still_serving(server, model)


def _assert_still_serving(server: InProcessServer, model: str) -> None:
    if model == "sklearn-iris":
        good = httpx.post(
            server.url + "/v1/models/sklearn-iris:predict", json={"instances": [IRIS_ROW]}, timeout=30
        )
        assert good.status_code == 200 and good.json() == {"predictions": [1]}, good.text
    else:
        body = v2(tensor("INT32", [2], [7, -7]))
        good = httpx.post(server.url + "/v2/models/echo/infer", content=body, timeout=30)
        assert good.status_code == 200 and good.json()["outputs"][0]["data"] == [7, -7], good.text


def test_a_shape_of_10e12_elements_is_refused_without_allocating(servers: dict[str, InProcessServer]) -> None:
    """Answered in milliseconds: the element count is checked before any array is built."""
    body = v2(tensor(shape=[10**6, 10**6], data=[1.0]))
    with servers["iris"].client() as client:
        client.get("/v2/health/live")  # warm the connection
        started = time.monotonic()
        response = client.post("/v2/models/sklearn-iris/infer", content=body)
        elapsed = time.monotonic() - started
    assert response.status_code == 400
    assert elapsed < 0.5, f"took {elapsed:.3f}s"


def test_lenient_but_exact_values_are_accepted(servers: dict[str, InProcessServer]) -> None:
    """Not everything unusual is an error: whole floats for integers, UINT64's top value, nested BYTES data."""
    cases = [
        (tensor("INT32", [2], [2.0, -3.0]), [2, -3]),
        (tensor("UINT64", [2], [1, 2**64 - 1]), [1, 2**64 - 1]),
        (tensor("BYTES", [1, 2], [["a", "b"]]), ["a", "b"]),
        (tensor("FP32", [0], []), []),
    ]
    for sent, expected in cases:
        response = httpx.post(servers["echo"].url + "/v2/models/echo/infer", content=v2(sent), timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == expected


def test_booleans_are_found_in_large_bodies_too() -> None:
    """The large-body search (letters, not substrings) finds what the small one finds."""
    from serving.protocol.json_body import mentions_booleans

    numbers = b",".join([b"6.8123e-05"] * 2000)
    for tail, holds in ((b"", False), (b",true", True), (b",false", True), (b',"trueish"', True)):
        body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[' + numbers + tail + b"]}]}"
        assert (
            len(body) > 4096
            and mentions_booleans(body) is holds
            and mentions_booleans(memoryview(body)) is holds
        )
