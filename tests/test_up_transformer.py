"""Transformer + predictor through `serving up`: records in, labels out; a canary pair is routed as a pair."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import joblib
import numpy as np
from sklearn.dummy import DummyClassifier

from tests.support import REPO, train_iris_sklearn, wait_until
from tests.up_support import apply_text, get_isvc, serving_up, traffic, wait_for_traffic

RECORD = {"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "petal_width": 1.4}
TEMPLATE = (REPO / "examples" / "transformer" / "iris-transformer.yaml").read_text()


def _isvc(model: Path, labels: str, canary: int | None = None) -> str:
    text = TEMPLATE.replace("../models/sklearn-iris", str(model)).replace(
        "setosa,versicolor,virginica", labels
    )
    if canary is not None:
        text = text.replace("  predictor:\n", f"  predictor:\n    canaryTrafficPercent: {canary}\n")
    return text


def test_transformer_pair_routing(tmp_path: Path) -> None:
    iris, constant = tmp_path / "iris", tmp_path / "constant"
    train_iris_sklearn(iris)
    constant.mkdir()
    joblib.dump(
        DummyClassifier(strategy="constant", constant=0).fit(np.zeros((3, 4)), [0, 1, 2]),
        constant / "model.joblib",
    )
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, _isvc(iris, "setosa,versicolor,virginica"), tmp_path)
        (r1,) = traffic(
            wait_for_traffic(server, state, "iris-transformer", lambda t: list(t.values()) == [100])
        )
        r = client.post("/v1/models/iris-transformer:predict", json={"instances": [RECORD]})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": ["versicolor"]}
        bad = client.post("/v1/models/iris-transformer:predict", json={"instances": [{"sepal_length": 1}]})
        assert bad.status_code == 400 and "sepal_width" in bad.json()["error"]

        # v2 pairs a transformer with other label names and a predictor that always says class 0.
        apply_text(server, state, _isvc(constant, "x0,x1,x2", canary=50), tmp_path)
        doc = wait_for_traffic(server, state, "iris-transformer", lambda t: sorted(t.values()) == [50, 50])
        (r2,) = set(traffic(doc)) - {r1}
        seen: Counter = Counter()
        for _ in range(60):
            r = client.post("/v1/models/iris-transformer:predict", json={"instances": [RECORD]})
            assert r.status_code == 200, r.text
            seen[(r.headers["x-serving-revision"], r.json()["predictions"][0])] += 1
        # A mixed pair would answer "setosa" (stable transformer, canary predictor) or "x1" (the reverse).
        assert set(seen) == {(r1, "versicolor"), (r2, "x0")}, seen
        assert seen[(r1, "versicolor")] == seen[(r2, "x0")] == 30
        component = doc["status"]["components"]
        assert "transformer" in component
        ready = {c["type"]: c["status"] for c in doc["status"]["conditions"]}
        assert ready["TransformerReady"] == "True" and ready["Ready"] == "True"


def test_a_failed_transformer_canary_stops_its_predictor_too(tmp_path: Path) -> None:
    """A pair whose transformer cannot start failed for good: its predictor stops as well and is not counted
    (it idled on for minutes, REPLICAS 2/2 as if a second replica served), while the stable pair serves on."""
    iris = tmp_path / "iris"
    train_iris_sklearn(iris)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, _isvc(iris, "setosa,versicolor,virginica"), tmp_path)
        (stable,) = traffic(
            wait_for_traffic(server, state, "iris-transformer", lambda t: list(t.values()) == [100])
        )
        broken = _isvc(iris, "setosa,versicolor,virginica", canary=50).replace(
            "- --transformer\n", "- --transformer\n          - nosuchmodule:Nope\n          - --labels\n"
        )
        assert broken.count("nosuchmodule") == 1
        apply_text(server, state, broken, tmp_path, "broken.yaml")

        def settled() -> dict | None:
            doc = get_isvc(server, state, "iris-transformer")
            predictor = doc["status"]["components"]["predictor"]
            failed = "lastFailureInfo" in doc["status"].get("modelStatus", {})
            return doc if failed and predictor.get("desiredReplicas") == 1 else None

        wait_until(lambda: settled() is not None, 60, what="the broken pair to fail and leave the count")
        predictor = get_isvc(server, state, "iris-transformer")["status"]["components"]["predictor"]
        assert (predictor["currentReplicas"], predictor["desiredReplicas"]) == (1, 1), predictor
        failed = predictor["latestCreatedRevision"]
        wait_until(
            lambda: f"revision {failed} failed for good: its other 1 replica stopped" in server.log(),
            30,
            what="its predictor to stop",
        )
        r = client.post("/v1/models/iris-transformer:predict", json={"instances": [RECORD]})
        assert r.status_code == 200 and r.headers["x-serving-revision"] == stable, r.text
