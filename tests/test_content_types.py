"""MLServer's per-input content types reach a runtime decoded, as MLServer's codecs decode them: `str` -> str,
`base64` -> the decoded bytes, `datetime` -> datetime64 (they arrived as the raw bytes, and the runtime could not
tell which input was which); JSON, the binary extension and gRPC alike. A real server in-process."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import numpy as np

from serving.grpc import messages as pb
from tests.inprocess import serving_inprocess

RUNTIME = "tests.runtimes_for_tests:ContentTypes"


def _input(name: str, value: str, content_type: str) -> dict:
    return {
        "name": name,
        "datatype": "BYTES",
        "shape": [1],
        "data": [value],
        "parameters": {"content_type": content_type},
    }


def test_str_base64_and_datetime_inputs_arrive_decoded(tmp_path: Path) -> None:
    args = ["serve", "--model-dir", str(tmp_path), "--name", "ct", "--runtime", RUNTIME, "--grpc-port", "0"]
    with serving_inprocess(args) as server:
        body = {
            "parameters": {"content_type": "pd"},
            "inputs": [
                _input("b64", "UHl0aG9uIGlzIGZ1bg==", "base64"),
                _input("when", "2022-01-11T11:00:00", "datetime"),
                _input("name", "Joanne", "str"),
                {"name": "raw", "datatype": "BYTES", "shape": [1], "data": ["as is"]},
            ],
        }
        answer = httpx.post(server.url + "/v2/models/ct/infer", json=body)
        assert answer.status_code == 200, answer.text
        got = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert got == {
            "b64": ["bytes", "b'Python is fun'"],
            "when": ["datetime64", "2022-01-11T11:00:00"],
            "name": ["str", "Joanne"],
            "raw": ["bytes", "b'as is'"],  # no content type: BYTES are bytes, as the protocol says
        }
        bad = httpx.post(
            server.url + "/v2/models/ct/infer", json={"inputs": [_input("b64", "not base64!", "base64")]}
        )
        assert (
            bad.status_code == 400
            and "input 'b64': content_type 'base64' needs base64" in bad.json()["error"]
        )
        port = next(
            line for line in server.log().splitlines() if "gRPC" in line and "listening" in line
        ).rsplit(":", 1)[1]
        request = pb.ModelInferRequest(model_name="ct")
        tensor = request.inputs.add(name="name", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append("Jöanne".encode())
        tensor.parameters["content_type"].string_param = "str"
        with grpc.insecure_channel(f"127.0.0.1:{port.strip()}") as channel:
            raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
                request.SerializeToString(), timeout=10
            )
        (output,) = pb.ModelInferResponse.FromString(raw).outputs
        assert [bytes(v).decode() for v in output.contents.bytes_contents] == ["str", "Jöanne"]
    assert np.datetime64("2022-01-11T11:00:00") == np.datetime64(got["when"][1])
