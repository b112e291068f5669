"""What model or transformer code raises becomes one of our errors: input-shaped ones the caller's (400) when the
code read the caller's input, everything else the code's own (500); ours pass through unchanged."""

from __future__ import annotations

import pytest

from serving.errors import BadRequest, ModelFailure, NotFound, blame_user_code, user_code_error


def test_each_kind_of_failure_maps_once_whether_raised_in_a_block_or_mapped_directly() -> None:
    ours = NotFound("gone")
    assert user_code_error(ours, "model 'm'") is ours
    rejected = user_code_error(ValueError("3 features, expected 4"), "model 'm'")
    assert (
        isinstance(rejected, BadRequest)
        and rejected.message == "model 'm' rejected the input: ValueError: 3 features, expected 4"
    )
    own = user_code_error(KeyError("label"), "transformer 't'", "postprocess", input_errors=False)
    assert isinstance(own, ModelFailure) and own.message.startswith("transformer 't' postprocess failed")
    crashed = user_code_error(ZeroDivisionError("x"), "model 'm'")
    assert isinstance(crashed, ModelFailure) and crashed.message.startswith("model 'm' failed")

    with pytest.raises(BadRequest) as raised:
        with blame_user_code("model 'm'"):
            raise ValueError("3 features, expected 4")
    assert raised.value.message == rejected.message and isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(NotFound) as passed:
        with blame_user_code("model 'm'"):
            raise ours
    assert passed.value is ours
