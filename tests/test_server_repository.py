"""Several models per server with their own readiness, the repository extension, loading state, workers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.inprocess import InProcessServer, serving_inprocess
from tests.runtimes_for_tests import RELEASE_FILE
from tests.support import serving_process, wait_until

ROW = [6.8, 2.8, 4.8, 1.4]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Path:
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(model_repo / "sklearn-iris", root / "alpha")
    shutil.copytree(model_repo / "onnx-iris", root / "beta")
    (root / "broken").mkdir()
    (root / "broken" / "model.joblib").write_bytes(b"this is not a pickle")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[InProcessServer]:
    with serving_inprocess(["serve", "--model-dir", str(root)], ready_path="/v2/models/beta/ready") as server:
        settled = {"alpha": "READY", "beta": "READY", "broken": "UNAVAILABLE"}
        wait_until(
            lambda: {m["name"]: m["state"] for m in _index(server)} == settled, 30, what="models to settle"
        )
        yield server


def _index(server: InProcessServer, body: dict | None = None) -> list[dict]:
    response = httpx.post(server.url + "/v2/repository/index", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


def _state(server: InProcessServer, name: str) -> str | None:
    return next((m["state"] for m in _index(server) if m["name"] == name), None)


def _predict(server: InProcessServer, name: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{name}:predict", json={"instances": [ROW]})


def test_a_broken_model_is_not_ready_with_its_reason_and_the_others_serve(server: InProcessServer) -> None:
    ready = httpx.get(server.url + "/v2/health/ready")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    broken = httpx.get(server.url + "/v2/models/broken/ready")
    assert broken.status_code == 503 and broken.json()["ready"] is False
    assert "'broken'" in broken.json()["reason"] and "cannot load model.joblib" in broken.json()["reason"]
    v1 = httpx.get(server.url + "/v1/models/broken")
    assert (v1.status_code, v1.json()) == (503, {"name": "broken", "ready": False})
    refused = _predict(server, "broken")
    assert (
        refused.status_code == 503
        and refused.headers["retry-after"]
        and "not ready" in refused.json()["error"]
    )
    assert _predict(server, "alpha").json() == {"predictions": [1]}
    assert _predict(server, "beta").json()["predictions"][0]["label"] == 1


def test_repository_index_lists_states_and_filters_ready(server: InProcessServer) -> None:
    index = {m["name"]: m for m in _index(server)}
    assert {n: m["state"] for n, m in index.items()} == {
        "alpha": "READY",
        "beta": "READY",
        "broken": "UNAVAILABLE",
    }
    assert index["broken"]["reason"] and index["alpha"]["version"] == "1"
    assert sorted(m["name"] for m in _index(server, {"ready": True})) == ["alpha", "beta"]
    empty_body = httpx.post(server.url + "/v2/repository/index")
    assert empty_body.status_code == 200 and len(empty_body.json()) == 3


def test_unload_then_load(server: InProcessServer) -> None:
    assert httpx.post(server.url + "/v2/repository/models/alpha/unload").json() == {}
    assert _state(server, "alpha") == "UNAVAILABLE"
    assert httpx.get(server.url + "/v2/models/alpha/ready").status_code == 503
    assert _predict(server, "alpha").status_code == 503
    assert _predict(server, "beta").status_code == 200  # the others are untouched
    assert httpx.post(server.url + "/v2/repository/models/alpha/load").json() == {}
    assert _state(server, "alpha") == "READY" and _predict(server, "alpha").json() == {"predictions": [1]}


def test_load_fixes_a_broken_model_and_adopts_a_new_folder(
    server: InProcessServer, root: Path, model_repo: Path
) -> None:
    failed = httpx.post(server.url + "/v2/repository/models/broken/load")
    assert failed.status_code == 500
    assert (
        failed.json()["error"].startswith("failed to load model 'broken'")
        and "model.joblib" in failed.json()["error"]
    )
    shutil.copy(model_repo / "sklearn-iris" / "model.joblib", root / "broken" / "model.joblib")
    assert httpx.post(server.url + "/v2/repository/models/broken/load").status_code == 200
    assert _predict(server, "broken").json() == {"predictions": [1]}
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200

    missing = httpx.post(server.url + "/v2/repository/models/gamma/load")
    assert missing.status_code == 404 and "'gamma'" in missing.json()["error"]
    shutil.copytree(model_repo / "xgboost-iris", root / "gamma")
    assert httpx.post(server.url + "/v2/repository/models/gamma/load").status_code == 200
    assert _predict(server, "gamma").json() == {"predictions": [1]}
    assert "gamma" in httpx.get(server.url + "/v1/models").json()["models"]
    assert httpx.post(server.url + "/v2/repository/models/nope/unload").status_code == 404


def test_not_ready_while_a_model_is_still_loading(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    args = ["serve", "--model-dir", str(folder), "--runtime", "tests.runtimes_for_tests:SlowLoadRuntime"]
    with serving_inprocess(args, ready_path="/v2/health/live") as server:
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [3]}]}
        ready = httpx.get(server.url + "/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        assert httpx.get(server.url + "/v2/models/slow/ready").status_code == 503
        assert _state(server, "slow") == "LOADING"
        early = httpx.post(server.url + "/v2/models/slow/infer", json=body)
        assert (
            early.status_code == 503 and early.headers["retry-after"] and "loading" in early.json()["error"]
        )
        (folder / RELEASE_FILE).touch()
        wait_until(
            lambda: httpx.get(server.url + "/v2/health/ready").status_code == 200, 30, what="slow to load"
        )
        assert httpx.post(server.url + "/v2/models/slow/infer", json=body).json()["outputs"][0]["data"] == [3]


@pytest.mark.e2e  # worker processes
def test_two_workers_both_answer(tmp_path: Path) -> None:
    folder = tmp_path / "pid"
    folder.mkdir()
    args = [
        "serve",
        "--model-dir",
        str(folder),
        "--runtime",
        "tests.runtimes_for_tests:PidRuntime",
        "--workers",
        "2",
    ]
    with serving_process(args) as server:
        seen: set[int] = set()

        def both_seen() -> bool:  # a new connection per request; the kernel spreads accepts over workers
            response = httpx.post(server.url + "/v1/models/pid:predict", json={"instances": [1]})
            assert response.status_code == 200, response.text
            seen.add(response.json()["predictions"][0])
            return len(seen) == 2

        wait_until(both_seen, 60, interval_s=0.01, what="two worker pids")
        assert server.process.pid not in seen  # the workers are children of the supervising process
