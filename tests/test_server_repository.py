"""Several models per server with their own readiness, the repository extension, loading state, workers."""

from __future__ import annotations

import re
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
    assert "(not a joblib/pickle file, or a damaged one)" in broken.json()["reason"]
    v1 = httpx.get(server.url + "/v1/models/broken")
    assert (v1.status_code, v1.json()) == (503, {"name": "broken", "ready": False})
    refused = _predict(server, "broken")
    assert refused.status_code == 503 and "not ready" in refused.json()["error"]
    assert "retry-after" not in refused.headers, "failed to load: coming back in a second cannot help"
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


def test_repository_index_ready_must_be_a_boolean(server: InProcessServer) -> None:
    for ready in ("false", "true", 0, 1, [True], {}):
        answer = httpx.post(server.url + "/v2/repository/index", json={"ready": ready})
        assert answer.status_code == 400, (ready, answer.text)
        assert answer.json()["error"] == f"'ready' must be true or false, not {ready!r}"
    assert len(_index(server, {"ready": False})) == len(_index(server)) > len(_index(server, {"ready": True}))
    assert httpx.post(server.url + "/v2/repository/index", content='{"ready": null}').status_code == 200


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
    assert str(root) not in failed.text  # no server path in an answer (README); the log names the folder
    assert str(root) not in httpx.get(server.url + "/v2/models/broken").text
    # A model found at start that failed still keeps the server not ready, whoever retries it.
    assert httpx.get(server.url + "/v2/health/ready").status_code == 503
    shutil.copy(model_repo / "sklearn-iris" / "model.joblib", root / "broken" / "model.joblib")
    assert httpx.post(server.url + "/v2/repository/models/broken/load").status_code == 200
    assert _predict(server, "broken").json() == {"predictions": [1]}
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200

    missing = httpx.post(server.url + "/v2/repository/models/gamma/load")
    assert missing.status_code == 404 and "'gamma'" in missing.json()["error"]
    shutil.copytree(model_repo / "xgboost-iris", root / "gamma")
    # listed before it is loaded (the spec's index: every model of the repository, so clients find it)
    listed = {m["name"]: m for m in _index(server)}["gamma"]
    assert (listed["state"], listed["reason"]) == ("UNAVAILABLE", "not loaded")
    assert "gamma" not in [m["name"] for m in _index(server, {"ready": True})]
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


def test_load_of_a_loaded_model_reloads_it_from_its_replaced_file(
    server: InProcessServer, root: Path, model_repo: Path
) -> None:
    """Triton: `load` loads a model, "or reloads it if the model is already loaded" (tritonclient.http)."""
    import joblib
    import numpy as np
    import tritonclient.http as triton
    from sklearn.dummy import DummyClassifier

    shutil.copytree(model_repo / "sklearn-iris", root / "delta")
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    client.load_model("delta")
    assert _predict(server, "delta").json() == {"predictions": [1]}
    always_two = DummyClassifier(strategy="constant", constant=2).fit(np.zeros((3, 4)), [0, 1, 2])
    joblib.dump(always_two, root / "delta" / "model.joblib")
    client.load_model("delta")  # already loaded: reloaded from the new file
    assert _predict(server, "delta").json() == {"predictions": [2]}
    assert _state(server, "delta") == "READY"


def _versioned(folder: Path, version: str) -> None:
    (folder / "version").write_text(version)


@pytest.mark.parametrize("batching", [[], ["--max-batch-size", "8"]], ids=["unbatched", "batched"])
def test_reload_swaps_atomically_and_a_failed_reload_keeps_the_old_model(
    tmp_path: Path, batching: list[str]
) -> None:
    """A request in flight finishes on the old copy, the next one gets the new; the old copy is released once
    it is idle; a reload that fails is the load's 500 (gRPC INTERNAL) while the loaded model serves on."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    folder = tmp_path / "versioned"
    folder.mkdir()
    _versioned(folder, "1")
    args = ["serve", "--model-dir", str(folder), "--runtime", "tests.runtimes_for_tests:VersionedRuntime"]
    with serving_inprocess([*args, *batching, "--grpc-port", "0"]) as server:
        url = f"{server.url}/v2/models/versioned/infer"
        load = f"{server.url}/v2/repository/models/versioned/load"

        def version(parameters: dict | None = None) -> int:
            body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [0]}]}
            response = httpx.post(url, json={**body, "parameters": parameters or {}}, timeout=60)
            assert response.status_code == 200, response.text
            return int(response.json()["outputs"][0]["data"][0])

        assert version() == 1
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(version, {"hold": True})
            wait_until(lambda: (folder / "held-1").exists(), 30, what="a request in flight on version 1")
            _versioned(folder, "2")
            assert httpx.post(load, timeout=60).json() == {}  # answered while the old copy is still busy
            assert version() == 2 and httpx.get(f"{server.url}/v2/health/ready").status_code == 200
            assert not (folder / "released-1").exists()  # still held by the request in flight
            (folder / "go").touch()
            assert held.result(timeout=60) == 1
        wait_until(lambda: (folder / "released-1").exists(), 30, what="the old copy to be released")

        _versioned(folder, "not a number")
        failed = httpx.post(load, timeout=60)
        assert failed.status_code == 500, failed.text
        error = failed.json()["error"]
        assert error.startswith("failed to reload model 'versioned'") and "not a number" in error
        assert "still serves" in error
        assert version() == 2 and not (folder / "released-2").exists()
        index = httpx.post(f"{server.url}/v2/repository/index").json()
        assert [(m["name"], m["state"]) for m in index] == [("versioned", "READY")]

        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", server.log())
        assert port, server.log()
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port.group(1)}")
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("versioned")
        assert (
            refused.value.status() == str(grpc.StatusCode.INTERNAL)
            and "still serves" in refused.value.message()
        )
        _versioned(folder, "3")
        client.load_model("versioned")
        assert version() == 3 and client.is_model_ready("versioned")
        wait_until(lambda: (folder / "released-2").exists(), 30, what="version 2 to be released")


def test_load_parameters_are_refused_by_name_and_nothing_loads(server: InProcessServer) -> None:
    """Triton's `config` (a model configuration override) and `file:` parameters are not supported: a 400
    naming the parameter, not a 200 that loaded something else than what was sent."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    assert httpx.post(server.url + "/v2/repository/models/beta/unload").status_code == 200
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    with pytest.raises(InferenceServerException) as refused:
        client.load_model("beta", config='{"max_batch_size": 4}')
    assert refused.value.status() == "400" and "load parameter 'config' is not supported" in str(
        refused.value
    )
    load = server.url + "/v2/repository/models/beta/load"
    cases = {
        '{"parameters": {"file:1/model.onnx": "AAAA", "config": "{}"}}': "load parameter 'config'",
        '{"parameters": {"file:1/model.onnx": "AAAA"}}': "load parameter 'file:1/model.onnx' is not supported",
        '{"parameters": {"priority": 1}}': "unknown load parameter 'priority'",
        '{"parameters": ["config"]}': "'parameters' must be an object",
        "[1]": "must be a JSON object",
    }
    for body, words in cases.items():
        answer = httpx.post(load, content=body)
        assert answer.status_code == 400 and words in answer.json()["error"], (body, answer.text)
    assert _state(server, "beta") == "UNAVAILABLE"  # none of them loaded it
    for body in ("", "{}", '{"parameters": {}}'):
        assert httpx.post(load, content=body).status_code == 200, body
    assert _state(server, "beta") == "READY"


def test_the_repository_api_never_takes_the_server_out_of_service(tmp_path: Path, model_repo: Path) -> None:
    """Triton's and KServe's rule: unloading one model, or a new folder that fails to load, leaves the server
    ready (its Kubernetes readiness probe) while the other models serve."""
    shutil.copytree(model_repo / "sklearn-iris", tmp_path / "alpha")
    shutil.copytree(model_repo / "sklearn-iris", tmp_path / "beta")
    with serving_inprocess(["serve", "--model-dir", str(tmp_path)], ready_path="/v2/health/ready") as server:
        assert httpx.post(server.url + "/v2/repository/models/alpha/unload").status_code == 200
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        (tmp_path / "gamma").mkdir()
        (tmp_path / "gamma" / "model.joblib").write_bytes(b"not a model")
        assert httpx.post(server.url + "/v2/repository/models/gamma/load").status_code == 500
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        assert _predict(server, "beta").status_code == 200
        assert _state(server, "gamma") == "UNAVAILABLE" and _state(server, "alpha") == "UNAVAILABLE"
        # A failed load of the unloaded one keeps it aside too; loaded again, it counts again.
        shutil.copy(tmp_path / "gamma" / "model.joblib", tmp_path / "alpha" / "model.joblib")
        assert httpx.post(server.url + "/v2/repository/models/alpha/load").status_code == 500
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
