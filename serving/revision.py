"""Revisions: the immutable (transformer?, predictor) pair an InferenceService serves, content-hashed.

Only fields that change what is served go into the hash; traffic and scale settings
(canaryTrafficPercent, min/maxReplicas, scale*) never create a revision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from serving.spec import InferenceService

TRAFFIC_AND_SCALE = {
    "canaryTrafficPercent", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
    "canary_traffic_percent", "min_replicas", "max_replicas", "scale_target", "scale_metric",
}


@dataclass(frozen=True, slots=True)
class Revision:
    name: str
    isvc: str
    namespace: str
    digest: str
    predictor: dict[str, Any]  # normalised predictor spec (camelCase), scale/traffic fields removed
    transformer: dict[str, Any] | None

    @classmethod
    def from_spec(cls, isvc: InferenceService) -> Revision:
        predictor_spec = isvc.spec.predictor
        predictor = predictor_spec.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        for shorthand in ("sklearn", "xgboost", "onnx"):
            predictor.pop(shorthand, None)
        if predictor_spec.model is not None or not predictor_spec.containers:
            predictor["model"] = predictor_spec.normalised_model().model_dump(
                by_alias=True, exclude_none=True, exclude_defaults=True
            )
        predictor = _served_fields(predictor)
        transformer = None
        if isvc.spec.transformer is not None:
            transformer = _served_fields(
                isvc.spec.transformer.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
            )
        digest = hashlib.sha256(
            orjson.dumps({"predictor": predictor, "transformer": transformer}, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        return cls(
            name=f"{isvc.metadata.name}-{digest[:8]}",
            isvc=isvc.metadata.name,
            namespace=isvc.metadata.namespace,
            digest=digest,
            predictor=predictor,
            transformer=transformer,
        )

    @property
    def model(self) -> dict[str, Any]:
        return self.predictor.get("model", {})

    @property
    def model_format(self) -> str | None:
        return self.model.get("modelFormat", {}).get("name")

    @property
    def storage_uri(self) -> str | None:
        return self.model.get("storageUri")

    @property
    def batcher(self) -> dict[str, Any] | None:
        return self.predictor.get("batcher")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "isvc": self.isvc, "namespace": self.namespace, "digest": self.digest,
            "predictor": self.predictor, "transformer": self.transformer,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Revision:
        return cls(**data)


def _served_fields(component: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in component.items() if k not in TRAFFIC_AND_SCALE}
