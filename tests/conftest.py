"""Session fixtures. Models are trained once per session (tests.support caches each kind and copies it per
caller), so a test that wants its own folder calls train_iris_*(path) and gets one in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import train_iris_onnx, train_iris_sklearn, train_iris_xgboost


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of model folders (sklearn, xgboost, onnx iris), trained at test time, once per session."""
    root = tmp_path_factory.mktemp("models")
    train_iris_sklearn(root / "sklearn-iris")
    train_iris_xgboost(root / "xgboost-iris")
    train_iris_onnx(root / "onnx-iris")
    return root
