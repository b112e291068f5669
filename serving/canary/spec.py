"""The `Canary` document (serving.dev/v1alpha1): Flagger's `analysis` vocabulary beside a KServe InferenceService.

The InferenceService stays untouched; a Canary that targets it takes over the canary weight. Validation errors
name the field path, like the InferenceService's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from serving.durations import parse_duration_s
from serving.errors import BadRequest
from serving.spec import Metadata

API_VERSION = "serving.dev/v1alpha1"
BUILT_IN_METRICS = ("request-success-rate", "request-duration")


class CanarySpecError(BadRequest):
    """A Canary the user must fix; the message starts with the field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ThresholdRange(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class MetricCheck(_Strict):
    name: str
    threshold_range: ThresholdRange
    percentile: Literal[50, 90, 99] = 99  # request-duration only
    query: str | None = (
        None  # PromQL, evaluated against --prometheus-url; its value is checked against the range
    )

    @model_validator(mode="after")
    def _known(self) -> MetricCheck:
        if self.query is None and self.name not in BUILT_IN_METRICS:
            raise ValueError(
                f"metric {self.name!r} is not built in ({', '.join(BUILT_IN_METRICS)}); "
                "give a PromQL `query` for any other"
            )
        return self


class SessionAffinity(_Strict):
    header: str = Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")


class LoadTest(_Strict):
    users: int = Field(default=8, ge=1, le=1000)
    duration: str = "30s"
    payload: Literal["iris", "iris-fp32", "rf32"] | None = (
        None  # `serving loadtest --payload` (default: by name)
    )

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration_s(value)
        return value


class Analysis(_Strict):
    interval: str = "1m"
    step_weights: tuple[int, ...] = ()
    step_weight: int | None = Field(default=None, ge=1, le=100)
    max_weight: int = Field(default=50, ge=1, le=100)
    threshold: int = Field(default=5, ge=1)
    min_requests: int = Field(default=1, ge=0)
    metrics: tuple[MetricCheck, ...] = ()
    mirror: bool = False
    mirror_intervals: int = Field(default=1, ge=1)
    session_affinity: SessionAffinity | None = None
    load_test: LoadTest | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if parse_duration_s(value) < 0.1:
            raise ValueError("interval must be at least 100ms")
        return value

    @model_validator(mode="after")
    def _steps(self) -> Analysis:
        if self.step_weights and self.step_weight is not None:
            raise ValueError("give stepWeights or stepWeight (+ maxWeight), not both")
        if not self.step_weights and self.step_weight is None:
            raise ValueError("give stepWeights (e.g. [10, 25, 50]) or stepWeight with maxWeight")
        weights = self.weights
        if any(not 0 < w < 100 for w in weights) or list(weights) != sorted(set(weights)):
            raise ValueError(f"step weights must rise strictly between 0 and 100 (got {list(weights)})")
        return self

    @property
    def weights(self) -> tuple[int, ...]:
        if self.step_weights:
            return self.step_weights
        assert self.step_weight is not None
        return tuple(range(self.step_weight, min(self.max_weight, 99) + 1, self.step_weight))

    @property
    def interval_s(self) -> float:
        return parse_duration_s(self.interval)


class TargetRef(_Strict):
    name: str
    kind: Literal["InferenceService"] = "InferenceService"
    api_version: str | None = None


class CanarySpec(_Strict):
    target_ref: TargetRef
    analysis: Analysis
    # Flagger's: how long a candidate that failed may keep being retried before the Canary fails
    progress_deadline_seconds: int = Field(default=600, ge=1)


class CanaryMetadata(Metadata):
    """An InferenceService's metadata, but a name may use the whole DNS label (no objects are named after it)."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)


class Canary(_Strict):
    api_version: Literal["serving.dev/v1alpha1"]
    kind: Literal["Canary"]
    metadata: CanaryMetadata
    spec: CanarySpec
    status: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.metadata.namespace, self.metadata.name)

    @property
    def target_key(self) -> tuple[str, str]:
        return (self.metadata.namespace, self.spec.target_ref.name)


def parse_canary(document: dict[str, Any]) -> Canary:
    """Validate one Canary document; a CanarySpecError names every wrong field by its path."""
    try:
        return Canary.model_validate(document)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = _path(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field (not supported)"
            problems.append(f"{path}: {message}")
        raise CanarySpecError("; ".join(problems)) from exc


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith("function-"):
            out += ("." if out else "") + str(part)
    return out
