"""The one table between Open Inference Protocol datatypes and numpy dtypes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving.errors import BadRequest, ModelFailure

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_NUMPY_TO_V2: dict[str, str] = {
    dt.str.lstrip("<>|="): name for name, dt in V2_TO_NUMPY.items() if name != "BYTES"
}

_BY_DTYPE: dict[np.dtype, str] = {dt: name for name, dt in V2_TO_NUMPY.items() if name != "BYTES"}

# Little-endian wire dtypes for the binary extension (BYTES has its own framing).
WIRE_DTYPES: dict[str, np.dtype] = {
    name: dt.newbyteorder("<") for name, dt in V2_TO_NUMPY.items() if name != "BYTES"
}


def numpy_dtype(datatype: str) -> np.dtype:
    try:
        return V2_TO_NUMPY[datatype]
    except (KeyError, TypeError):
        known = ", ".join(V2_TO_NUMPY)
        raise BadRequest(f"unknown datatype {datatype!r}; expected one of {known}") from None


def v2_datatype(dtype: np.dtype) -> str:
    """V2 name of a numpy dtype; strings and objects are BYTES."""
    name = _BY_DTYPE.get(dtype)  # native-order dtypes: one hash lookup per output on the hot path
    if name is not None:
        return name
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _NUMPY_TO_V2[dtype.str.lstrip("<>|=")]
    except KeyError:
        raise NoDatatype(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


class NoDatatype(ModelFailure):
    """A model's tensor of a dtype the protocol cannot carry (datetime64, complex): the model's fault, a 500."""


def unencodable(model: str, outputs: Mapping[str, np.ndarray]) -> ModelFailure:
    """The 500 for an answer an encoder could not type, naming the model and the output (the encoders ask only
    once one failed: nothing is checked on the usual answer)."""
    for name, array in outputs.items():
        try:
            v2_datatype(array.dtype)
        except NoDatatype:
            return ModelFailure(
                f"model {model!r} returned output {name!r} as {array.dtype}, which has no Open Inference Protocol "
                "datatype: return it as a number, boolean or string array"
            )
    return ModelFailure(f"model {model!r} returned an output with no Open Inference Protocol datatype")


def itemsize(datatype: str) -> int:
    """Bytes per element on the wire; 0 for BYTES (variable length)."""
    return 0 if datatype == "BYTES" else numpy_dtype(datatype).itemsize


def cast_exactly(array: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """`array` as `dtype` when no value changes on the way (a model's input type differs from what was sent):
    booleans only as booleans, whole floats or in-range integers for an integer type, floats that stay finite
    for a narrower float. Anything else is the caller's 400, naming what would have changed."""
    if array.dtype == dtype:
        return array
    source, target = array.dtype.kind, dtype.kind
    sent, wanted = v2_datatype(array.dtype), v2_datatype(dtype)
    if (source == "b") != (target == "b"):
        raise BadRequest(f"{what} takes {wanted}; it got {sent}")
    if target in "iu":
        if source == "f" and not (np.isfinite(array).all() and (array == np.trunc(array)).all()):
            raise BadRequest(f"{what} takes {wanted}; {sent} values that are not whole numbers would change")
        if array.size:
            info = np.iinfo(dtype)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise BadRequest(
                    f"{what} takes {wanted}; {low if low < info.min else high} is out of its range"
                )
        return array.astype(dtype)
    with np.errstate(over="ignore"):  # an overflow is found below and answered, not warned about
        out = array.astype(dtype)
    if target == "f" and (source != "f" or dtype.itemsize < array.dtype.itemsize):
        finite = np.isfinite(out)
        if not finite.all() and (source != "f" or np.isfinite(array)[~finite].any()):
            raise BadRequest(f"{what} takes {wanted}; a value is out of its range")
    return out
