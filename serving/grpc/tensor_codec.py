"""gRPC Open Inference Protocol messages <-> InferRequest / InferResponse (TensorDict inside).

The gRPC twin of `serving/protocol/v2_codec.py`, on the same dtype table: tensors arrive either in typed
`contents` or in `raw_input_contents` (little-endian, BYTES 4-byte length-prefixed, as the binary
extension frames them). Shape x datatype is checked against the data before anything is converted.
Outputs go back in `raw_output_contents` when the request sent raw inputs or asked for binary data
(what tritonclient does), else in typed `contents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import BadRequest
from serving.grpc import messages, wire
from serving.protocol import binary
from serving.protocol.content_types import content_typed
from serving.protocol.dtypes import WIRE_DTYPES, NoDatatype, numpy_dtype, unencodable, v2_datatype
from serving.protocol.v2_codec import element_count, refuse_repeated_outputs, refuse_shared_memory
from serving.settings import Limits
from serving.types import InferRequest, InferResponse, RequestedOutput

# The typed `contents` field of each datatype (FP16 has none: raw only, as Triton documents).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_WIDE = {
    "int_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint64),
}  # range-checked, then narrowed


RAW_INPUT_CONTENTS, RAW_OUTPUT_CONTENTS = 7, 6  # field numbers in ModelInferRequest / ModelInferResponse


@dataclass(slots=True)
class ProtobufInfer:
    """A `Codec` bound to one parsed ModelInferRequest (the transport parsed it to learn the model's name);
    `raw_inputs` are views of the received bytes, split off before parsing (see `wire`)."""

    message: Any
    raw_inputs: list[memoryview] | None = None
    protocol: str = "grpc"

    @classmethod
    def parse(cls, body: bytes) -> ProtobufInfer:
        """Raises ValueError or protobuf's DecodeError for bytes that are not a ModelInferRequest."""
        rest, raw = wire.split_bytes_field(body, RAW_INPUT_CONTENTS)
        return cls(messages.ModelInferRequest.FromString(rest), raw)

    def decode(self, body: bytes, headers: object, limits: Limits) -> InferRequest:
        return decode_request(self.message, limits, self.raw_inputs)

    def encode(self, response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
        return encode_response(response, request), {}


def decode_request(message: Any, limits: Limits, raw_inputs: list[memoryview] | None = None) -> InferRequest:
    if not message.inputs:
        raise BadRequest("ModelInferRequest.inputs must hold at least one tensor")
    raw: Any = raw_inputs or message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; send one per input"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if not name:
            raise BadRequest(f"inputs[{index}].name must be a non-empty string")
        if name in inputs:
            raise BadRequest(f"input {name!r} appears more than once")
        inputs[name] = _decode_input(tensor, raw[index] if raw else None, index, limits)
    binary_output = _binary_switch(message.parameters, "binary_data_output", "parameters")
    outputs = [
        RequestedOutput(
            o.name,
            _binary_switch(o.parameters, "binary_data", f"outputs[{index}].parameters"),
            decode_parameters(o.parameters),
        )
        for index, o in enumerate(message.outputs)
    ]
    for output in outputs:
        refuse_shared_memory(output.parameters, f"output {output.name!r}")
    refuse_repeated_outputs(outputs)
    return InferRequest(
        inputs=inputs,
        id=message.id or None,
        parameters=decode_parameters(message.parameters),
        outputs=outputs or None,
        binary_output=bool(raw) or binary_output is True,
    )


def _decode_input(tensor: Any, raw: bytes | memoryview | None, index: int, limits: Limits) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    numpy_dtype(datatype)  # unknown datatype: 400 naming the known ones
    refuse_shared_memory(tensor.parameters, f"input {name!r}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape {list(shape)} has a negative dimension")
    count = element_count(name, shape, limits)
    if raw is not None:
        if tensor.HasField("contents"):
            raise BadRequest(f"input {name!r} has both contents and raw_input_contents[{index}]")
        array = _from_raw(raw, name, datatype, shape, count, index)
    else:
        array = _from_contents(tensor.contents, name, datatype, shape, count)
    if "content_type" in tensor.parameters:  # MLServer's per-input codecs (str, base64, datetime)
        return content_typed(array, decode_parameters(tensor.parameters), name)
    return array


def _from_raw(
    raw: bytes | memoryview, name: str, datatype: str, shape: tuple[int, ...], count: int, index: int
) -> np.ndarray:
    if datatype == "BYTES":
        return binary.decode_bytes(memoryview(raw), name, count).reshape(shape)
    size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
    dtype = WIRE_DTYPES[datatype]
    if size != count * dtype.itemsize:
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"raw_input_contents[{index}] has {size}"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise BadRequest(f"input {name!r}: BOOL bytes must be 0 or 1")
    return array


def _from_contents(contents: Any, name: str, datatype: str, shape: tuple[int, ...], count: int) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise BadRequest(
            f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    values = getattr(contents, field)
    used = [f.name for f, _ in contents.ListFields() if f.name != field]  # the set (non-empty) fields
    if len(values) != count:
        where = f" (its data is in {used[0]}, not {field})" if used and not len(values) else ""
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} needs {count} elements of {datatype} but {field} has {len(values)}{where}"
        )
    if used:  # which of the two was meant? Not ours to guess
        raise BadRequest(
            f"input {name!r}: {datatype} data goes in {field} only, but {', '.join(used)} is set too; "
            "send one contents field"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    dtype = numpy_dtype(datatype)
    wide = np.array(values, dtype=_WIDE.get(field, dtype))
    if field in _WIDE and wide.size:
        info = np.iinfo(dtype)
        low, high = int(wide.min()), int(wide.max())
        if low < info.min or high > info.max:
            raise BadRequest(
                f"input {name!r}: value {low if low < info.min else high} is out of range for {datatype}"
            )
    return wide.astype(dtype, copy=False).reshape(shape)


def _binary_switch(parameters: Any, key: str, where: str) -> bool | None:
    """`binary_data_output` / `binary_data`: a bool_param or absent. Any other kind (the string "true", the
    int 1) is the caller's INVALID_ARGUMENT, as REST's 400: ignoring it would answer in another encoding
    than the one asked for, without a word."""
    if key not in parameters:
        return None
    param = parameters[key]
    kind = param.WhichOneof("parameter_choice")
    if kind == "bool_param":
        return bool(param.bool_param)
    shown = f"{kind} {getattr(param, kind)!r}" if kind else "a parameter with no value"
    raise BadRequest(f"'{where}.{key}' must be a bool_param (true or false), not {shown}")


def decode_parameters(parameters: Any) -> dict[str, Any]:
    """map<string, InferParameter> -> plain values (bool, int, float or str)."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
        for key, value in parameters.items()
    }


def encode_parameters(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if value > 2**63 - 1:
                param.uint64_param = value
            else:
                param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)


def encode_response(response: InferResponse, request: InferRequest) -> bytes:
    """A serialised ModelInferResponse; raw outputs for raw requests, when asked, or when a datatype has no
    typed field (appended after the small fields, so the tensors are copied once, into the answer)."""
    message = messages.ModelInferResponse(model_name=response.model_name, id=response.id or "")
    if response.model_version is not None:
        message.model_version = response.model_version
    encode_parameters(message.parameters, response.parameters)
    try:
        datatypes = [v2_datatype(array.dtype) for array in response.outputs.values()]
    except NoDatatype:
        raise unencodable(response.model_name, response.outputs) from None
    raw = request.binary_output or "FP16" in datatypes or any(o.binary for o in request.outputs or ())
    chunks: list[bytes | memoryview] = []
    for (name, array), datatype in zip(response.outputs.items(), datatypes, strict=True):
        tensor = message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            chunks.append(_raw_chunk(array, datatype))
        else:
            _fill_contents(tensor.contents, array, datatype)
    return wire.append_bytes_field(message.SerializeToString(), RAW_OUTPUT_CONTENTS, chunks)


def _raw_chunk(array: np.ndarray, datatype: str) -> bytes | memoryview:
    """Little-endian bytes of a tensor: a view of the array when it already is contiguous and little-endian."""
    if datatype == "BYTES":
        return binary.encode_tensor(array, datatype)
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).reshape(-1).view(np.uint8).data


def _fill_contents(contents: Any, array: np.ndarray, datatype: str) -> None:
    values = getattr(contents, CONTENTS_FIELD[datatype])
    flat = array.ravel()
    if datatype == "BYTES":
        values.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    else:
        values.extend(flat.tolist())
