"""`inference.GRPCInferenceService` over the DataPlane: every RPC a few lines, errors from the one family.

Each method receives the request's bytes and parses them itself, so garbage on the wire is an
INVALID_ARGUMENT naming the message (grpcio's own deserializer failure would be an opaque INTERNAL).
ModelInfer answers the bytes the codec serialised (no second copy through a response serializer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

import serving
from serving.dataplane import DataPlane
from serving.errors import UNSERVED_EXTENSIONS, ModelFailure, ServingError
from serving.grpc import messages as pb
from serving.grpc.status import bounded, grpc_code, http_status, trailing_metadata
from serving.grpc.tensor_codec import ProtobufInfer
from serving.grpc.wire import last_string
from serving.http.v2_routes import EXTENSIONS, check_load_parameters, model_config, model_metadata
from serving.observability import request_id, tracing
from serving.observability.grpc_calls import CLIENT_GONE, REQUEST_ID_KEY, GrpcCalls, status_of

log = logging.getLogger("serving.grpc")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Method = Callable[[Any, Context], Awaitable[Any]]


class InferenceService:
    def __init__(
        self, dataplane: DataPlane, server_name: str = "serving", calls: GrpcCalls | None = None
    ) -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository
        self.server_name = server_name
        self.calls = calls  # request ids and access lines of ModelInfer calls

    async def server_live(self, request: Any, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.repository.all_ready())

    async def model_ready(self, request: Any, context: Context) -> Any:
        return pb.ModelReadyResponse(ready=self.repository.get(request.name, request.version or None).ready)

    async def server_metadata(self, request: Any, context: Context) -> Any:
        return pb.ServerMetadataResponse(
            name=self.server_name, version=serving.__version__, extensions=EXTENSIONS
        )

    async def model_metadata(self, request: Any, context: Context) -> Any:
        doc = model_metadata(self.repository.ready_model(request.name, request.version or None))
        return pb.ModelMetadataResponse(**doc)

    async def model_config(self, request: Any, context: Context) -> Any:
        """The same document as REST's `/config`, in Triton's ModelConfig message."""
        doc = model_config(self.repository.ready_model(request.name, request.version or None))
        return json_format.ParseDict({"config": doc}, pb.ModelConfigResponse())

    async def model_infer(self, codec: ProtobufInfer, context: Context) -> bytes:
        """The same DataPlane.infer as REST; the client's deadline bounds the work (DEADLINE_EXCEEDED)."""
        request = codec.message
        infer = self.dataplane.infer(request.model_name, request.model_version or None, b"", {}, codec)
        remaining = context.time_remaining()
        if remaining is None:
            body, _ = await infer
            return body
        try:
            async with asyncio.timeout(remaining):
                body, _ = await infer
        except TimeoutError:
            # The client's deadline: the call is over on its side (the abort may find it ended already)
            raise ClientLeft(
                f"model {request.model_name!r} did not answer within the client's deadline"
            ) from None
        return body

    async def repository_index(self, request: Any, context: Context) -> Any:
        index = pb.RepositoryIndexResponse()
        for entry in self.repository.index(request.ready):
            index.models.add(**entry)
        return index

    async def repository_model_load(self, request: Any, context: Context) -> Any:
        check_load_parameters(request.parameters)
        model = await self.repository.load(request.model_name, requested=True)
        if not model.ready:
            raise ModelFailure(model.reason or f"failed to load model {model.name!r}")
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(self, request: Any, context: Context) -> Any:
        await self.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def handlers(self) -> dict[str, Handler]:
        """RPC name -> handler; all take raw bytes (see the module docstring)."""
        return {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest),
            "ModelConfig": unary(self.model_config, pb.ModelConfigRequest),
            "ModelInfer": unary(
                self.model_infer, pb.ModelInferRequest, ProtobufInfer.parse, serialize=False, calls=self.calls
            ),
            "RepositoryIndex": unary(self.repository_index, pb.RepositoryIndexRequest),
            "RepositoryModelLoad": unary(self.repository_model_load, pb.RepositoryModelLoadRequest),
            "RepositoryModelUnload": unary(self.repository_model_unload, pb.RepositoryModelUnloadRequest),
            **{
                method: unserved(f"Triton's {name} extension ({method}) is not served here")
                for _, methods, name in UNSERVED_EXTENSIONS
                for method in methods
            },
            "ModelStreamInfer": stream_infer_refused(),
        }


def unserved(message: str) -> Handler:
    """A method of Triton's service that is not served: UNIMPLEMENTED saying so (grpc's own says only
    "Method not found!")."""

    async def call(raw: bytes, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    return grpc.unary_unary_rpc_method_handler(call)


def stream_infer_refused() -> Handler:
    """Triton's streaming ModelStreamInfer: UNIMPLEMENTED, saying what to call instead."""
    message = "ModelStreamInfer (Triton's streaming inference) is not served here: call ModelInfer"
    return grpc.stream_stream_rpc_method_handler(_refuse_stream(message))


def _refuse_stream(message: str) -> Callable[[Any, Context], Any]:
    async def call(requests: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
        yield b""  # pragma: no cover - abort raises: this only makes the function a stream

    return call


async def in_server_span(
    method: str, raw: bytes, context: Context, handler: Callable[[bytes, Context], Awaitable[Any]]
) -> Any:
    """With tracing on: the call's SERVER span, continuing the client's `traceparent` (OpenTelemetry's RPC
    conventions), its status the call's; what `handler` does (the model's decode/predict/encode, the router's
    forward) is its child, not a trace of its own."""
    metadata = context.invocation_metadata() or ()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in metadata if isinstance(v, str)]
    attributes = {"rpc.system": "grpc", "rpc.service": pb.SERVICE, "rpc.method": method}
    with tracing.server_span(f"{pb.SERVICE}/{method}", headers, attributes):
        outcome: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN
        try:
            answer = await handler(raw, context)
            outcome = None
            return answer
        except (asyncio.CancelledError, ClientLeft):  # the client went: its deadline, or it cancelled
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            outcome = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        finally:
            code = context.code() or outcome or grpc.StatusCode.OK
            details = context.details() if hasattr(context, "details") else None
            tracing.set_rpc_status(code.value[0], code.name, details if isinstance(details, str) else None)


class ClientLeft(Exception):
    """The client's deadline passed while its call ran: DEADLINE_EXCEEDED to it, 499 in our counts."""


def unary(
    method: Method,
    request_class: Any,
    parse: Callable[[bytes], Any] | None = None,
    serialize: bool = True,
    calls: GrpcCalls | None = None,
) -> Handler:
    """Parse the bytes, run `method`, and turn every failure into a status code with a clear message; with
    `calls`, each call gets a request id (echoed in the trailing metadata) and an access line."""
    kind = request_class.DESCRIPTOR.name
    parse = parse or request_class.FromString

    async def run(raw: bytes, context: Context) -> tuple[Any, int]:
        """(the answer, its HTTP-equivalent status); aborts raise."""
        try:
            request = parse(raw)
        except (DecodeError, ValueError):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {kind} message"
            )
        try:
            return await method(request, context), 200
        except ServingError as exc:
            trailing = trailing_metadata(exc)
            if calls is not None:  # an abort's own trailing metadata replaces what was set: the id goes too
                trailing += ((REQUEST_ID_KEY, request_id.current.get()),)
            await context.abort(grpc_code(exc.status_code), bounded(exc.message), trailing)
        except ClientLeft:
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            log.exception("gRPC %s failed", kind)
            await context.abort(grpc.StatusCode.INTERNAL, f"{kind} failed: {type(exc).__name__}")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def call(raw: bytes, context: Context) -> Any:
        try:
            answer, _ = await run(raw, context)
            return answer
        except ClientLeft as exc:
            await _deadline_passed(context, exc)

    async def traced(raw: bytes, context: Context) -> Any:
        return await in_server_span(kind.removesuffix("Request"), raw, context, observed)

    async def observed(raw: bytes, context: Context) -> Any:
        assert calls is not None
        started = calls.begin(context.invocation_metadata() or (), len(raw))
        # the id goes back with the status, in the trailing metadata: no write of its own (sending initial
        # metadata first cost ~30 % more server CPU per call)
        context.set_trailing_metadata(((REQUEST_ID_KEY, started.request_id),))
        status, answer = 500, b""
        try:
            answer, status = await run(raw, context)
            return answer
        except ClientLeft as exc:
            status = CLIENT_GONE
            await _deadline_passed(context, exc)
        except BaseException as exc:
            status = _status_of_abort(context, exc)
            raise
        finally:
            calls.finish(
                started, status, len(answer) if isinstance(answer, bytes) else 0, lambda: _model_name(raw)
            )

    return grpc.unary_unary_rpc_method_handler(
        call if calls is None else (traced if tracing.enabled() else observed),
        response_serializer=(lambda message: message.SerializeToString()) if serialize else None,
    )


def _model_name(raw: bytes) -> str:
    """ModelInferRequest.model_name, read off the wire (for an access line; '' from bytes that are no message)."""
    try:
        return last_string(raw, 1)
    except (ValueError, UnicodeDecodeError):
        return ""


async def _deadline_passed(context: Context, exc: ClientLeft) -> None:
    """DEADLINE_EXCEEDED, unless the call is already over on the client's side (then nothing is sent: an
    abort would fail, and grpc would log it as an error)."""
    if context.done():
        raise asyncio.CancelledError
    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))


def _status_of_abort(context: Context, exc: BaseException) -> int:
    """The HTTP-equivalent status of a call that ended by `exc`: an abort's own code, a client's leaving."""
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return http_status(code) if code is not None else 500
    return status_of(exc)
