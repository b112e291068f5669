"""A linear model loaded once starts again from its compiled form: same answers, no scikit-learn until needed."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from serving.demo_models import train_sklearn_iris
from serving.errors import ArtifactError, ArtifactRefused, ModelFailure
from serving.runtimes import linear_cache
from serving.runtimes.sklearn import SKLearnRuntime
from serving.settings import ModelSettings

ROWS = np.random.default_rng(3).normal(4, 2, size=(40, 4))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SERVING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SERVING_COMPILED_CACHE", raising=False)
    return tmp_path / "cache" / ".compiled"


def _loaded(model_dir: Path, **settings: object) -> SKLearnRuntime:
    runtime = SKLearnRuntime(ModelSettings(name="iris", model_dir=model_dir, **settings))  # type: ignore[arg-type]
    runtime.load()
    return runtime


def _iris(tmp_path: Path) -> Path:
    model_dir = tmp_path / "iris"
    train_sklearn_iris(model_dir)
    return model_dir


def test_the_second_load_answers_from_the_compiled_form(tmp_path: Path, cache: Path) -> None:
    model_dir = _iris(tmp_path)
    first = _loaded(model_dir)
    assert first._lazy is None and len(list(cache.glob("linear-v1-*.npz"))) == 1
    second = _loaded(model_dir)
    assert second._lazy is not None and not second._lazy.loaded

    inputs = {"input-0": ROWS}
    assert np.array_equal(
        second.predict(inputs, None, {})["output-0"], first.predict(inputs, None, {})["output-0"]
    )
    assert second.metadata() == first.metadata()
    assert second.runs_inline({"input-0": ROWS[:1]}, None, {})
    assert not second._lazy.loaded  # predictions alone never unpickled it

    probabilities = second.predict(inputs, ("probabilities",), {})["probabilities"]
    assert second._lazy.loaded
    assert np.allclose(probabilities, first.predict(inputs, ("probabilities",), {})["probabilities"])


def test_inputs_the_product_does_not_take_get_scikit_learns_answer_off_the_loop(
    tmp_path: Path, cache: Path
) -> None:
    model_dir = _iris(tmp_path)
    first = _loaded(model_dir)
    second = _loaded(model_dir)
    bad = {"input-0": np.array([[np.nan, 1.0, 2.0, 3.0]])}
    assert not second.runs_inline(bad, None, {})  # unpickling would block the event loop: a thread does it
    with pytest.raises(ValueError) as from_sklearn:
        first.predict(bad, None, {})
    with pytest.raises(ValueError) as from_compiled:
        second.predict(bad, None, {})
    assert str(from_compiled.value) == str(from_sklearn.value)
    assert second._lazy is not None and second._lazy.loaded
    assert second.runs_inline(bad, None, {}) == first.runs_inline(bad, None, {})


def test_a_restarted_process_serves_without_importing_scikit_learn(tmp_path: Path, cache: Path) -> None:
    model_dir = _iris(tmp_path)
    expected = _loaded(model_dir).predict({"input-0": ROWS}, None, {})["output-0"].tolist()
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from serving.runtimes.sklearn import SKLearnRuntime\n"
        "from serving.settings import ModelSettings\n"
        f"r = SKLearnRuntime(ModelSettings(name='iris', model_dir=Path({str(model_dir)!r})))\n"
        "r.load()\n"
        f"rows = np.array({ROWS.tolist()!r})\n"
        "print(r.predict({'input-0': rows}, None, {})['output-0'].tolist())\n"
        "print('sklearn' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    answer, imported = run.stdout.strip().splitlines()
    assert answer == str(expected)
    assert imported == "False"


def test_a_damaged_entry_or_a_disabled_cache_means_a_plain_load(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = _iris(tmp_path)
    _loaded(model_dir)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="serving.runtimes"):
        runtime = _loaded(model_dir)
    assert runtime._lazy is None and "compiled-model cache entry" in caplog.text
    assert runtime.predict({"input-0": ROWS}, None, {})["output-0"].shape == (40,)

    entry.unlink()
    monkeypatch.setenv("SERVING_COMPILED_CACHE", "0")
    assert _loaded(model_dir)._lazy is None
    assert not list(cache.glob("*.npz"))


def test_pickles_stay_refused_and_changed_bytes_are_not_served_from_an_old_entry(
    tmp_path: Path, cache: Path
) -> None:
    model_dir = _iris(tmp_path)
    _loaded(model_dir)
    with pytest.raises(ArtifactRefused):
        _loaded(model_dir, allow_pickle=False)

    train_sklearn_iris(model_dir, c=0.01)  # other coefficients, other bytes
    retrained = _loaded(model_dir)
    assert retrained._lazy is None  # not the old entry: loaded and compiled anew
    assert len(list(cache.glob("*.npz"))) == 2


def test_models_without_a_linear_form_are_not_cached(tmp_path: Path, cache: Path) -> None:
    x, y = load_iris(return_X_y=True)
    model_dir = tmp_path / "forest"
    model_dir.mkdir()
    joblib.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), model_dir / "model.joblib")
    _loaded(model_dir)
    assert _loaded(model_dir)._lazy is None
    assert not cache.exists() or not list(cache.glob("*.npz"))
    assert linear_cache.load(b"bytes never seen") is None


def test_a_scikit_learn_upgrade_reloads_and_a_failed_unpickle_is_not_retried(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = _iris(tmp_path)
    _loaded(model_dir)
    installed = linear_cache._sklearn_version
    monkeypatch.setattr(linear_cache, "_sklearn_version", lambda: "99.0")
    assert _loaded(model_dir)._lazy is None  # another scikit-learn: loaded and checked again
    monkeypatch.setattr(linear_cache, "_sklearn_version", installed)

    import serving.runtimes.sklearn as sklearn_runtime

    calls = []

    def failing(path: Path, data: bytes | None = None) -> None:
        calls.append(path)
        raise ArtifactError(f"cannot load {path.name}: ValueError: incompatible")

    runtime = _loaded(model_dir)
    assert runtime._lazy is not None
    monkeypatch.setattr(sklearn_runtime, "unpickle", failing)
    for _ in range(2):  # the server's failure, not the request's: a 500
        with pytest.raises(ModelFailure, match="incompatible"):
            runtime.predict({"input-0": ROWS}, ("probabilities",), {})
    assert len(calls) == 1
