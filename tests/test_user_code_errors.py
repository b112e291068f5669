"""What model or transformer code raises becomes one of our errors: input-shaped ones the caller's (400) when the
code read the caller's input, everything else the code's own (500); ours pass through unchanged, but for a
ModelFailure that does not name the model or transformer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from serving.errors import BadRequest, ModelFailure, NotFound, user_code_error
from serving.settings import ModelSettings
from serving.transformers.base import CONFIG_KEY, Transformer, TransformerConfig


def test_each_kind_of_failure_maps_once() -> None:
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
    # A runtime's own ModelFailure is its 500 as it worded it, with the model named in front (README: "500
    # naming the model"); one that names it already is left alone.
    worded = user_code_error(ModelFailure("my own failure"), "model 'm'")
    assert isinstance(worded, ModelFailure) and worded.message == "model 'm' failed: my own failure"
    named = ModelFailure("model 'm' returned str")
    assert user_code_error(named, "model 'm'") is named


class _Failing(Transformer):
    """Raises what `fail` names in preprocess or postprocess; the predictor answers at once."""

    fail: dict[str, Exception] = {}

    def preprocess(self, inputs: Any, parameters: dict[str, Any]) -> Any:
        if "preprocess" in self.fail:
            raise self.fail["preprocess"]
        return inputs

    async def postprocess(self, outputs: Any, parameters: dict[str, Any]) -> Any:  # async: awaited the same
        if "postprocess" in self.fail:
            raise self.fail["postprocess"]
        return outputs


class _Predictor:
    url = "http://127.0.0.1:9"

    async def infer(self, request: Any, parameters: Any = None, outputs: Any = None) -> dict[str, np.ndarray]:
        return {"predict": np.array([1])}


@pytest.mark.asyncio
async def test_a_transformers_code_is_blamed_by_stage_and_ours_pass_through() -> None:
    settings = ModelSettings(name="t", model_dir="/nowhere", extra={CONFIG_KEY: TransformerConfig("u", "m")})
    transformer = _Failing(settings)
    transformer.predictor = _Predictor()  # type: ignore[assignment]
    inputs = {"input-0": np.array([[1.0]])}
    assert (await transformer.apredict(inputs, None, {}))["predict"].tolist() == [1]

    transformer.fail = {"preprocess": ValueError("3 features, expected 4")}
    with pytest.raises(BadRequest) as rejected:
        await transformer.apredict(inputs, None, {})
    assert rejected.value.message == "transformer 't' rejected the input: ValueError: 3 features, expected 4"
    assert isinstance(rejected.value.__cause__, ValueError)

    ours = NotFound("gone")
    transformer.fail = {"preprocess": ours}
    with pytest.raises(NotFound) as passed:
        await transformer.apredict(inputs, None, {})
    assert passed.value is ours and passed.value.__cause__ is None

    transformer.fail = {
        "postprocess": KeyError("label")
    }  # its own output: the transformer's fault, not input
    with pytest.raises(ModelFailure) as failed:
        await transformer.apredict(inputs, None, {})
    assert failed.value.message.startswith("transformer 't' postprocess failed")


def test_a_runtime_that_answers_no_dict_of_arrays_gets_a_500_saying_what_it_returned(tmp_path: Any) -> None:
    """A list where an array belongs is taken as an array; None, a list of arrays, a None output are the model's
    fault, said so (it was `internal error: AttributeError`, naming neither)."""
    import httpx

    from tests.inprocess import serving_inprocess

    runtime = "tests.runtimes_bad_input:WrongAnswerRuntime"
    with serving_inprocess(
        ["serve", "--model-dir", str(tmp_path), "--name", "bad", "--runtime", runtime]
    ) as server:

        def infer(answer: str) -> httpx.Response:
            body = {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "parameters": {"answer": answer},
            }
            return httpx.post(server.url + "/v2/models/bad/infer", json=body)

        listed = infer("list")
        assert listed.status_code == 200 and listed.json()["outputs"][0]["data"] == [1, 2, 3], listed.text
        for answer, says in (
            ("none", "model 'bad' returned NoneType; a runtime's predict returns a dict"),
            ("list-of-arrays", "model 'bad' returned list; a runtime's predict returns a dict"),
            ("none-output", "model 'bad' returned 'y': NoneType"),
        ):
            response = infer(answer)
            assert response.status_code == 500 and says in response.json()["error"], (answer, response.text)
        # an output the protocol has no type for: the model's fault (a 500 naming it), not the caller's 400
        dated = infer("datetime")
        assert dated.status_code == 500, dated.text
        assert dated.json()["error"].startswith(
            "model 'bad' returned output 'y' as datetime64[s], which has no"
        )
        # BYTES elements that are not text: one rule (their str()) in JSON, the binary extension and gRPC alike
        objects = infer("objects")
        assert objects.json()["outputs"][0]["data"] == ["None", "1", "{'a': 1}", "x", "z"], objects.text


def test_grpc_encodes_bytes_objects_as_json_does_and_refuses_an_untyped_output_as_the_models_fault() -> None:
    from serving.grpc import tensor_codec
    from serving.protocol import binary
    from serving.types import InferRequest, InferResponse

    objects = np.array([None, 1, {"a": 1}, b"x", "z"], dtype=object)
    request = InferRequest(inputs={})
    message = tensor_codec.messages.ModelInferResponse.FromString(
        tensor_codec.encode_response(InferResponse("bad", None, {"y": objects}), request)
    )
    assert list(message.outputs[0].contents.bytes_contents) == [b"None", b"1", b"{'a': 1}", b"x", b"z"]
    assert binary.encode_tensor(objects, "BYTES").endswith(b"\x01\x00\x00\x00z")
    dated = InferResponse("bad", None, {"y": np.array(["2022-01-11"], dtype="datetime64[D]")})
    with pytest.raises(ModelFailure, match="model 'bad' returned output 'y' as datetime64"):
        tensor_codec.encode_response(dated, request)
