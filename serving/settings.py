"""Limits and per-model settings, read once at start-up (never per request from the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits; every one is a CLI flag and documented in README ("Limits and failure behaviour")."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_header_bytes: int = 64 * 1024  # request line + headers; 431 above (enforced by the HTTP protocol)
    # Slow or stalled clients (enforced by the HTTP protocol, one timer per connection): a request line +
    # headers must arrive within this of the connection opening or of the previous response (408), a body
    # must not go this long without a byte (408)
    header_timeout_s: float = 30.0
    body_timeout_s: float = 30.0
    max_tensor_elements: int = 16 * 1024 * 1024
    max_json_depth: int = 32
    request_timeout_s: float = 60.0
    max_concurrency: int = 0  # per model, 0 = unlimited (the batch queue still bounds waiting work)
    max_queue_wait_s: float = 1.0  # unbatched models: 503 when the expected wait for a model thread is longer
    max_queue: int = 1024  # unbatched models: 503 when more requests than this wait for a model thread


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How one model is loaded and served."""

    name: str
    model_dir: Path
    runtime: str | None = None  # short name or "module:Class"; None = detect from the artifact
    artifact: Path | None = (
        None  # the model file, when named (MLServer's parameters.uri); else found in model_dir
    )
    version: str = "1"
    predict_proba: bool = False
    intra_op_threads: int = 0  # onnxruntime; 0 = its default
    max_batch_size: int = 0  # 0 = batching off
    max_latency_s: float = 0.005
    max_batches_in_flight: int = 1
    max_queue_size: int = 1024
    allow_pickle: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
