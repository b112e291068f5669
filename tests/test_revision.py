"""Revisions are typed and normalised: a block the user wrote is present even when its values equal the
defaults (KServe's documented `batcher: {maxBatchSize: 32, maxLatency: 500}` and `batcher: {}` batch), the
digest follows what is served, and state records round-trip (including the camelCase records of before)."""

from __future__ import annotations

import orjson
import pytest

from serving.control.process_args import predictor_args
from serving.revision import Revision
from serving.spec import Batcher, parse


def _isvc(predictor: dict, name: str = "iris") -> Revision:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor},
    }
    return Revision.from_spec(parse(doc))


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


@pytest.mark.parametrize("batcher", [{"maxBatchSize": 32, "maxLatency": 500}, {}, {"maxBatchSize": 32}])
def test_a_batcher_at_its_defaults_still_batches(batcher: dict) -> None:
    revision = _isvc({"batcher": batcher, "sklearn": {"storageUri": "/m"}})
    assert revision.batcher == Batcher(max_batch_size=32, max_latency=500)
    args = predictor_args(revision, "/m")
    assert (_flag(args, "--max-batch-size"), _flag(args, "--max-latency-ms")) == ("32", "500")


def test_no_batcher_no_batching_flags() -> None:
    revision = _isvc({"sklearn": {"storageUri": "/m"}})
    assert revision.batcher is None
    assert "--max-batch-size" not in predictor_args(revision, "/m")


def test_digest_follows_what_is_served() -> None:
    plain = _isvc({"sklearn": {"storageUri": "/m"}})
    empty = _isvc({"batcher": {}, "sklearn": {"storageUri": "/m"}})
    spelled = _isvc(
        {
            "batcher": {"maxBatchSize": 32, "maxLatency": 500},
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/m"},
        }
    )
    assert empty.name != plain.name  # batching or not: two revisions
    assert empty.name == spelled.name  # the same served spec, however written
    # Traffic and scale never make a revision; the served fields do.
    assert (
        _isvc({"canaryTrafficPercent": 10, "minReplicas": 2, "sklearn": {"storageUri": "/m"}}).name
        == plain.name
    )
    assert _isvc({"timeout": 5, "sklearn": {"storageUri": "/m"}}).name != plain.name


def test_shorthand_is_normalised_to_model() -> None:
    revision = _isvc({"xgboost": {"storageUri": "/m", "args": ["--predict-proba"]}})
    assert revision.predictor.xgboost is None and revision.model is not None
    assert revision.model_format == "xgboost" and revision.storage_uri == "/m"
    assert predictor_args(revision, "/m")[-1] == "--predict-proba"


def test_state_records_round_trip() -> None:
    revision = _isvc(
        {"batcher": {}, "timeout": 9, "sklearn": {"storageUri": "/m", "env": [{"name": "A", "value": "1"}]}}
    )
    record = orjson.loads(orjson.dumps(revision.to_json()))
    assert record["predictor"]["batcher"] == {}  # present, defaults left out
    assert Revision.from_json(record) == revision
    # A record written before revisions were typed: the same camelCase JSON.
    old = {
        "name": "iris-1",
        "isvc": "iris",
        "namespace": "default",
        "digest": "1" * 64,
        "transformer": None,
        "predictor": {
            "batcher": {"maxBatchSize": 4},
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/m"},
        },
    }
    loaded = Revision.from_json(old)
    assert loaded.batcher == Batcher(max_batch_size=4, max_latency=500) and loaded.model_format == "sklearn"
