"""The binary tensor data extension (Triton / KServe): raw little-endian tensors after a JSON header.

BYTES elements are framed as a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from serving.errors import BadRequest
from serving.protocol.dtypes import WIRE_DTYPES

_U32 = struct.Struct("<I")
_NO_TAIL = memoryview(b"")  # the binary part of a request without Inference-Header-Content-Length


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview | bytes, memoryview]:
    """Return (JSON header, binary tail) using `Inference-Header-Content-Length` when present. Read-only views
    whatever holds the body (a large one arrives in a bytearray): tensors decoded from them are read-only."""
    if header_length is None:  # all JSON (the usual request): nothing to split
        return body, _NO_TAIL
    view = memoryview(body).toreadonly()
    if not (header_length.isascii() and header_length.isdigit()):  # a count, as Content-Length: digits only
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length!r} is not a length in bytes (digits only)"
        )
    length = int(header_length)
    if length < 0 or length > len(body):
        raise BadRequest(f"Inference-Header-Content-Length {length} is outside the body of {len(body)} bytes")
    return view[:length], view[length:]


class Reader:
    """Hands out consecutive binary chunks to inputs in the order they are declared."""

    def __init__(self, tail: memoryview) -> None:
        self._tail = tail
        self._offset = 0

    def tensor(self, name: str, datatype: str, shape: tuple[int, ...], count: int, size: Any) -> np.ndarray:
        if type(size) is not int or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
        end = self._offset + size
        if end > len(self._tail):
            raise BadRequest(
                f"input {name!r}: binary_data_size {size} overruns the {len(self._tail) - self._offset} "
                "binary bytes left in the body"
            )
        chunk = self._tail[self._offset : end]
        self._offset = end
        if datatype == "BYTES":
            return decode_bytes(chunk, name, count).reshape(shape)
        dtype = WIRE_DTYPES[datatype]
        if size != count * dtype.itemsize:
            raise BadRequest(
                f"input {name!r}: shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, "
                f"binary_data_size is {size}"
            )
        array = np.frombuffer(chunk, dtype=dtype).reshape(shape)
        if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
            raise BadRequest(f"input {name!r}: BOOL bytes must be 0 or 1")
        return array

    def finish(self) -> None:
        if self._offset != len(self._tail):
            raise BadRequest(
                f"{len(self._tail) - self._offset} binary bytes follow the JSON header but no input claims them"
            )


def decode_bytes(chunk: memoryview, name: str, count: int) -> np.ndarray:
    out = np.empty(count, dtype=object)
    offset, end = 0, len(chunk)
    for i in range(count):
        if offset + 4 > end:
            raise BadRequest(f"input {name!r}: BYTES element {i} has no 4-byte length prefix left")
        (length,) = _U32.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise BadRequest(f"input {name!r}: BYTES element {i} claims {length} bytes, overrunning its data")
        out[i] = bytes(chunk[offset : offset + length])
        offset += length
    if offset != end:
        raise BadRequest(f"input {name!r}: {end - offset} bytes left after {count} BYTES elements")
    return out


def encode_tensor(array: np.ndarray, datatype: str) -> bytes | memoryview:
    """The tensor's wire bytes; for numbers a view of the (contiguous little-endian) array, no copy: the one
    copy is the caller's join of the JSON header and the tensors into the body."""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel():
            raw = value if isinstance(value, bytes) else str(value).encode()
            parts.append(_U32.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).reshape(-1).view(np.uint8).data
