"""Policies: pickles are code execution and `--no-pickle` refuses them before any byte is unpickled; request
payloads never reach the server log, even when a model or the encoder fails quoting them."""

from __future__ import annotations

import pathlib
import pickle
from pathlib import Path

import httpx
import orjson

from tests.inprocess import serving_inprocess
from tests.support import wait_until

MARKER = "PAYLOAD-7f3a9c-SHOULD-NOT-BE-LOGGED"


class _Evil:
    """Unpickling this touches `path`: what any pickle can do (it could as well run a shell)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.path,))


def _evil_model(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "model.joblib").write_bytes(pickle.dumps(_Evil(marker)))


def _reason(url: str, name: str) -> str:
    wait_until(
        lambda: httpx.get(f"{url}/v2/models/{name}/ready").json().get("reason"), 30, what="a load verdict"
    )
    return httpx.get(f"{url}/v2/models/{name}/ready").json()["reason"]


def test_a_pickle_runs_code_on_load_and_no_pickle_refuses_it_unread(tmp_path: Path) -> None:
    allowed, refused = tmp_path / "allowed-ran", tmp_path / "refused-ran"
    _evil_model(tmp_path / "allowed" / "evil", allowed)
    _evil_model(tmp_path / "refused" / "evil", refused)

    with serving_inprocess(
        ["serve", "--model-dir", str(tmp_path / "allowed" / "evil")], ready_path="/v2/health/live"
    ) as s:
        _reason(s.url, "evil")  # loading "fails" (it is no model) — but only after the pickle ran its code
        assert allowed.exists(), (
            "unpickling should have executed the payload: that is why pickles are refusable"
        )

    for runtime in ([], ["--runtime", "xgboost"]):  # both runtimes that read pickles honour the policy
        args = ["serve", "--model-dir", str(tmp_path / "refused" / "evil"), "--no-pickle", *runtime]
        with serving_inprocess(args, ready_path="/v2/health/live") as s:
            assert "pickles are disabled" in _reason(s.url, "evil")
            infer = httpx.post(s.url + "/v1/models/evil:predict", json={"instances": [[1, 2, 3, 4]]})
            assert infer.status_code == 503 and "pickles are disabled" in infer.json()["error"]
        assert not refused.exists(), "--no-pickle must refuse before unpickling anything"


def test_request_payloads_never_reach_the_log(tmp_path: Path) -> None:
    folder = tmp_path / "leaky"
    folder.mkdir()
    args = [
        "serve",
        "--model-dir",
        str(folder),
        "--runtime",
        "tests.runtimes_bad_input:LeakyRuntime",
        "--log-level",
        "info",
    ]
    with serving_inprocess(args) as server:

        def send(where: str, datatype: str = "BYTES", data: object = (MARKER,)) -> httpx.Response:
            body = {
                "inputs": [{"name": "x", "datatype": datatype, "shape": [1], "data": list(data)}],
                "parameters": {"where": where},
                "id": MARKER,
            }
            return httpx.post(
                server.url + "/v2/models/leaky/infer",
                content=orjson.dumps(body),
                headers={"x-note": MARKER},
                timeout=30,
            )

        model_failure = send("model")
        assert (
            model_failure.status_code == 500 and MARKER in model_failure.json()["error"]
        )  # the caller may see it
        encode_failure = send("encode")
        assert encode_failure.status_code == 500 and encode_failure.json() == {
            "error": "internal error: RuntimeError"
        }
        assert send("model", datatype="INT32").status_code == 400  # a bad request quoting nothing of value
        wait_until(lambda: "unhandled RuntimeError" in server.log(), 10, what="the 500s to be logged")
        log = server.log()
    assert "model failure on POST /v2/models/leaky/infer: RuntimeError" in log
    assert MARKER not in log, log
