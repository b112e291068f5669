"""The numpy fast path for linear models answers exactly what sklearn answers, and steps aside otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.svm import LinearSVC

from serving.runtimes.linear_fast_path import linear_predict

X, Y = load_iris(return_X_y=True)
XR, YR = make_regression(80, 6, random_state=0)


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(max_iter=1000).fit(X, Y),
        LogisticRegression(max_iter=1000).fit(X, Y == 1),
        LogisticRegression(max_iter=1000).fit(X, np.array(["setosa", "versicolor", "virginica"])[Y]),
        LinearSVC().fit(X, Y),
        SGDClassifier(random_state=0).fit(X, Y),
    ],
    ids=["multiclass", "binary", "string-labels", "linear-svc", "sgd"],
)
def test_classifiers_match_sklearn(model) -> None:  # noqa: ANN001
    fast = linear_predict(model)
    assert fast is not None
    rows = np.random.default_rng(1).normal(5, 3, size=(500, 4))
    assert np.array_equal(fast(rows), model.predict(rows))
    assert fast(rows).dtype == model.predict(rows).dtype


@pytest.mark.parametrize("model", [LinearRegression().fit(XR, YR), Ridge().fit(XR, YR)], ids=["ols", "ridge"])
def test_regressors_match_sklearn(model) -> None:  # noqa: ANN001
    fast = linear_predict(model)
    assert fast is not None
    assert np.allclose(fast(XR), model.predict(XR), rtol=1e-12)


def test_other_models_and_odd_inputs_go_through_sklearn() -> None:
    assert linear_predict(RandomForestClassifier(n_estimators=3).fit(X, Y)) is None
    fast = linear_predict(LogisticRegression(max_iter=1000).fit(X, Y))
    assert fast is not None
    with pytest.raises(ValueError, match="NaN"):
        fast(np.array([[np.nan, 1.0, 2.0, 3.0]]))  # sklearn's own validation message
    with pytest.raises(ValueError, match="features"):
        fast(np.ones((1, 3)))


def test_only_small_linear_predictions_skip_the_thread_hop(tmp_path) -> None:  # noqa: ANN001
    from serving.demo_models import train_sklearn_iris
    from serving.runtimes.sklearn import SKLearnRuntime
    from serving.settings import ModelSettings

    train_sklearn_iris(tmp_path)
    runtime = SKLearnRuntime(ModelSettings(name="iris", model_dir=tmp_path))
    runtime.load()
    row = {"input-0": np.array([[6.8, 2.8, 4.8, 1.4]])}
    assert runtime.runs_inline(row, None, {})
    assert not runtime.runs_inline(row, None, {"predict_proba": True}), "predict_proba is sklearn's, not ours"
    assert not runtime.runs_inline(row, ("probabilities",), {})
    assert not runtime.runs_inline({"input-0": np.ones((5000, 4))}, None, {}), "large inputs go to a thread"
    assert runtime.predict(row, None, {})["output-0"].tolist() == [1]


def test_large_batches_match_sklearn_row_for_row() -> None:
    from sklearn.datasets import make_classification

    XC, YC = make_classification(600, 8, n_informative=6, n_classes=5, random_state=0)
    model = LogisticRegression(max_iter=2000).fit(XC, YC)
    fast = linear_predict(model)
    assert fast is not None
    rows = np.random.default_rng(2).normal(0, 4, size=(5000, 8)).astype(np.float32)
    assert np.array_equal(fast(rows), model.predict(rows))
    assert np.array_equal(fast(rows[:3]), model.predict(rows[:3]))


def test_first_argmax_breaks_ties_and_nans_like_numpy() -> None:
    from serving.runtimes.linear_fast_path import _first_argmax

    scores = np.random.default_rng(3).integers(0, 3, size=(4, 2000)).astype(np.float64)  # many ties
    assert np.array_equal(_first_argmax(scores), np.argmax(scores, axis=0))
    scores[2, 5] = np.nan
    assert np.array_equal(_first_argmax(scores), np.argmax(scores, axis=0))
    many = np.random.default_rng(4).normal(size=(300, 500))  # more classes than an int8 index holds
    assert np.array_equal(_first_argmax(many), np.argmax(many, axis=0))


@pytest.mark.parametrize(
    "array",
    [
        np.array([[5.1, 3.5, 1.4, 0.2]]),
        np.array([[np.nan, 1.0]]),
        np.array([[1.0, -np.inf]]),
        np.array([[1e308, 1e308]]) * 10,
        np.ones((100, 4)),
        np.concatenate([np.ones((100, 4)), [[0.0, 0.0, 0.0, np.nan]]]),
        np.array([1.0, np.inf], dtype=np.float16),
        np.array([np.inf], dtype=np.longdouble),
        np.array([[1, 2]]),
    ],
    ids=["row", "nan", "neg-inf", "overflowed", "many", "many-nan", "float16", "longdouble", "int"],
)
def test_the_finiteness_check_agrees_with_numpy(array: np.ndarray) -> None:
    from serving.runtimes.linear_fast_path import all_finite

    assert all_finite(array) == bool(np.isfinite(array).all())
