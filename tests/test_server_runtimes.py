"""sklearn, XGBoost and ONNX runtimes behind real servers: every artifact format, selection and refusal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_iris

from tests.inprocess import InProcessServer, serving_inprocess
from tests.support import REPO, ServerProcess, serving_process, train_iris_sklearn, wait_until

X, Y = load_iris(return_X_y=True)
ROWS = X[[0, 60, 120]]  # one row of each class
INTRA_OP_THREADS = 4


def _v2(server: InProcessServer, model: str, rows: np.ndarray, **extra: object) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
        ]
    }
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json={**body, **extra}, timeout=30)


def _outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


# --- XGBoost: native Booster files of a plain Booster and of an XGBClassifier, and a pickled classifier ---


@pytest.fixture(scope="module")
def xgb_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Folders of XGBoost artifacts and, per folder, what the model predicts locally."""
    import joblib
    import xgboost as xgb

    root = tmp_path_factory.mktemp("xgb")
    booster = xgb.train(
        {"objective": "reg:squarederror", "max_depth": 2}, xgb.DMatrix(X, label=Y), num_boost_round=5
    )
    classifier = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, Y)
    expected: dict[str, np.ndarray] = {}
    warnings.filterwarnings("ignore", message=".*Saving model in the UBJSON format", category=UserWarning)
    for suffix in ("json", "ubj", "bst"):  # .bst is written as UBJSON by xgboost >= 2.1 (it warns so)
        (root / f"booster-{suffix}").mkdir()
        booster.save_model(root / f"booster-{suffix}" / f"model.{suffix}")
        expected[f"booster-{suffix}"] = booster.predict(xgb.DMatrix(ROWS.astype(np.float32)))
        (root / f"classifier-{suffix}").mkdir()
        classifier.save_model(root / f"classifier-{suffix}" / f"model.{suffix}")
        expected[f"classifier-{suffix}"] = classifier.predict(ROWS)
    (root / "classifier-pickle").mkdir()
    joblib.dump(classifier, root / "classifier-pickle" / "model.joblib")
    expected["classifier-pickle"] = classifier.predict(ROWS)
    return root, expected


@pytest.fixture(scope="module")
def xgb_server(xgb_models: tuple[Path, dict]) -> Iterator[InProcessServer]:
    """`--runtime xgboost` chosen by name for every folder (the pickle would otherwise go to sklearn)."""
    with serving_inprocess(["serve", "--model-dir", str(xgb_models[0]), "--runtime", "xgboost"]) as server:
        yield server


def test_xgboost_serves_every_artifact_format(
    xgb_server: InProcessServer, xgb_models: tuple[Path, dict]
) -> None:
    _, expected = xgb_models
    for name, local in expected.items():
        meta = httpx.get(f"{xgb_server.url}/v2/models/{name}").json()
        assert meta["platform"] == "xgboost" and meta["inputs"][0]["shape"] == [-1, 4], name
        response = _v2(xgb_server, name, ROWS)
        served = _outputs(response)["output-0"]
        declared = {o["name"]: o["datatype"] for o in meta["outputs"]}
        assert declared["output-0"] == response.json()["outputs"][0]["datatype"], (
            name
        )  # metadata tells the truth
        assert np.allclose(served, local, atol=1e-5), (name, served, local)
        if name.startswith("classifier"):
            assert served.tolist() == [0, 1, 2]


def test_xgboost_classifier_probabilities(xgb_server: InProcessServer) -> None:
    for name in ("classifier-json", "classifier-ubj", "classifier-bst", "classifier-pickle"):
        probabilities = _outputs(_v2(xgb_server, name, ROWS, parameters={"predict_proba": True}))[
            "probabilities"
        ]
        assert probabilities.shape == (3, 3) and probabilities.argmax(axis=1).tolist() == [0, 1, 2], name
        meta = httpx.get(f"{xgb_server.url}/v2/models/{name}").json()
        assert meta["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


# --- ONNX: a multi-input multi-output graph built with the onnx helper API, plus sklearn and --predict-proba ---


def _multi_io_onnx(path: Path) -> None:
    from onnx import TensorProto, helper

    n = "N"
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["total"]),
            helper.make_node("Greater", ["a", "zero"], ["positive"]),
            helper.make_node("Add", ["b", "b"], ["twice"]),
        ],
        "multi_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, [n, 3]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, [n, 3]),
            helper.make_tensor_value_info("positive", TensorProto.BOOL, [n, 3]),
            helper.make_tensor_value_info("twice", TensorProto.INT64, [n, 3]),
        ],
        initializer=[helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def _mixed_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Runtimes detected from file names; `--predict-proba` and `--intra-op-threads` set for all models."""
    root = tmp_path_factory.mktemp("mixed")
    _multi_io_onnx(root / "multi" / "graph.onnx")
    train_iris_sklearn(root / "sklearn-iris")
    return ["serve", "--model-dir", str(root), "--predict-proba", "--intra-op-threads", str(INTRA_OP_THREADS)]


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with serving_inprocess(_mixed_args(tmp_path_factory)) as server:
        yield server


def test_onnx_metadata_comes_from_the_session(mixed_server: InProcessServer) -> None:
    meta = httpx.get(mixed_server.url + "/v2/models/multi").json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "b", "datatype": "INT64", "shape": [-1, 3]},
    ]
    assert meta["outputs"] == [
        {"name": "total", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "positive", "datatype": "BOOL", "shape": [-1, 3]},
        {"name": "twice", "datatype": "INT64", "shape": [-1, 3]},
    ]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_onnx_multi_input_multi_output(mixed_server: InProcessServer, binary: bool) -> None:
    client = triton.InferenceServerClient(mixed_server.url.removeprefix("http://"), network_timeout=30)
    a = np.array([[1.5, -2.0, 0.0], [3.0, 4.0, -0.5]], np.float32)
    b = np.array([[1, 2, 3], [-4, 5, 6]], np.int64)
    inputs = [triton.InferInput("a", [2, 3], "FP32"), triton.InferInput("b", [2, 3], "INT64")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    result = client.infer(
        "multi",
        inputs,
        outputs=[triton.InferRequestedOutput(n, binary_data=binary) for n in ("total", "positive", "twice")],
    )
    assert np.array_equal(result.as_numpy("total"), a + b.astype(np.float32))
    assert np.array_equal(result.as_numpy("positive"), a > 0)
    assert np.array_equal(result.as_numpy("twice"), b * 2)
    only = client.infer("multi", inputs, outputs=[triton.InferRequestedOutput("twice", binary_data=binary)])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["twice"]
    missing = httpx.post(
        mixed_server.url + "/v2/models/multi/infer",
        json={"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    )
    assert missing.status_code == 400 and "'b'" in missing.json()["error"]


@pytest.mark.e2e  # counts the threads of the server's own process
def test_onnx_intra_op_threads_flag_sizes_the_session_pool(tmp_path_factory: pytest.TempPathFactory) -> None:
    """onnxruntime starts `intra_op_num_threads - 1` pool threads per session: unloading frees them."""
    with serving_process(_mixed_args(tmp_path_factory)) as mixed_server:
        _pool_threads_stop_on_unload(mixed_server)


def _pool_threads_stop_on_unload(mixed_server: ServerProcess) -> None:
    tasks = Path(f"/proc/{mixed_server.process.pid}/task")
    loaded = len(os.listdir(tasks))
    assert httpx.post(mixed_server.url + "/v2/repository/models/multi/unload").status_code == 200
    try:
        wait_until(
            lambda: loaded - len(os.listdir(tasks)) == INTRA_OP_THREADS - 1, 20, what="pool threads to stop"
        )
    finally:
        assert httpx.post(mixed_server.url + "/v2/repository/models/multi/load").status_code == 200


def test_sklearn_predict_proba_flag_and_request_parameter(mixed_server: InProcessServer) -> None:
    meta = httpx.get(mixed_server.url + "/v2/models/sklearn-iris").json()
    assert meta["platform"] == "sklearn"
    default = _outputs(_v2(mixed_server, "sklearn-iris", ROWS))
    assert list(default) == ["probabilities"] and default["probabilities"].argmax(axis=1).tolist() == [
        0,
        1,
        2,
    ]
    labels = _outputs(_v2(mixed_server, "sklearn-iris", ROWS, parameters={"predict_proba": False}))
    assert labels == {"output-0": labels["output-0"]} and labels["output-0"].tolist() == [0, 1, 2]
    v1 = httpx.post(mixed_server.url + "/v1/models/sklearn-iris:predict", json={"instances": ROWS.tolist()})
    assert np.array(v1.json()["predictions"]).shape == (3, 3)


# --- choosing and refusing ---


def test_no_pickle_refuses_pickles_with_a_clear_reason(tmp_path: Path, model_repo: Path) -> None:
    shutil.copytree(model_repo / "sklearn-iris", tmp_path / "pickled")
    shutil.copytree(model_repo / "onnx-iris", tmp_path / "portable")
    args = ["serve", "--model-dir", str(tmp_path), "--no-pickle"]
    with serving_inprocess(args, ready_path="/v2/models/portable/ready") as server:
        wait_until(lambda: httpx.get(server.url + "/v2/models/pickled/ready").json().get("reason"), 30)
        refused = httpx.get(server.url + "/v2/models/pickled/ready")
        assert refused.status_code == 503 and "pickles are disabled" in refused.json()["reason"]
        assert httpx.get(server.url + "/v2/health/ready").status_code == 503
        infer = httpx.post(server.url + "/v1/models/pickled:predict", json={"instances": ROWS.tolist()})
        assert infer.status_code == 503 and "pickles are disabled" in infer.json()["error"]
        served = httpx.post(server.url + "/v1/models/portable:predict", json={"instances": ROWS.tolist()})
        assert [row["label"] for row in served.json()["predictions"]] == [0, 1, 2]


def test_zero_artifacts_is_a_clear_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "serve", "--model-dir", str(tmp_path / "empty"), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "holds no model file" in done.stderr


def test_several_artifacts_or_an_unknown_runtime_leave_the_model_not_ready(
    tmp_path: Path, model_repo: Path
) -> None:
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(model_repo / "sklearn-iris" / "model.joblib", two / "a.joblib")
    shutil.copy(model_repo / "onnx-iris" / "model.onnx", two / "b.onnx")
    with serving_inprocess(["serve", "--model-dir", str(two)], ready_path="/v2/health/live") as server:
        wait_until(lambda: httpx.get(server.url + "/v2/models/two/ready").json().get("reason"), 30)
        reason = httpx.get(server.url + "/v2/models/two/ready").json()["reason"]
        assert "several model files (a.joblib, b.onnx)" in reason
    args = ["serve", "--model-dir", str(tmp_path / "empty"), "--runtime", "tests.runtimes_for_tests:Missing"]
    (tmp_path / "empty").mkdir()
    with serving_inprocess(args, ready_path="/v2/health/live") as server:
        wait_until(lambda: httpx.get(server.url + "/v2/models/empty/ready").json().get("reason"), 30)
        reason = httpx.get(server.url + "/v2/models/empty/ready").json()["reason"]
        assert "cannot import runtime 'tests.runtimes_for_tests:Missing'" in reason


def test_a_triton_repository_layout_is_named_with_where_its_model_file_is(tmp_path: Path) -> None:
    """KServe's Triton examples store MODEL/config.pbtxt and MODEL/1/model.onnx: say that layout is not read,
    and where the file is, instead of only that no model was found (audit /tmp/audit-kserve4 L7)."""
    from serving.errors import ArtifactError
    from serving.repository import discover

    (tmp_path / "repo" / "iris" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "iris" / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\n')
    (tmp_path / "repo" / "iris" / "1" / "model.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError) as refused:
        discover(tmp_path / "repo")
    said = refused.value.message
    assert "is a Triton model repository layout, which is not read here" in said
    assert f"its model file is in {tmp_path / 'repo' / 'iris' / '1'}: point storageUri there" in said
