"""Tiny example models, trained on first use so their pickles always match the installed sklearn.

Version-stable formats (XGBoost JSON, ONNX) are written too when their libraries are present.
`prepare_demo` needs nothing outside the installed package: `serving demo` works from a wheel, writing
its InferenceService and model into a cache folder; `EXAMPLES_DIR` is the repository's (tests, benchmarks).
"""

from __future__ import annotations

import os
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
DEMO_SERVICE = "sklearn-iris"
# examples/sklearn-iris.yaml, carried by the package so an installed `serving demo` has it.
DEMO_YAML = """\
# Written by `serving demo`: KServe's first example, with storageUri pointing at the model trained next to it.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: sklearn-iris
spec:
  predictor:
    model:
      modelFormat:
        name: sklearn
      storageUri: models/sklearn-iris
"""
MODELS_DIR = EXAMPLES_DIR / "models"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = ["setosa", "versicolor", "virginica"]


def train_sklearn_iris(target: Path, *, c: float = 1.0) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "model.joblib"
    joblib.dump(model, path)
    return path


def train_xgboost_iris(target: Path) -> Path:
    import xgboost as xgb
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(x, y)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "model.json"
    model.save_model(path)
    return path


def train_onnx_iris(target: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x.astype("float32"), y)
    onx = to_onnx(model, x[:1].astype("float32"), options={id(model): {"zipmap": False}}, target_opset=15)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


def ensure_example_models(models_dir: Path = MODELS_DIR) -> Path:
    """Create any missing example model; cheap when they exist."""
    if not (models_dir / "sklearn-iris" / "model.joblib").exists():
        train_sklearn_iris(models_dir / "sklearn-iris")
    if not (models_dir / "sklearn-iris-v2" / "model.joblib").exists():
        train_sklearn_iris(models_dir / "sklearn-iris-v2", c=0.05)
    if not (models_dir / "xgboost-iris" / "model.json").exists():
        train_xgboost_iris(models_dir / "xgboost-iris")
    if not (models_dir / "onnx-iris" / "model.onnx").exists():
        try:
            train_onnx_iris(models_dir / "onnx-iris")
        except ImportError:
            pass  # the committed ONNX file is used; skl2onnx is a test extra
    return models_dir


def default_demo_dir() -> Path:
    """A writable folder of the user's (never the installed package's): $XDG_CACHE_HOME/serving/demo."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "serving" / "demo"


def prepare_demo(directory: Path) -> Path:
    """The demo's InferenceService YAML and its model (trained if missing) in `directory`; the YAML's path."""
    if not (directory / "models" / DEMO_SERVICE / "model.joblib").exists():
        train_sklearn_iris(directory / "models" / DEMO_SERVICE)
    path = directory / f"{DEMO_SERVICE}.yaml"
    path.write_text(DEMO_YAML)
    return path
