"""Saved XGBoost estimators served from the Booster alone (runtimes/xgboost_native.py), against xgboost's own
sklearn wrapper loading the same file: labels and probabilities equal for binary and multi-class classifiers,
regressors and early-stopped models; objectives the wrapper handles differently stay with the wrapper; a process
serving a native file never imports scikit-learn, and still loads a pickled estimator afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris, make_classification, make_regression

from serving.runtimes.sklearn import PREDICT, PROBABILITIES
from serving.runtimes.xgboost import XGBoostRuntime
from serving.runtimes.xgboost_native import NativeEstimator
from serving.settings import ModelSettings


def _saved(tmp_path: Path, name: str, estimator: object) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    estimator.save_model(folder / "model.json")  # type: ignore[attr-defined]
    return folder


def _runtime(folder: Path) -> XGBoostRuntime:
    runtime = XGBoostRuntime(ModelSettings(name=folder.name, model_dir=folder))
    runtime.load()
    return runtime


def _cases(tmp_path: Path) -> list[tuple[Path, object, np.ndarray]]:
    x3, y3 = load_iris(return_X_y=True)
    x2, y2 = make_classification(n_samples=300, n_features=6, random_state=0)
    xr, yr = make_regression(n_samples=200, n_features=5, random_state=0)
    early = xgb.XGBClassifier(n_estimators=200, max_depth=2, early_stopping_rounds=3, eval_metric="logloss")
    early.fit(x2[:200], y2[:200], eval_set=[(x2[200:], y2[200:])], verbose=False)
    assert early.best_iteration < 199  # it stopped early: trees past the best one exist and must not count
    models = {
        "multiclass": (xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x3, y3), x3),
        "binary": (xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x2, y2), x2),
        "regressor": (xgb.XGBRegressor(n_estimators=8, max_depth=3).fit(xr, yr), xr),
        "early-stopped": (early, x2),
    }
    return [(_saved(tmp_path, name, model), model, rows) for name, (model, rows) in models.items()]


def test_labels_and_probabilities_equal_the_wrappers(tmp_path: Path) -> None:
    for folder, trained, rows in _cases(tmp_path):
        runtime = _runtime(folder)
        assert isinstance(runtime.model, NativeEstimator), folder.name
        wrapper = type(trained)()
        wrapper.load_model(folder / "model.json")
        got = runtime.predict({"input-0": rows}, None, {})[PREDICT]
        np.testing.assert_array_equal(got, wrapper.predict(rows), err_msg=folder.name)
        assert got.dtype == np.asarray(wrapper.predict(rows)).dtype, folder.name
        if isinstance(trained, xgb.XGBClassifier):
            proba = runtime.predict({"input-0": rows}, (PROBABILITIES,), {})[PROBABILITIES]
            np.testing.assert_array_equal(proba, wrapper.predict_proba(rows), err_msg=folder.name)
            assert runtime.metadata().outputs[0].dtype == np.dtype(np.int64)
        else:
            assert PROBABILITIES not in runtime._methods


def test_other_objectives_keep_xgboosts_wrapper(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    folder = _saved(
        tmp_path, "softmax", xgb.XGBClassifier(n_estimators=4, objective="multi:softmax").fit(x, y)
    )
    runtime = _runtime(folder)
    assert isinstance(runtime.model, xgb.XGBClassifier)
    np.testing.assert_array_equal(
        runtime.predict({"input-0": x}, None, {})[PREDICT], runtime.model.predict(x)
    )


def test_a_native_file_is_served_without_scikit_learn_and_a_pickle_still_loads_after(tmp_path: Path) -> None:
    """In a fresh interpreter: the iris classifier saved as JSON answers with sklearn never imported; a pickled
    XGBClassifier loaded next in the same process gets xgboost imported again, with its wrapper classes."""
    x, y = load_iris(return_X_y=True)
    model = xgb.XGBClassifier(n_estimators=6, max_depth=3).fit(x, y)
    native = _saved(tmp_path, "native", model)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    joblib.dump(model, pickled / "model.joblib")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from serving.runtimes.xgboost import XGBoostRuntime\n"
        "from serving.settings import ModelSettings\n"
        "rows = np.array([[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]])\n"
        "def loaded(folder):\n"
        "    r = XGBoostRuntime(ModelSettings(name='m', model_dir=Path(folder))); r.load()\n"
        "    return r\n"
        "outs = ('output-0', 'probabilities')\n"
        f"first = loaded({str(native)!r})\n"
        "a = first.predict({'input-0': rows}, outs, {})\n"
        "print(a['output-0'].tolist(), 'sklearn' in sys.modules)\n"
        f"b = loaded({str(pickled)!r}).predict({{'input-0': rows}}, outs, {{}})\n"
        "print(b['output-0'].tolist(), 'sklearn' in sys.modules, type(b).__name__)\n"
        "again = first.predict({'input-0': rows}, outs, {})  # the model loaded before the re-import\n"
        "print(all(np.array_equal(x[k], y[k]) for x in (b, again) for y in (a,) for k in outs))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    first, second, same = run.stdout.strip().splitlines()
    expected = model.predict(np.array([[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]])).tolist()
    assert first == f"{expected} False"
    assert second.startswith(f"{expected} True")
    assert same == "True"


@pytest.mark.parametrize("suffix", [".ubj"])
def test_binary_json_formats_load_the_same(tmp_path: Path, suffix: str) -> None:
    x, y = load_iris(return_X_y=True)
    model = xgb.XGBClassifier(n_estimators=4).fit(x, y)
    folder = tmp_path / "ubj"
    folder.mkdir()
    model.save_model(folder / f"model{suffix}")
    runtime = _runtime(folder)
    assert isinstance(runtime.model, NativeEstimator)
    np.testing.assert_array_equal(runtime.predict({"input-0": x}, None, {})[PREDICT], model.predict(x))


def test_sklearn_stays_importable_in_other_threads_while_xgboost_loads_without_it() -> None:
    """A folder's models load in threads at once: while one thread imports xgboost with scikit-learn hidden,
    a pickled scikit-learn model loading in another must still import it (the audit's examples/models folder
    left sklearn-iris-v2 unready with 'sklearn is not imported while xgboost loads without it'). The hiding is
    held open here while another thread imports, in a fresh interpreter, so the race is not left to timing."""
    script = (
        "import threading\n"
        "from serving.runtimes.xgboost_native import _sklearn_hidden\n"
        "errors = []\n"
        "def other():\n"
        "    try:\n"
        "        import sklearn.linear_model  # noqa\n"
        "    except ImportError as exc:\n"
        "        errors.append(str(exc))\n"
        "with _sklearn_hidden():\n"
        "    try:\n"
        "        import sklearn  # noqa\n"
        "        hidden_here = False\n"
        "    except ImportError:\n"
        "        hidden_here = True\n"
        "    t = threading.Thread(target=other); t.start(); t.join()\n"
        "print(errors, hidden_here)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[] True"


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_a_zero_row_view_at_any_offset_of_the_body_answers_no_rows(tmp_path: Path, offset: int) -> None:
    """A tensor is a view of the request's bytes wherever the body put it: XGBoost checks the pointer's
    alignment even for no rows (the audit's zero-row request failed or not by the length of its id)."""
    x, y = load_iris(return_X_y=True)
    runtime = _runtime(_saved(tmp_path, "m", xgb.XGBClassifier(n_estimators=4, max_depth=2).fit(x, y)))
    body = bytes(16 + offset)
    rows = np.frombuffer(body, dtype=np.float32, offset=offset, count=0).reshape(0, 4)
    answer = runtime.predict({"input-0": rows}, (PREDICT, PROBABILITIES), {})
    assert answer[PREDICT].shape == (0,) and answer[PROBABILITIES].shape[0] == 0
