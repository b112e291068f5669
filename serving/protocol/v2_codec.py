"""Open Inference Protocol (V2) REST: JSON and the binary tensor extension <-> InferRequest/Response.

Decoding validates name, datatype and shape against the data before anything is allocated from a
client-supplied size; conversions are numpy calls, never per-element Python loops (BYTES excepted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from serving.errors import BadRequest
from serving.protocol import binary
from serving.protocol.content_types import content_typed
from serving.protocol.dtypes import NoDatatype, numpy_dtype, unencodable, v2_datatype
from serving.protocol.json_body import check_depth, holds_booleans, loads_object, mentions_booleans
from serving.settings import Limits
from serving.types import InferRequest, InferResponse, RequestedOutput

HEADER_LENGTH = "inference-header-content-length"
_DEFAULT_LIMITS = Limits()


_MAX_DIMENSIONS_PRODUCT = int(np.iinfo(np.intp).max)  # numpy refuses a shape past it, sized 0 or not


def decode_request(
    body: bytes, header_length: str | None = None, limits: Limits = _DEFAULT_LIMITS
) -> InferRequest:
    json_part, tail = binary.split_body(body, header_length)
    doc = loads_object(json_part)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    parameters = _object(doc.get("parameters"), "parameters")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    reader = binary.Reader(tail)
    inputs: dict[str, np.ndarray] = {}
    bools = mentions_booleans(json_part)
    for index, raw in enumerate(raw_inputs):
        name, array = _decode_input(raw, index, reader, limits, bools)
        if name in inputs:
            raise BadRequest(f"input {name!r} appears more than once")
        inputs[name] = array
    reader.finish()
    return InferRequest(
        inputs=inputs,
        id=request_id,
        parameters=parameters,
        outputs=_decode_outputs(doc.get("outputs")),
        binary_output=(_flag(parameters, "binary_data_output", "parameters") is True)
        if parameters
        else False,
    )


def _flag(params: dict[str, Any], key: str, where: str) -> bool | None:
    """A binary-extension switch: true, false or absent; anything else (\"true\", 1) would silently mean
    false, so it is the caller's 400."""
    flag = params.get(key)
    if flag is None or isinstance(flag, bool):
        return flag
    raise BadRequest(f"'{where}.{key}' must be true or false, not {flag!r}")


def _object(value: Any, what: str) -> dict[str, Any]:
    """A `parameters` object. The protocol's values are strings, numbers and booleans; an array or object is
    passed to the runtime as it came, as MLServer and KServe pass it (runtimes ported from them read such)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'{what}' must be a JSON object")
    return value


def _decode_input(
    raw: Any, index: int, reader: binary.Reader, limits: Limits, bools: bool = True
) -> tuple[str, np.ndarray]:
    if not isinstance(raw, dict):
        raise BadRequest(f"inputs[{index}] must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{index}].name must be a non-empty string")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise BadRequest(f"input {name!r}: 'datatype' must be a string")
    dtype = numpy_dtype(datatype)
    shape = _shape(raw.get("shape"), name)
    count = element_count(name, shape, limits)
    params = raw.get("parameters")
    if params is None:
        size = None
    else:
        _object(params, f"input {name!r} parameters")
        size = params.get("binary_data_size")
        refuse_shared_memory(params, f"input {name!r}")
    if size is not None:
        if "data" in raw:
            raise BadRequest(f"input {name!r} has both 'data' and 'binary_data_size'")
        return name, content_typed(reader.tensor(name, datatype, shape, count, size), params, name)
    if "data" not in raw:
        raise BadRequest(f"input {name!r} has no 'data' (and no 'binary_data_size')")
    array = decode_json_data(raw["data"], name, datatype, dtype, shape, count, limits, bools)
    return name, content_typed(array, params, name) if params else array


def element_count(name: str, shape: tuple[int, ...], limits: Limits) -> int:
    """The elements of `shape` (non-negative dimensions), refused past `--max-tensor-elements`; a shape with
    no elements is refused too if numpy could not represent it (its other dimensions' product past int64)."""
    count = math.prod(shape)
    if count > limits.max_tensor_elements:
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} has {count} elements, over the limit of {limits.max_tensor_elements}"
        )
    if count == 0 and math.prod(d for d in shape if d) > _MAX_DIMENSIONS_PRODUCT:
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} is too large to represent, even with no elements"
        )
    return count


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of integers")
    for d in raw:
        if type(d) is not int:
            raise BadRequest(f"input {name!r}: 'shape' must be a list of integers")
    if raw and min(raw) < 0:
        raise BadRequest(f"input {name!r}: 'shape' {raw} has a negative dimension")
    return tuple(raw)


def decode_json_data(
    data: Any,
    name: str,
    datatype: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    count: int,
    limits: Limits,
    bools: bool = False,
) -> np.ndarray:
    """`bools`: the text may hold JSON booleans, so numbers are checked for any (numpy would count them)."""
    if isinstance(data, dict):
        raise BadRequest(f"input {name!r}: 'data' must be a list (flat or nested), not an object")
    if not isinstance(data, list):
        if data is None:
            raise BadRequest(f"input {name!r}: 'data' must be a list of values, not null")
        if count != 1:
            raise BadRequest(
                f"input {name!r}: 'data' is a single value, not a list, and shape {list(shape)} needs {count} "
                "elements"
            )
        data = [data]  # one value for a one-element tensor (a scalar's shape [])
    check_depth(data, limits.max_json_depth, name)
    if (
        data and not isinstance(data[0], list) and len(data) != count
    ):  # flat data: refuse before converting it
        _mismatch(name, shape, count, datatype, len(data))
    if datatype == "BYTES":
        array = _bytes_array(data, name, shape, count)
    else:
        array = _numeric_array(data, name, datatype, dtype, bools)
    if array.size != count:
        _mismatch(name, shape, count, datatype, array.size)
    if array.ndim > 1 and array.shape != shape:  # nested data is row-major by its nesting: it must agree
        raise BadRequest(
            f"input {name!r}: 'data' is nested as {list(array.shape)} but 'shape' is {list(shape)}"
        )
    return array.reshape(shape)


def _mismatch(name: str, shape: tuple[int, ...], count: int, datatype: str, found: int) -> None:
    raise BadRequest(
        f"input {name!r}: shape {list(shape)} needs {count} elements of {datatype} but 'data' has {found}"
    )


# Which kinds of array numpy infers from the JSON values are acceptable for each target kind.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_KIND_NAMES = {"b": "booleans", "i": "numbers", "u": "numbers", "f": "non-integer numbers", "U": "strings"}


def _numeric_array(
    data: list[Any], name: str, datatype: str, dtype: np.dtype, bools: bool = False
) -> np.ndarray:
    """JSON values -> `dtype`, refusing what a cast would silently change (1.5 -> 1, "5" -> 5, 1e10 -> inf,
    true -> 1)."""
    try:
        inferred = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {name!r}: 'data' is not a rectangular array of {datatype}") from exc
    kind = inferred.dtype.kind
    if bools and kind in "iuf" and holds_booleans(data):
        raise BadRequest(f"input {name!r}: {datatype} 'data' must hold only {_expected(dtype)}, not booleans")
    if inferred.size == 0:
        return inferred.astype(dtype)
    if kind in _ACCEPTED_KINDS[dtype.kind]:
        return _cast(inferred, name, datatype, dtype)
    if kind == "f" and dtype.kind in "iu":
        return _integral(data, inferred, name, datatype, dtype)
    found = _KIND_NAMES.get(kind, "nulls or mixed values")
    raise BadRequest(f"input {name!r}: {datatype} 'data' must hold only {_expected(dtype)}, not {found}")


def _expected(dtype: np.dtype) -> str:
    return {"b": "true/false", "f": "numbers"}.get(dtype.kind, "integers")


def _cast(array: np.ndarray, name: str, datatype: str, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:
        return array
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise BadRequest(f"input {name!r}: value {bad} is out of range for {datatype}")
        return array.astype(dtype)
    out = array.astype(dtype)
    if dtype.kind == "f" and dtype.itemsize < 8 and not np.isfinite(out).all():
        raise BadRequest(f"input {name!r}: a value is out of range for {datatype}")
    return out


def _integral(data: list[Any], inferred: np.ndarray, name: str, datatype: str, dtype: np.dtype) -> np.ndarray:
    """Floats for an integer type: fine only if every value is a whole number in range (2.0, or 2**64-1
    which numpy infers as float64 next to a smaller integer); the exact conversion re-reads `data`."""
    if dtype.itemsize == 8:
        # A float at either end of a 64-bit range was rounded there: the JSON parser gives an integer literal
        # past the range (-2**63 - 1) as the nearest float, the end itself (a literal in range stays an int)
        info = np.iinfo(dtype)
        low = info.min if info.min < 0 else -1  # 0.0 is a whole UINT64
        values = np.asarray(data, dtype=object).ravel()
        if any(type(v) is float and not low < v < info.max for v in values):
            raise BadRequest(f"input {name!r}: 'data' is out of range for {datatype}")
    try:
        exact = np.asarray(data, dtype=dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        raise BadRequest(f"input {name!r}: 'data' is out of range for {datatype}") from exc
    if not np.array_equal(exact, inferred):
        raise BadRequest(
            f"input {name!r}: {datatype} 'data' must hold only integers, not non-integer numbers"
        )
    return exact


def _bytes_array(data: list[Any], name: str, shape: tuple[int, ...], count: int) -> np.ndarray:
    try:
        flat = np.asarray(data, dtype=object)
    except ValueError as exc:
        raise BadRequest(f"input {name!r}: BYTES 'data' is ragged: {exc}") from exc
    if flat.size != count:  # before the per-element loop below
        _mismatch(name, shape, count, "BYTES", flat.size)
    if flat.ndim > 1 and flat.shape != shape:
        raise BadRequest(
            f"input {name!r}: 'data' is nested as {list(flat.shape)} but 'shape' is {list(shape)}"
        )
    out = np.empty(flat.size, dtype=object)
    for i, value in enumerate(flat.ravel()):
        if not isinstance(value, str):
            raise BadRequest(f"input {name!r}: BYTES elements must be strings, got {type(value).__name__}")
        out[i] = value.encode()
    return out


def _decode_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None or raw == []:  # none named: all the model's default outputs, as gRPC's empty list means
        return None
    if not isinstance(raw, list):
        raise BadRequest("'outputs' must be a list")
    outputs = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"outputs[{index}] must be an object with a string 'name'")
        params = _object(item.get("parameters"), f"outputs[{index}].parameters")
        flag = _flag(params, "binary_data", f"outputs[{index}].parameters")
        if params:
            refuse_shared_memory(params, f"output {item['name']!r}")
        outputs.append(RequestedOutput(item["name"], flag, params))
    refuse_repeated_outputs(outputs)
    return outputs


def refuse_shared_memory(params: Mapping[str, Any], where: str) -> None:
    """Triton's shared-memory parameters: a 400, since the tensor would silently travel in the body instead (an
    output's region left stale after a 200)."""
    if "shared_memory_region" in params:
        raise BadRequest(
            f"{where}: shared memory (shared_memory_region) is not supported here; send and receive tensors in "
            "the request and response (JSON data, the binary extension, gRPC contents or raw contents)"
        )


def refuse_repeated_outputs(outputs: list[RequestedOutput]) -> None:
    """An output asked for twice: a 400, as Triton answers (one would be dropped without a word)."""
    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise BadRequest(f"output {twice!r} is requested more than once")


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
    """Serialise a response; outputs asked for as binary go after the JSON header."""
    wanted = {o.name: o for o in request.outputs} if request.outputs is not None else {}
    outputs = []
    chunks: list[bytes | memoryview] = []
    for name, array in response.outputs.items():
        requested = wanted.get(name)
        as_binary = (
            request.binary_output if requested is None or requested.binary is None else requested.binary
        )
        try:
            datatype = v2_datatype(array.dtype)
        except NoDatatype:
            raise unencodable(response.model_name, response.outputs) from None
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if as_binary:
            chunk = binary.encode_tensor(array, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = json_data(array, datatype)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name, "outputs": outputs}
    if response.model_version is not None:
        doc["model_version"] = response.model_version
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    return b"".join([header, *chunks]), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def json_data(array: np.ndarray, datatype: str) -> list[Any] | np.ndarray:
    """Row-major flat data, as the spec's canonical form.

    Numeric arrays stay numpy: orjson (OPT_SERIALIZE_NUMPY) writes them without a Python list and with
    each type's shortest repr (FP32 1e30 stays 1e+30, not float64's 1.0000000150474662e+30).
    """
    flat = array.ravel()
    if datatype == "BYTES":
        return [_text(v) for v in flat]
    return flat if flat.dtype.isnative else flat.tolist()


def _text(value: Any) -> str:
    """A BYTES element as JSON text: bytes decoded, anything that is not text (a runtime's None, number or dict
    in an object array) as its str(), the same bytes the binary extension and gRPC send for it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
