"""Revisions: the immutable (transformer?, predictor) pair an InferenceService serves, content-hashed.

A revision holds the *typed, normalised* spec (the `sklearn:`-style shorthand turned into `model:`, traffic and
scale fields cleared), so every consumer reads `revision.predictor.batcher` as a `Batcher` or `None`: a block
the user wrote is present even when all its values equal the defaults (`batcher: {}` means "batch with the
defaults", as in KServe). The digest is taken over `served_document()`, the canonical JSON of that spec
(fields that differ from their defaults, present blocks kept as keys), so specs that serve alike hash alike and
traffic settings never create a revision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from serving.spec import (
    Batcher,
    InferenceService,
    ModelSpec,
    PredictorSpec,
    StorageSpec,
    StorageUri,
    TransformerSpec,
)

# Settings that only move traffic or scale replicas: cleared before hashing, so they never make a revision.
TRAFFIC_AND_SCALE = (
    "canary_traffic_percent",
    "min_replicas",
    "max_replicas",
    "scale_target",
    "scale_metric",
    "auto_scaling",
)
SHORTHANDS = ("sklearn", "xgboost", "onnx")

REMOTE_SCHEMES = frozenset({"http", "https", "s3", "gs", "az"})  # fetched, not mounted or read in place


def served_document(component: PredictorSpec | TransformerSpec) -> dict[str, Any]:
    """The canonical JSON of a normalised component: what the digest covers and what state files store.

    Defaults are left out (adding a defaulted field to the schema renames no revision), but a nested block
    that is set stays as a key (`{"batcher": {}}`), and `model_validate` of the result restores every default.
    """
    return component.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


def normalised_predictor(spec: PredictorSpec) -> PredictorSpec:
    """The predictor as served: `model:` form, traffic and scale cleared."""
    update: dict[str, Any] = {name: None for name in (*TRAFFIC_AND_SCALE, *SHORTHANDS, "storage_uris")}
    if spec.custom_container is None:  # a model, in either form (a shorthand beside sidecars included)
        update["model"] = spec.normalised_model()
    return PredictorSpec.model_validate(served_document(spec.model_copy(update=update)))


def normalised_transformer(spec: TransformerSpec | None) -> TransformerSpec | None:
    if spec is None:
        return None
    cleared = spec.model_copy(update={name: None for name in TRAFFIC_AND_SCALE})
    return TransformerSpec.model_validate(served_document(cleared))


@dataclass(frozen=True, slots=True)
class Revision:
    name: str
    isvc: str
    namespace: str
    digest: str
    predictor: PredictorSpec  # normalised (see module docstring)
    transformer: TransformerSpec | None
    # the InferenceService annotations its `logger.metadataAnnotations` name (a pod's annotations, in KServe:
    # another value makes another revision), carried by its payload events
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_spec(cls, isvc: InferenceService) -> Revision:
        predictor = normalised_predictor(isvc.spec.predictor)
        transformer = normalised_transformer(isvc.spec.transformer)
        wanted = {
            key
            for spec in (predictor, transformer)
            if spec is not None and spec.logger is not None
            for key in spec.logger.metadata_annotations
        }
        picked = tuple(sorted((k, v) for k, v in isvc.metadata.annotations.items() if k in wanted))
        return cls.build(isvc.metadata.name, isvc.metadata.namespace, predictor, transformer, picked)

    @classmethod
    def build(
        cls,
        isvc: str,
        namespace: str,
        predictor: PredictorSpec,
        transformer: TransformerSpec | None,
        annotations: tuple[tuple[str, str], ...] = (),
    ) -> Revision:
        served: dict[str, Any] = {
            "predictor": served_document(predictor),
            "transformer": served_document(transformer) if transformer is not None else None,
        }
        if annotations:  # only then: the digest of every other revision stays what it was
            served["annotations"] = dict(annotations)
        digest = hashlib.sha256(orjson.dumps(served, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return cls(f"{isvc}-{digest[:8]}", isvc, namespace, digest, predictor, transformer, annotations)

    @property
    def model(self) -> ModelSpec | None:
        return self.predictor.model

    @property
    def model_format(self) -> str | None:
        model = self.model
        return model.model_format.name if model is not None and model.model_format is not None else None

    @property
    def storage_uri(self) -> str | None:
        """The model's `storageUri`; a custom predictor container's is its `STORAGE_URI` env (as in KServe)."""
        return self.model.storage_uri if self.model is not None else self.predictor.custom_storage_uri

    @property
    def storage_uris(self) -> tuple[StorageUri, ...]:
        """KServe's `storageUris` when they are more than one `storageUri` (each into its folder under
        /mnt/models); empty otherwise."""
        model = self.model
        return model.storage_uris or () if model is not None else ()

    @property
    def service_account(self) -> str:
        """The pod's service account: the predictor's `serviceAccountName`, "default" when unset (as in KServe)."""
        return self.predictor.service_account_name or "default"

    @property
    def reads_account_credentials(self) -> bool:
        """Whether the storage-initializer takes its credentials from the service account's Secrets, as KServe's
        does: a download, so not a local path, a file:// or a pvc:// (mounted), nor a `storage:` (its storage Secret
        gives them)."""
        scheme = (self.storage_uri or "").partition("://")[0] if "://" in (self.storage_uri or "") else ""
        return self.storage is None and scheme not in ("", "file", "pvc")

    @property
    def fetched_remotely(self) -> bool:
        """Fetched in the background: an object store or URL (a `storage:` is an s3:// bucket, once resolved).
        A failure of such a fetch may pass (the store comes back), where a local path that is missing is
        nearly always a typo."""
        from serving.storage import scheme_of

        uris = [item.uri for item in self.storage_uris] or [self.storage_uri or ""]
        return self.storage is not None or any(scheme_of(uri) in REMOTE_SCHEMES for uri in uris)

    @property
    def storage(self) -> StorageSpec | None:
        """KServe's `storage:` (a path in the bucket a Secret's entry names), resolved where the Secret is read:
        by the local control plane when it fetches, by render and the operator for the storage-initializer."""
        return self.model.storage if self.model is not None else None

    @property
    def batcher(self) -> Batcher | None:
        return self.predictor.batcher

    @property
    def transformer_process(self) -> TransformerSpec | None:
        """The transformer when it runs as its own process (replicas, Deployment): the router's entry."""
        return self.transformer if self.transformer is not None and not self.transformer.in_process else None

    @property
    def in_process_transformer(self) -> TransformerSpec | None:
        """The transformer when it runs inside the predictor's process (`serving.dev/placement: in-process`)."""
        return self.transformer if self.transformer is not None and self.transformer.in_process else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "isvc": self.isvc,
            "namespace": self.namespace,
            "digest": self.digest,
            "predictor": served_document(self.predictor),
            "transformer": served_document(self.transformer) if self.transformer is not None else None,
        } | ({"annotations": dict(self.annotations)} if self.annotations else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Revision:
        """Reads what `to_json` wrote (and the camelCase records of earlier versions, which are the same JSON)."""
        transformer = data.get("transformer")
        return cls(
            name=data["name"],
            isvc=data["isvc"],
            namespace=data["namespace"],
            digest=data["digest"],
            predictor=PredictorSpec.model_validate(data["predictor"]),
            transformer=TransformerSpec.model_validate(transformer) if transformer is not None else None,
            annotations=tuple(sorted((data.get("annotations") or {}).items())),
        )
