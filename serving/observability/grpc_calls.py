"""Request ids and access lines for gRPC inference calls (ModelInfer), as `Observed` gives HTTP requests.

The id is the client's `x-request-id` metadata when it is sane, else a new one (the same rule as over HTTP); it
is set as the running request's id (so JSON log lines written meanwhile carry it), echoed to the client in the
initial metadata, sent on by the router to the replica, and written in the call's access line. The line is the
HTTP one: `POST /inference.GRPCInferenceService/ModelInfer`, the status as the HTTP code of the gRPC status
(the `code` of `serving_requests_total`), the same sampling and level. Payload events stay REST's: as KServe's
logger agent, nothing is captured from gRPC calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from serving.observability import request_id, tracing
from serving.observability.access_log import AccessLog, AccessRecord

INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
REQUEST_ID_KEY = request_id.HEADER.decode("ascii")
CLIENT_GONE = 499  # a call the client cancelled, or whose deadline it let pass: nginx's code, as over HTTP


@dataclass(slots=True)
class GrpcCall:
    request_id: str
    started: float
    bytes_in: int
    token: Token[str]


class GrpcCalls:
    """One per gRPC server (model server or router): `begin` when a call comes, `finish` when it ends."""

    def __init__(self, access: AccessLog | None, component: str, isvc: str = "", revision: str = "") -> None:
        self.access, self.component, self.isvc, self.revision = access, component, isvc, revision

    @classmethod
    def like(cls, observed: Any) -> GrpcCalls:
        """The same access log and identity as the process's HTTP hook (`observability.asgi.Observed`)."""
        source = observed.source
        return cls(observed.access, source.component, source.isvc, source.endpoint)

    def begin(self, metadata: Iterable[tuple[str, Any]], bytes_in: int) -> GrpcCall:
        client = next((v for k, v in metadata if k == REQUEST_ID_KEY and isinstance(v, str)), None)
        chosen, _ = request_id.choose(client.encode("latin-1", "replace") if client is not None else None)
        return GrpcCall(chosen, time.monotonic(), bytes_in, request_id.current.set(chosen))

    def finish(
        self,
        call: GrpcCall,
        status: int,
        bytes_out: int,
        model: str | Callable[[], str],
        revision: str = "",
        arm: str = "",
        isvc: str = "",
    ) -> None:
        """`model`: its name, or how to read it (only when a line is written). Called inside the call's span
        (when tracing): the span gets the ids an HTTP request's span has, and the line the span's trace id."""
        request_id.current.reset(call.token)
        traced = tracing.enabled()
        if traced:
            named = {"serving.request_id": call.request_id, "serving.component": self.component}
            if isvc or self.isvc:
                named["serving.isvc"] = isvc or self.isvc
            if revision or self.revision:
                named["serving.revision"] = revision or self.revision
            tracing.set_attributes(named)
        access = self.access
        if access is None or not access.wants(status, call.request_id):
            return
        if not isinstance(model, str):
            model = model()
        access.write(
            AccessRecord(
                call.request_id,
                "POST",
                INFER_PATH,
                status,
                time.monotonic() - call.started,
                call.bytes_in,
                bytes_out,
                isvc or self.isvc or model,
                revision or self.revision,
                arm,
                self.component,
                tracing.trace_id() if traced else "",
            )
        )


def status_of(exc: BaseException, default: int = 500) -> int:
    """The HTTP code an exception ending a call stands for: a cancelled call is the client's leaving."""
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_GONE
    return int(getattr(exc, "status_code", default))
