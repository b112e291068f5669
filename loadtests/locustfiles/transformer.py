"""Transformer + predictor scenario: V1 predict on an InferenceService whose transformer pre-processes.

Made for examples/transformer/iris-transformer.yaml: V1 `instances` of named iris feature records in,
class names out (the tabular transformer maps records to rows and labels back).
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task

from loadtests import payloads
from loadtests.locust_options import options, tag_headers


class TransformerUser(FastHttpUser):
    """POST /v1/models/NAME:predict on a transformer+predictor InferenceService (via the router)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        opts = options(self.environment)
        self.model = opts.model_name
        self.count = opts.rows
        self.headers = tag_headers(self.environment)  # `serving loadtest --tag`
        self.body = payloads.v1_records_body(self.count)

    @task
    def predict(self) -> None:
        with self.rest(
            "POST",
            f"/v1/models/{self.model}:predict",
            data=self.body,
            headers=self.headers,
            name="/v1/models/[model]:predict transformer",
        ) as resp:
            assert resp.status_code == 200, f"HTTP {resp.status_code},"
            problem = payloads.check_v1(resp.js, self.count)
            assert problem is None, problem
            assert all(isinstance(p, str) for p in resp.js["predictions"]), f"labels expected, got {resp.js},"
