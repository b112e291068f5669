"""The codec table: how each protocol turns body bytes into an InferRequest and a response into bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from serving.protocol import v1_codec, v2_codec
from serving.settings import Limits
from serving.types import InferRequest, InferResponse


class Codec(Protocol):
    @property
    def protocol(self) -> str: ...

    def decode(self, body: bytes, headers: dict[str, str] | object, limits: Limits) -> InferRequest: ...

    def encode(self, response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]: ...


_JSON = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class V1Codec:
    protocol: str = "v1"

    def decode(self, body: bytes, headers: object, limits: Limits) -> InferRequest:
        return v1_codec.decode_request(body, limits)

    def encode(self, response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
        return v1_codec.encode_response(response), _JSON


@dataclass(frozen=True, slots=True)
class V2Codec:
    protocol: str = "v2"

    def decode(self, body: bytes, headers: object, limits: Limits) -> InferRequest:
        header_length = headers.get(v2_codec.HEADER_LENGTH)  # type: ignore[attr-defined]
        return v2_codec.decode_request(body, header_length, limits)

    def encode(self, response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
        return v2_codec.encode_response(response, request)


V1 = V1Codec()
V2 = V2Codec()
