"""`serving up --grpc-port 0` end to end (in process, replicas as threads): tritonclient.grpc through the router,
a canary split measured over gRPC from `x-serving-revision`, a tag pin, and answers equal to REST."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as triton

from serving.grpc import messages as pb
from tests.support import train_iris_sklearn
from tests.up_support import apply_text, isvc_yaml, predict, serving_up, traffic, wait_for_traffic

ROW = [6.8, 2.8, 4.8, 1.4]


def _request() -> bytes:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    request.raw_input_contents.append(np.array([ROW]).tobytes())
    return request.SerializeToString()


def _revisions(target: str, count: int, metadata: tuple[tuple[str, str], ...] = ()) -> Counter[str]:
    seen: Counter[str] = Counter()
    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for _ in range(count):
            response, call = infer.with_call(_request(), metadata=metadata, timeout=10)
            assert pb.ModelInferResponse.FromString(response).outputs[0].name == "output-0"
            seen[dict(call.initial_metadata())["x-serving-revision"]] += 1
    return seen


def test_grpc_through_serving_up_with_a_canary(tmp_path: Path) -> None:
    logging.getLogger("serving.router.grpc").setLevel(logging.INFO)
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    train_iris_sklearn(v1)
    train_iris_sklearn(v2, c=0.05)
    state = tmp_path / "state"
    with serving_up(state, extra=("--grpc-port", "0")) as server, server.client() as client:
        found = re.search(
            r"router gRPC \(Open Inference Protocol\) listening on (127\.0\.0\.1:\d+)", server.log()
        )
        assert found, server.log()
        target = found.group(1)
        apply_text(server, state, isvc_yaml("iris", v1), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        triton_client = triton.InferenceServerClient(target)
        assert triton_client.is_server_live() and triton_client.is_model_ready("iris")
        tensor = triton.InferInput("input-0", [1, 4], "FP64")
        tensor.set_data_from_numpy(np.array([ROW]))
        assert (
            list(triton_client.infer("iris", [tensor]).as_numpy("output-0"))
            == predict(client, "iris").json()["predictions"]
        )

        apply_text(server, state, isvc_yaml("iris", v2, canary=20), tmp_path)
        split = traffic(wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [20, 80]))
        (canary,) = [r for r, p in split.items() if p == 20]
        (stable,) = [r for r, p in split.items() if p == 80]
        # The split is exact per window of 5 (smooth weighted round-robin); REST requests share the balancer.
        assert _revisions(target, 50) == {stable: 40, canary: 10}
        assert _revisions(target, 5, (("x-serving-tag", "latest"),)) == {canary: 5}


def test_a_grpc_v2_service_on_a_serving_up_without_grpc_port_is_warned_at_apply(tmp_path: Path) -> None:
    from tests.up_support import cli

    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    doc = isvc_yaml("iris", model).replace(
        "        name: sklearn\n", "        name: sklearn\n      protocolVersion: grpc-v2\n"
    )
    (tmp_path / "grpc.yaml").write_text(doc)
    with serving_up(state) as server:
        applied = cli(server, state, "apply", "-f", str(tmp_path / "grpc.yaml"))
    said = applied.stdout + applied.stderr
    assert "gRPC is served by the router only with serving up --grpc-port" in said, said
