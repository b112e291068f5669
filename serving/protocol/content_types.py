"""MLServer's per-input content types for BYTES tensors (an input's `parameters.content_type`), decoded as
MLServer's codecs decode them, so a runtime gets the values the client meant: `str` -> Python str (UTF-8),
`base64` -> the decoded bytes, `datetime` -> numpy datetime64 (ISO 8601). Other content types (`np`, `pd`, `hg`)
and other datatypes are left as they are; a value that does not decode is a 400 naming the input."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from serving.errors import BadRequest


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _base64(value: Any) -> bytes:
    return base64.b64decode(value if isinstance(value, bytes) else str(value).encode(), validate=True)


DECODERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "str": (_text, "UTF-8 text"),
    "base64": (_base64, "base64"),
    "datetime": (lambda value: np.datetime64(_text(value)), "an ISO 8601 date and time"),
}


def content_typed(array: np.ndarray, params: Mapping[str, Any] | None, name: str) -> np.ndarray:
    kind = params.get("content_type") if params else None
    if kind not in DECODERS or array.dtype.kind not in "OS":
        return array
    decode, what = DECODERS[kind]
    try:
        values = [decode(v) for v in array.ravel().tolist()]
    except (UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise BadRequest(f"input {name!r}: content_type {kind!r} needs {what}: {exc}") from exc
    if kind == "datetime":
        return np.array(values, dtype="datetime64").reshape(array.shape)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(array.shape)
