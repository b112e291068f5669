"""Predictor scenarios: V1 predict, V2 JSON infer, V2 binary-extension infer.

Each user sends the same request in a closed loop (no think time: this measures capacity, not a
human). Bodies are built once per (payload, rows) with a fixed seed; every response is checked for
the right shape, and a wrong one is a failure with a message saying what was wrong.
Run: `locust --config loadtests/locust.conf -f loadtests/locustfiles/predict.py V2JsonUser --host URL`.
"""

from __future__ import annotations

from functools import cache

from locust import FastHttpUser, constant, task

from loadtests import payloads
from loadtests.locust_options import options, tag_headers


@cache
def _v1(kind: str, count: int) -> bytes:
    return payloads.v1_body(kind, count)


@cache
def _v2_json(kind: str, count: int) -> bytes:
    return payloads.v2_json_body(kind, count)


@cache
def _v2_binary(kind: str, count: int) -> payloads.BinaryBody:
    return payloads.v2_binary_body(kind, count)


class _ModelUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        opts = options(self.environment)
        self.model = opts.model_name
        self.kind = opts.payload or payloads.kind_for_model(self.model)
        self.count = opts.rows
        self.headers = tag_headers(self.environment)


class V1PredictUser(_ModelUser):
    """KServe V1: POST /v1/models/NAME:predict with `instances`."""

    @task
    def predict(self) -> None:
        body = _v1(self.kind, self.count)
        with self.rest(
            "POST",
            f"/v1/models/{self.model}:predict",
            data=body,
            headers=self.headers,
            name="/v1/models/[model]:predict",
        ) as resp:
            assert resp.status_code == 200, f"HTTP {resp.status_code},"
            problem = payloads.check_v1(resp.js, self.count)
            assert problem is None, problem


class V2JsonUser(_ModelUser):
    """Open Inference Protocol: POST /v2/models/NAME/infer with JSON tensor data."""

    @task
    def infer(self) -> None:
        body = _v2_json(self.kind, self.count)
        with self.rest(
            "POST",
            f"/v2/models/{self.model}/infer",
            data=body,
            headers=self.headers,
            name="/v2/models/[model]/infer json",
        ) as resp:
            assert resp.status_code == 200, f"HTTP {resp.status_code},"
            problem = payloads.check_v2(resp.js, self.count)
            assert problem is None, problem


class V2BinaryUser(_ModelUser):
    """Open Inference Protocol with the binary tensor extension (JSON header + raw bytes; JSON reply)."""

    @task
    def infer(self) -> None:
        request = _v2_binary(self.kind, self.count)
        with self.rest(
            "POST",
            f"/v2/models/{self.model}/infer",
            data=request.body,
            headers={**request.headers(), **self.headers},
            name="/v2/models/[model]/infer binary",
        ) as resp:
            assert resp.status_code == 200, f"HTTP {resp.status_code},"
            problem = payloads.check_v2(resp.js, self.count)
            assert problem is None, problem
