"""KServe V1 (TensorFlow-Serving style) JSON: `instances` or `inputs` in, `predictions` out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from serving.errors import BadRequest
from serving.protocol.json_body import check_depth, holds_booleans, loads_object, mentions_booleans
from serving.protocol.v2_codec import json_data
from serving.settings import Limits
from serving.types import InferRequest, InferResponse

V1_INPUT = "instances"
_DEFAULT_LIMITS = Limits()


def decode_request(body: bytes, limits: Limits = _DEFAULT_LIMITS) -> InferRequest:
    """`instances` (row format) or `inputs` (a list, or a dict of named columns) -> tensors."""
    doc = loads_object(body)
    bools = mentions_booleans(body)
    if "instances" in doc:
        raw: Any = doc["instances"]
        if not isinstance(raw, list):
            raise BadRequest("'instances' must be a list")
        inputs = {V1_INPUT: _array(raw, "instances", limits, bools)}
    elif "inputs" in doc:
        raw = doc["inputs"]
        if isinstance(raw, dict):
            if not raw:
                raise BadRequest("'inputs' must name at least one tensor")
            inputs = {str(k): _array(v, f"inputs.{k}", limits, bools) for k, v in raw.items()}
        elif isinstance(raw, list):
            inputs = {V1_INPUT: _array(raw, "inputs", limits, bools)}
        else:
            raise BadRequest("'inputs' must be a list or an object of named tensors")
    else:
        raise BadRequest("request must have 'instances' or 'inputs'")
    params = doc.get("parameters")
    return InferRequest(inputs=inputs, parameters=params if isinstance(params, dict) else {})


def _array(raw: Any, where: str, limits: Limits, bools: bool = True) -> np.ndarray:
    if not isinstance(raw, list):
        raw = [raw]
    if not raw:
        raise BadRequest(f"'{where}' is empty")
    check_depth(raw, limits.max_json_depth, where)
    try:
        array = np.asarray(raw)
    except ValueError as exc:
        raise BadRequest(f"'{where}' is not a rectangular array: {exc}") from exc
    if array.size > limits.max_tensor_elements:
        raise BadRequest(
            f"'{where}' has {array.size} elements, over the limit of {limits.max_tensor_elements}"
        )
    kind = array.dtype.kind
    if kind == "U":
        array = np.char.encode(array, "utf-8").astype(object)
    elif bools and kind in "iuf" and holds_booleans(raw):  # numpy made true 1: the caller mixed the two
        raise BadRequest(f"'{where}' mixes booleans with numbers; send one or the other")
    return array


def encode_response(response: InferResponse) -> bytes:
    """One output -> its rows; several -> one object per row keyed by output name (outputs with different
    row counts: one object of whole outputs by name)."""
    outputs = response.outputs
    if len(outputs) == 1:
        (array,) = outputs.values()
        predictions: Any = _rows(array)
    else:
        # Python lists here: rows of a column are numpy scalars, which orjson does not all accept.
        columns = {name: _plain(_rows(array)) for name, array in outputs.items()}
        counts = {len(col) for col in columns.values()}
        if len(counts) == 1:
            predictions = [{name: col[i] for name, col in columns.items()} for i in range(counts.pop())]
        else:  # no row-by-row pairing exists: each output whole, by name, rather than rows cut off
            predictions = columns
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain(rows: list[Any] | np.ndarray) -> list[Any]:
    return rows.tolist() if isinstance(rows, np.ndarray) else rows


def _rows(array: np.ndarray) -> list[Any] | np.ndarray:
    """Numeric rows stay numpy (orjson writes them natively); text becomes nested lists of str."""
    if array.dtype.kind in "OSU":
        text: list[Any] = np.asarray(json_data(array, "BYTES"), dtype=object).reshape(array.shape).tolist()
        return text
    if array.ndim == 0:
        return [array.item()]
    if not array.dtype.isnative:
        swapped: list[Any] = array.tolist()
        return swapped
    return np.ascontiguousarray(array)
