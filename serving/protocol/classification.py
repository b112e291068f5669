"""Triton's classification extension: an output asked for with `parameters: {"classification": K}` comes back as
the top K of its last axis, BYTES strings `"value:index"` (shape [batch, K], or [K] for a 1-D output), best
first, as Triton answers it (`tritonclient`'s `class_count`). Accepted and ignored, a client parsing those
strings would get the raw scores; so a value that is not a positive integer is a 400."""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.errors import BadRequest
from serving.types import RequestedOutput

KEY = "classification"


def class_count(output: RequestedOutput) -> int:
    """K asked for this output, or 0 (none asked); a 400 for anything but a positive integer."""
    if KEY not in output.parameters:
        return 0
    value: Any = output.parameters[KEY]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        shown = str(value)[:32]
        raise BadRequest(
            f"output {output.name!r}: parameter 'classification' must be a positive integer (the number of "
            f"top classes); got {shown!r}"
        )
    return value


def top_classes(array: np.ndarray, count: int, name: str) -> np.ndarray:
    """The `count` largest values of the last axis as `"value:index"` bytes, best first (ties: lower index)."""
    if array.ndim not in (1, 2) or array.dtype.kind not in "biuf":
        raise BadRequest(
            f"output {name!r} cannot be classified: it is {array.dtype} of shape {list(array.shape)} "
            "(classification takes numbers of shape [classes] or [batch, classes])"
        )
    count = min(count, array.shape[-1])
    if array.dtype.kind == "f":  # negated: NaN ranks last
        order = np.argsort(-array, axis=-1, kind="stable")[..., :count]
        shown = "{:f}:{}".format  # as Triton's std::to_string writes a float: 0.801548
    else:  # in their own type (no float64: 2**53 + 1 stays itself), largest first, ties by lower index
        last = array.shape[-1] - 1
        order = (last - np.argsort(array[..., ::-1], axis=-1, kind="stable")[..., ::-1])[..., :count]
        shown = "{:d}:{}".format  # an integer as itself: "10:2"
    values = np.take_along_axis(array, order, axis=-1)
    text = [
        shown(v, i).encode() for v, i in zip(values.ravel().tolist(), order.ravel().tolist(), strict=True)
    ]
    result = np.empty(len(text), dtype=object)
    result[:] = text
    return result.reshape(order.shape)
