"""Property tests of the V2 codec (hypothesis): for every one of the 13 datatypes, any array survives
request decoding and response encoding, as JSON and as the binary extension; and no input, however broken,
makes the decoder raise anything but a 400 `BadRequest`.

In-process (no server): these are the codec's own laws; the HTTP tests show the same codec behind the wire.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.errors import BadRequest
from serving.protocol import binary, v1_codec, v2_codec
from serving.protocol.dtypes import V2_TO_NUMPY
from serving.settings import Limits
from serving.types import InferRequest, InferResponse, RequestedOutput

DATATYPES = list(V2_TO_NUMPY)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache  # one strategy per (datatype, for_json): hypothesis validates a new strategy on each draw
def arrays(datatype: str, for_json: bool) -> st.SearchStrategy[np.ndarray]:
    """Arrays of `datatype`: finite floats (JSON has no NaN/Infinity), UTF-8 text for BYTES over JSON."""
    if datatype == "BYTES":
        element = st.text(max_size=8).map(str.encode) if for_json else st.binary(max_size=8)
        return SHAPES.flatmap(
            lambda shape: st.lists(element, min_size=math.prod(shape), max_size=math.prod(shape)).map(
                lambda items: np.array(items + [b""], dtype=object)[:-1].reshape(shape)
            )
        )
    dtype = V2_TO_NUMPY[datatype]
    elements = (
        st.floats(width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False)
        if dtype.kind == "f"
        else None
    )
    return hnp.arrays(dtype, SHAPES, elements=elements)


def assert_same(decoded: np.ndarray, original: np.ndarray, datatype: str) -> None:
    assert decoded.shape == original.shape
    if datatype == "BYTES":
        assert decoded.dtype == object and decoded.ravel().tolist() == original.ravel().tolist()
    else:
        assert decoded.dtype == V2_TO_NUMPY[datatype]
        assert np.array_equal(decoded, original)


def json_request(array: np.ndarray, datatype: str) -> bytes:
    data = v2_codec.json_data(array, datatype)
    return orjson.dumps(
        {"inputs": [{"name": "t", "datatype": datatype, "shape": list(array.shape), "data": data}]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


@pytest.mark.parametrize("datatype", DATATYPES)
@PROPERTY
@given(data=st.data())
def test_json_request_round_trip(datatype: str, data: st.DataObject) -> None:
    array = data.draw(arrays(datatype, for_json=True))
    request = v2_codec.decode_request(json_request(array, datatype))
    assert_same(request.inputs["t"], array, datatype)


@pytest.mark.parametrize("datatype", DATATYPES)
@PROPERTY
@given(data=st.data())
def test_binary_request_round_trip(datatype: str, data: st.DataObject) -> None:
    array = data.draw(arrays(datatype, for_json=False))
    chunk = binary.encode_tensor(array, datatype)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "t",
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": len(chunk)},
                }
            ]
        }
    )
    request = v2_codec.decode_request(header + chunk, str(len(header)))
    assert_same(request.inputs["t"], array, datatype)


def _decode_response(body: bytes, headers: dict[str, str]) -> dict[str, np.ndarray]:
    """What a client does with our response: JSON data, or binary chunks after the JSON header."""
    length = headers.get("inference-header-content-length")
    doc = orjson.loads(body[: int(length)] if length else body)
    tail = memoryview(body)[int(length) :] if length else memoryview(b"")
    out, offset = {}, 0
    for entry in doc["outputs"]:
        datatype, shape = entry["datatype"], tuple(entry["shape"])
        if "data" in entry:
            values = entry["data"]
            if datatype == "BYTES":
                out[entry["name"]] = np.array([v.encode() for v in values] + [b""], dtype=object)[
                    :-1
                ].reshape(shape)
            else:
                out[entry["name"]] = np.array(values, dtype=V2_TO_NUMPY[datatype]).reshape(shape)
        else:
            size = entry["parameters"]["binary_data_size"]
            out[entry["name"]] = binary.Reader(tail[offset : offset + size]).tensor(
                entry["name"], datatype, shape, math.prod(shape), size
            )
            offset += size
    return out


@pytest.mark.parametrize("as_binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
@PROPERTY
@given(data=st.data())
def test_response_round_trip(datatype: str, as_binary: bool, data: st.DataObject) -> None:
    array = data.draw(arrays(datatype, for_json=not as_binary))
    request = InferRequest(inputs={}, outputs=[RequestedOutput("t", binary=as_binary)])
    body, headers = v2_codec.encode_response(InferResponse("m", "1", {"t": array}), request)
    assert ("inference-header-content-length" in headers) == as_binary
    assert_same(_decode_response(body, headers)["t"], array, datatype)


# --- Nothing but BadRequest, whatever arrives ----------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.sampled_from(DATATYPES),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
SMALL_LIMITS = Limits(max_tensor_elements=1000, max_json_depth=8)
# The parts of request_like, built once (a strategy built inside a composite is validated again on every draw).
NAMES = st.one_of(st.just("t"), JSON_VALUES)
TYPES = st.one_of(st.sampled_from(DATATYPES), JSON_VALUES)
SHAPE_LIKE = st.one_of(st.lists(st.integers(-2, 2**64), max_size=3), JSON_VALUES)
PARAMETERS = st.one_of(
    st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-5, 64), JSON_VALUES)}), JSON_VALUES
)


@st.composite
def request_like(draw: st.DrawFn) -> dict[str, Any]:
    """Documents shaped like V2 requests with any field wrong, missing or of the wrong type."""
    tensor = {"name": draw(NAMES), "datatype": draw(TYPES), "shape": draw(SHAPE_LIKE)}
    if draw(st.booleans()):
        tensor["data"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        tensor["parameters"] = draw(PARAMETERS)
    doc: dict[str, Any] = {
        "inputs": draw(st.one_of(st.lists(st.just(tensor), min_size=1, max_size=2), JSON_VALUES))
    }
    for key in ("outputs", "parameters", "id"):
        if draw(st.booleans()):
            doc[key] = draw(JSON_VALUES)
    return doc


@settings(max_examples=250, deadline=None)
@given(
    doc=request_like(), tail=st.binary(max_size=64), header_length=st.one_of(st.none(), st.integers(-3, 600))
)
def test_v2_decoder_raises_only_bad_request(
    doc: dict[str, Any], tail: bytes, header_length: int | None
) -> None:
    head = json.dumps(doc).encode()
    body = head + tail if header_length is not None else head
    length = (
        None
        if header_length is None
        else str(min(header_length, len(head)) if header_length > 3 else header_length)
    )
    try:
        request = v2_codec.decode_request(body, length, SMALL_LIMITS)
    except BadRequest as exc:
        assert exc.message
    else:
        assert all(isinstance(a, np.ndarray) for a in request.inputs.values())


@settings(max_examples=150, deadline=None)
@given(
    doc=st.dictionaries(st.sampled_from(["instances", "inputs", "parameters", "x"]), JSON_VALUES, max_size=3)
)
def test_v1_decoder_raises_only_bad_request(doc: dict[str, Any]) -> None:
    try:
        v1_codec.decode_request(json.dumps(doc).encode(), SMALL_LIMITS)
    except BadRequest as exc:
        assert exc.message


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=200),
    header_length=st.one_of(st.none(), st.text(max_size=4), st.integers(-5, 300).map(str)),
)
def test_v2_decoder_on_arbitrary_bytes_raises_only_bad_request(
    body: bytes, header_length: str | None
) -> None:
    try:
        v2_codec.decode_request(body, header_length, SMALL_LIMITS)
    except BadRequest as exc:
        assert exc.message


def test_v1_outputs_of_different_row_counts_are_answered_whole_by_name() -> None:
    """No row-by-row pairing exists: nothing may be cut off (it was, or an IndexError 500)."""
    import numpy as np
    import orjson

    from serving.protocol.v1_codec import encode_response
    from serving.types import InferResponse

    for order in (("first", "all"), ("all", "first")):
        arrays = {"first": np.array([[1.0, 2.0]]), "all": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])}
        outputs = {name: arrays[name] for name in order}
        answer = orjson.loads(encode_response(InferResponse("m", "1", outputs)))
        assert answer == {"predictions": {"first": [[1.0, 2.0]], "all": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}}


def test_v2_an_empty_outputs_list_means_the_default_outputs() -> None:
    """As gRPC's empty repeated field: REST answered no outputs at all."""
    import orjson

    from serving.protocol.v2_codec import decode_request

    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}], "outputs": []}
    assert decode_request(orjson.dumps(body)).outputs is None
