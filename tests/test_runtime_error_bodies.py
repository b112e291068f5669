"""Error bodies through every runtime (sklearn, xgboost, onnx) on a real uvicorn server in this process: each bad
input is a 4xx `{"error": ...}` that says what shape was expected and what came, and no body carries a
native stack trace or a filesystem path of the server (XGBoost's own message has both)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.errors import public_text
from tests.inprocess import serving_inprocess

RUNTIMES = ["sklearn-iris", "xgboost-iris", "onnx-iris"]
ROW = [6.8, 2.8, 4.8, 1.4]
LEAKS = re.compile(r"Stack trace|Traceback|\[bt\]|site-packages|\.so\b|/__w/|/root/|/home/|/tmp/|/usr/")


def fp64(shape: list[int], data: list) -> dict:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": shape, "data": data}]}


# (id, protocol, body, fragments every runtime's message must hold)
CATALOGUE = [
    ("v1-flat-instances", "v1", {"instances": ROW}, ["4]", "got shape [4]", "not one flat list"]),
    ("v1-three-features", "v1", {"instances": [ROW[:3]]}, ["4]", "got shape [1, 3]"]),
    ("v1-rank-3", "v1", {"instances": [[ROW]]}, ["4]", "got shape [1, 1, 4]"]),
    ("v1-strings", "v1", {"instances": [["a", "b", "c", "d"]]}, ["takes numbers", "strings"]),
    ("v2-one-dimensional", "v2", fp64([4], ROW), ["4]", "got shape [4]"]),
    ("v2-five-features", "v2", fp64([1, 5], [*ROW, 1.0]), ["got shape [1, 5]"]),
    ("v2-rank-4", "v2", fp64([1, 1, 1, 4], ROW), ["got shape [1, 1, 1, 4]"]),
    (
        "v2-bytes",
        "v2",
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 4], "data": list("abcd")}]},
        ["takes numbers", "strings"],
    ),
]


@pytest.fixture(scope="module")
def server_url(model_repo: Path) -> Iterator[str]:
    """The three iris models behind one `serving serve`, run in this process (tests.inprocess)."""
    with serving_inprocess(["serve", "--model-dir", str(model_repo)]) as server:
        yield server.url


@pytest.mark.parametrize("model", RUNTIMES)
@pytest.mark.parametrize(("case", "protocol", "body", "says"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_says_what_was_expected_and_leaks_nothing(
    server_url: str, model_repo: Path, model: str, case: str, protocol: str, body: dict, says: list[str]
) -> None:
    path = f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"
    response = httpx.post(server_url + path, json=body, timeout=30)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert model in message, message  # names the model it was sent to
    for fragment in says:
        assert fragment in message, message
    assert not LEAKS.search(message), message
    assert str(model_repo) not in message, message


def test_native_traces_log_prefixes_and_paths_never_reach_a_client() -> None:
    """XGBoost's real message shape, and a library quoting a server path: the client keeps only the gist."""

    class XGBoostError(Exception):
        pass

    native = XGBoostError(
        "[12:59:41] /__w/xgboost/xgboost/src/predictor/utils.h:20: Check failed: n_features (1 vs. 4)\n"
        "Stack trace:\n  [bt] (0) /root/.venv/lib/python3.11/site-packages/xgboost/lib/libxgboost.so(+0x2c1a8c)"
    )
    assert public_text(native) == "XGBoostError: Check failed: n_features (1 vs. 4)"
    assert public_text(OSError("cannot read /srv/models/iris/model.bin")) == "OSError: cannot read model.bin"
    assert public_text(ValueError("see https://example.org/a/b")) == "ValueError: see https://example.org/a/b"


def test_an_unknown_model_is_a_404_naming_the_models_there_are(server_url: str) -> None:
    response = httpx.post(server_url + "/v2/models/iris/infer", json=fp64([1, 4], ROW), timeout=30)
    assert response.status_code == 404
    assert response.json()["error"] == (
        "model 'iris' not found; existing: 'onnx-iris', 'sklearn-iris', 'xgboost-iris'"
    )


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_a_known_predict_path_with_the_wrong_method_is_405_with_allow(server_url: str, method: str) -> None:
    response = httpx.request(method, server_url + "/v1/models/sklearn-iris:predict", timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method != "HEAD":
        assert f"method {method} not allowed" in response.json()["error"]


def test_a_bare_non_linear_estimator_refuses_strings_and_booleans_a_pipeline_does_not(tmp_path: Path) -> None:
    """A forest computes on numbers: `"6.8"` or `true` would be parsed into them without a word. A pipeline may
    encode text itself, so it is handed what came."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from serving.errors import BadRequest
    from serving.runtimes.sklearn import SKLearnRuntime
    from serving.settings import ModelSettings

    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    for name, model in (("forest", forest), ("pipeline", make_pipeline(FunctionTransformer(), forest))):
        (tmp_path / name).mkdir()
        joblib.dump(model, tmp_path / name / "model.joblib")
    runtimes = {}
    for name in ("forest", "pipeline"):
        runtimes[name] = SKLearnRuntime(ModelSettings(name=name, model_dir=tmp_path / name))
        runtimes[name].load()
    text = np.array([[b"6.8", b"2.8", b"4.8", b"1.4"]], dtype=object)
    for sent, says in ((text, "holds strings"), (np.array([[True, False, True, False]]), "holds booleans")):
        with pytest.raises(BadRequest, match=says):
            runtimes["forest"].predict({"x": sent}, None, {})
    assert runtimes["pipeline"].predict({"x": text.astype(str)}, None, {})["output-0"].shape == (1,)


@pytest.mark.parametrize("model", RUNTIMES)
@pytest.mark.parametrize("output", [None, "probabilities"])
def test_a_batch_of_no_rows_is_answered_with_empty_outputs_by_every_runtime(
    server_url: str, model: str, output: str | None
) -> None:
    """A tensor of shape [0, 4] is valid: the linear fast path, XGBoost and ONNX answered it with empty outputs,
    scikit-learn's own predict_proba (and a forest's predict) refused it with a 400 quoting scikit-learn."""
    body: dict = fp64([0, 4], [])
    if output is not None:
        if model == "onnx-iris":
            return  # the ONNX graph's outputs are its own names (covered by the default case)
        body["outputs"] = [{"name": output}]
    response = httpx.post(f"{server_url}/v2/models/{model}/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    for tensor in response.json()["outputs"]:
        assert tensor["shape"][0] == 0 and tensor["data"] == [], tensor


def test_an_onnx_output_that_is_no_tensor_is_said_at_load_and_to_whoever_asks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """skl2onnx's default conversion gives probabilities as a ZipMap (a sequence of maps), which no protocol
    tensor can carry: the model was ready with it silently missing, and asking for it said only `has no
    output`. Now the load warns and the 400 says what it is and how to convert instead."""
    import logging

    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from serving.errors import BadRequest
    from serving.runtimes.onnx import ONNXRuntime
    from serving.settings import ModelSettings

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    (tmp_path / "model.onnx").write_bytes(to_onnx(model, x[:1].astype(np.float32)).SerializeToString())
    runtime = ONNXRuntime(ModelSettings(name="zipmap", model_dir=tmp_path))
    with caplog.at_level(logging.WARNING, logger="serving.runtimes.onnx"):
        runtime.load()
    assert (
        "output 'output_probability' is an ONNX seq(map(" in caplog.text and "'zipmap': False" in caplog.text
    )
    assert [o.name for o in runtime.metadata().outputs] == ["output_label"]
    with pytest.raises(BadRequest, match="output 'output_probability' is an ONNX seq.*'zipmap': False"):
        runtime.predict({"x": x[:1].astype(np.float32)}, ("output_probability",), {})
    assert runtime.predict({"x": x[:1].astype(np.float32)}, None, {})["output_label"].shape == (1,)
