"""Several kinds of scikit-learn model in one folder, in a fresh process (scikit-learn not yet imported): their
loads run in threads at once, and so do the first requests that need a cached model's full estimator. Python's
import locks made those fail at random (`_DeadlockError`, "partially initialized module"): at start-up, models
that stayed not ready; later, a model that reported ready but failed every request that needed its estimator."""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

import httpx
import joblib
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import (
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.svm import LinearSVC

from loadtests.servers import started, wait_until

pytestmark = pytest.mark.e2e  # the race needs a process that has not imported scikit-learn yet

LINEAR = {
    "lr": LogisticRegression(max_iter=500),
    "sgd": SGDClassifier(),
    "rc": RidgeClassifier(),
    "per": Perceptron(),
    "svc": LinearSVC(),
    "ridge": Ridge(),
}


def _serve(folder: Path, log: Path, cache: Path):
    argv = [
        sys.executable,
        "-m",
        "serving.cli",
        "serve",
        "--model-dir",
        str(folder),
        "--access-log-sample",
        "0",
    ]
    return started(argv, "/v2/health/live", log, env={"SERVING_CACHE_DIR": str(cache)})


def _states(url: str) -> dict[str, str]:
    index = httpx.post(url + "/v2/repository/index", json={}, timeout=5).json()
    return {m["name"]: m.get("state", "") for m in index}


def _loaded(url: str) -> dict[str, str]:
    seen: dict[str, str] = {}

    def settled() -> bool:
        seen.update(_states(url))
        return all(state in ("READY", "UNAVAILABLE") for state in seen.values()) and len(seen) == 7

    wait_until(settled, 60, "every model loaded or failed")
    return seen


def test_models_of_several_kinds_load_and_unpickle_side_by_side(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    folder, cache = tmp_path / "models", tmp_path / "cache"
    for name, model in {**LINEAR, "rf": RandomForestClassifier(n_estimators=3)}.items():
        (folder / name).mkdir(parents=True)
        joblib.dump(model.fit(x, y), folder / name / "model.joblib")

    with _serve(folder, tmp_path / "first.log", cache) as server:  # every model unpickled at load
        states = _loaded(server.url)
        assert set(states.values()) == {"READY"}, (states, server.log.read_text()[-3000:])

    # Again, the linear models now from the compiled cache: each unpickles on the first request that needs its
    # estimator (a NaN is outside the numpy fast path), all at once.
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    )
    body = header + struct.pack("<4d", float("nan"), 2.8, 4.8, 1.4)

    async def first_requests(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"/v2/models/{name}/infer",
                        content=body,
                        headers={"inference-header-content-length": str(len(header))},
                    )
                    for name in LINEAR
                )
            )

    with _serve(folder, tmp_path / "second.log", cache) as server:
        assert set(_loaded(server.url).values()) == {"READY"}
        answers = asyncio.run(first_requests(server.url))
        # the estimator's own refusal of the NaN (a 400 naming it), never a failure to load it
        assert all(r.status_code == 400 and "NaN" in r.json()["error"] for r in answers), [
            (r.status_code, r.text[:200]) for r in answers
        ]
        assert "a request needs the full estimator" in server.log.read_text()
