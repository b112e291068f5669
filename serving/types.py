"""Core data types shared by codecs, data plane, batcher and runtimes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TensorDict = dict[str, np.ndarray]
"""Named tensors: what runtimes consume and produce. BYTES tensors are object arrays of `bytes`."""


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: follow the request-level `binary_data_output`
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """A decoded request, independent of the protocol it came in on."""

    inputs: TensorDict
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None  # None: the model's default outputs
    binary_output: bool = False  # request-level `binary_data_output`
    # Resolves once the client has hung up (an HTTP request's `receive` past its body), so a request queued
    # for a model slot leaves the queue instead of running for nobody; None: not watched
    client_gone: Callable[[], Awaitable[object]] | None = None

    @property
    def output_names(self) -> tuple[str, ...] | None:
        return None if self.outputs is None else tuple(o.name for o in self.outputs)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str | None
    outputs: TensorDict
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, numpy dtype and shape (-1 for variable dimensions) of a model input or output."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
