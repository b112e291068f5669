"""A transformer whose predictor is missing, killed or slow answers fast and clearly, never hangs.

Real processes: the transformer is started before its predictor exists (not ready), the predictor then
comes up on that port (ready), is SIGKILLed (503 with Retry-After), and a sleeping predictor behind
`--predictor-timeout 0.5` gives a 504.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.runtimes.base import Runtime
from serving.types import TensorDict
from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import ServerProcess, free_port, serving_process, train_iris_sklearn, wait_until

FEATURES = "sepal_length,sepal_width,petal_length,petal_width"
RECORD = {"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "petal_width": 1.4}
SLEEP_S = 2.0


class SleepyRuntime(Runtime):
    """A predictor that takes SLEEP_S per request (the slowness under test, not synchronisation)."""

    def load(self) -> None:
        pass

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        time.sleep(SLEEP_S)
        return {"predictions": np.zeros(1, dtype=np.int64)}


def _predict(server: ServerProcess | InProcessServer) -> httpx.Response:
    return httpx.post(server.url + "/v1/models/iris:predict", json={"instances": [RECORD]}, timeout=10)


def _ready(server: ServerProcess | InProcessServer) -> int:
    return httpx.get(server.url + "/v2/health/ready", timeout=5).status_code


@pytest.mark.e2e  # kill -9 of the predictor process
def test_readiness_follows_the_predictor_and_a_killed_one_is_a_503(tmp_path: Path) -> None:
    train_iris_sklearn(tmp_path / "iris")
    port = free_port()
    args = [
        "transform",
        "--predictor-url",
        f"http://127.0.0.1:{port}",
        "--model-name",
        "iris",
        "--feature-names",
        FEATURES,
        "--labels",
        "setosa,versicolor,virginica",
    ]
    with serving_process(args, ready_path="/v2/health/live") as transformer:
        # No predictor yet: live, not ready, and a request is refused at once with a reason.
        assert _ready(transformer) == 503
        started = time.monotonic()
        r = _predict(transformer)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "predictor" in r.json()["error"] and time.monotonic() - started < 2

        with serving_process(
            ["serve", "--model-dir", str(tmp_path / "iris"), "--name", "iris"], port=port
        ) as predictor:
            wait_until(lambda: _ready(transformer) == 200, 30, what="transformer ready once its predictor is")
            assert _predict(transformer).json() == {"predictions": ["versicolor"]}

            os.killpg(predictor.process.pid, signal.SIGKILL)
            predictor.process.wait(10)
            started = time.monotonic()
            r = _predict(transformer)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1" and "unreachable" in r.json()["error"]
            assert time.monotonic() - started < 2
            wait_until(
                lambda: _ready(transformer) == 503, 10, what="transformer not ready after its predictor died"
            )
            status = httpx.get(transformer.url + "/v2/models/iris/ready").json()
            assert status["ready"] is False and "unreachable" in status["reason"]


@pytest.fixture()
def slow_predictor(tmp_path: Path):
    folder = tmp_path / "iris"
    folder.mkdir()
    with serving_inprocess(
        [
            "serve",
            "--model-dir",
            str(folder),
            "--name",
            "iris",
            "--runtime",
            "tests.test_transformers_faults:SleepyRuntime",
        ]
    ) as server:
        yield server


def test_slow_predictor_is_a_504_after_the_predictor_timeout(slow_predictor: InProcessServer) -> None:
    args = [
        "transform",
        "--predictor-url",
        slow_predictor.url,
        "--model-name",
        "iris",
        "--transformer",
        "labels",
        "--labels",
        "setosa,versicolor,virginica",
        "--predictor-timeout",
        "0.5",
    ]
    with serving_inprocess(args) as transformer:
        started = time.monotonic()
        r = httpx.post(
            transformer.url + "/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]}, timeout=10
        )
        elapsed = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert "within 0.5s" in r.json()["error"]
        assert 0.4 < elapsed < SLEEP_S, elapsed
        # The timeout does not poison the pool: the transformer is still ready and serving.
        assert _ready(transformer) == 200


def _flaky_predictor(dropped: int) -> tuple[str, list[int]]:
    """A predictor that drops its first `dropped` predict calls unanswered (closing their connection), then
    answers them; its readiness always answers: what KServe's `--predictor_request_retries` is for (a
    connection failure, before any answer). Returns its URL and the predict calls it saw."""
    import asyncio
    import threading

    seen = [0]
    started = threading.Event()
    where: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                sized = [line for line in lines if line.lower().startswith(b"content-length")]
                await reader.readexactly(int(sized[0].split(b":")[1]) if sized else 0)
                if lines[0].startswith(b"POST"):
                    seen[0] += 1
                    if seen[0] <= dropped:
                        writer.close()
                        return
                    body = b'{"predictions": [1]}'
                else:
                    body = b'{"name": "iris", "ready": true}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def run() -> None:
        async def main() -> None:
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            where.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            started.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    started.wait(10)
    return where[0], seen


@pytest.mark.parametrize(("retries", "status"), [(0, 503), (2, 200)])
def test_predictor_request_retries_send_again_what_reached_no_predictor(retries: int, status: int) -> None:
    url, seen = _flaky_predictor(dropped=2)
    args = ["transform", "--model_name", "iris", "--predictor_host", url.removeprefix("http://")]
    args += ["--predictor_request_retries", str(retries), "--enable_predictor_health_check"]
    with serving_inprocess(args) as server:
        answer = httpx.post(
            f"{server.url}/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]}, timeout=10
        )
    assert answer.status_code == status, answer.text
    if retries:
        assert seen[0] == 3  # two dropped, the third answered
