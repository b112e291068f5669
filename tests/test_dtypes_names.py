"""V2 datatype names of numpy dtypes: native and byte-swapped orders alike, strings as BYTES, the rest refused."""

from __future__ import annotations

import numpy as np
import pytest

from serving.errors import ModelFailure
from serving.protocol.dtypes import itemsize, v2_datatype


@pytest.mark.parametrize(
    ("dtype", "name"),
    [("<i8", "INT64"), (">i8", "INT64"), (">f4", "FP32"), ("bool", "BOOL"), ("U3", "BYTES"), ("O", "BYTES")],
)
def test_names(dtype: str, name: str) -> None:
    assert v2_datatype(np.dtype(dtype)) == name


def test_a_dtype_without_a_v2_name_is_the_models_fault() -> None:
    with pytest.raises(ModelFailure, match="complex128 has no Open Inference Protocol datatype"):
        v2_datatype(np.dtype("complex128"))
    assert itemsize("BYTES") == 0 and itemsize("FP16") == 2
