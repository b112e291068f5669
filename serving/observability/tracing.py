"""OpenTelemetry tracing, off unless asked for (`--otel` or `OTEL_EXPORTER_OTLP_ENDPOINT`).

Off, `span()` returns one shared no-op context manager and nothing from OpenTelemetry is imported, so the
hot path pays a function call. On, spans go through a BatchSpanProcessor to the OTLP/HTTP exporter, which
reads the standard `OTEL_*` variables; context crosses processes in the W3C `traceparent` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

_NOOP = contextlib.nullcontext()
_tracer: Any = None
_propagator: Any = None
_EPOCH_OFFSET_NS = time.time_ns() - time.monotonic_ns()


def wanted(flag: bool) -> bool:
    """Tracing is on with `--otel` or when an OTLP endpoint is configured the standard way."""
    return flag or bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _tracer is not None


def setup(service_name: str, exporter: Any = None, endpoint: str | None = None) -> Any:
    """Install a tracer for this process; `exporter` defaults to OTLP over HTTP (to `endpoint` when given,
    else where the OTEL_* variables say). Returns the provider."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None and os.environ.get("OTEL_TRACES_EXPORTER") == "console":  # the standard variable
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        processor: Any = BatchSpanProcessor(ConsoleSpanExporter())
    elif exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        traces = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces))
    else:
        processor = SimpleSpanProcessor(exporter)
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    use(provider)
    return provider


def use(provider: Any) -> None:
    """Trace with this provider (None: tracing off). Tests pass one with an in-memory exporter."""
    global _tracer, _propagator
    if provider is None:
        _tracer = _propagator = None
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _tracer = provider.get_tracer("serving")
    _propagator = TraceContextTextMapPropagator()


def span(
    name: str, attributes: Mapping[str, Any] | None = None, client: bool = False
) -> contextlib.AbstractContextManager[Any]:
    """A child of the current span, current while the block runs; a no-op when tracing is off. `client`: a call
    to another service (kind CLIENT: service graphs pair it with that service's SERVER span)."""
    if _tracer is None:
        return _NOOP
    return _child(name, attributes, client)


@contextlib.contextmanager
def _child(name: str, attributes: Mapping[str, Any] | None, client: bool) -> Iterator[Any]:
    """The span records what escapes it, but is Error only for the server's own failure: a client's 4xx
    (bad JSON in `decode`) leaves it unset, as its request's server span, so the trace does not show as failed."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    assert _tracer is not None
    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    with _tracer.start_as_current_span(
        name, attributes=attributes, kind=kind, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except asyncio.CancelledError:  # the client went: nobody's failure
            raise
        except BaseException as exc:
            current.record_exception(exc)
            if not client and int(getattr(exc, "status_code", 500)) >= 500:
                current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


@contextlib.contextmanager
def server_span(
    name: str, headers: list[tuple[bytes, bytes]], attributes: Mapping[str, Any]
) -> Iterator[Any]:
    """The span of one incoming request, continuing the caller's trace from its `traceparent`."""
    carrier = {
        k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")
    }
    parent = _propagator.extract(carrier) if carrier else None
    from opentelemetry.trace import SpanKind

    # The status is the outcome's (set_http_status, set_rpc_status), never an exception's: grpc's abort raises
    # for a NOT_FOUND too, and OpenTelemetry's conventions leave a client's mistake unset on a server span.
    with _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=attributes, set_status_on_exception=False
    ) as current:
        yield current


def outgoing_headers() -> list[tuple[bytes, bytes]]:
    """`traceparent` (and `tracestate`) of the current span, for a call to the next hop; [] when off."""
    if _tracer is None:
        return []
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items()]


def record(
    name: str, start_monotonic: float, end_monotonic: float, attributes: Mapping[str, Any] | None = None
) -> None:
    """A finished child span from two `time.monotonic()` readings (e.g. time spent in the batch queue)."""
    if _tracer is None:
        return
    start = int(start_monotonic * 1e9) + _EPOCH_OFFSET_NS
    end = int(end_monotonic * 1e9) + _EPOCH_OFFSET_NS
    _tracer.start_span(name, start_time=start, attributes=attributes).end(end_time=end)


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (known only later, e.g. the revision the router chose)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)


def set_http_status(status: int, client: bool = False) -> None:
    """The current span's answer: `http.response.status_code`, and Error with `error.type` as OpenTelemetry's
    HTTP conventions say: on a server span for a 5xx (a 4xx is the client's, and stays unset), on a `client`
    span for a 4xx too (the call failed, whoever's fault it was)."""
    if _tracer is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    current = trace.get_current_span()
    current.set_attribute("http.response.status_code", status)
    if status >= (400 if client else 500):
        current.set_attribute("error.type", str(status))
        current.set_status(Status(StatusCode.ERROR))


# OpenTelemetry's RPC conventions: the gRPC codes a server span reports as its own failure
_SERVER_FAULTS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


def set_rpc_status(code: int, name: str, details: str | None = None) -> None:
    """The current gRPC server span's outcome: `rpc.grpc.status_code`, and Error (with `error.type` and the
    call's own details) for a code OpenTelemetry's gRPC conventions count as the server's fault."""
    if _tracer is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    current = trace.get_current_span()
    current.set_attribute("rpc.grpc.status_code", code)
    if name in _SERVER_FAULTS:
        current.set_attribute("error.type", name)
        current.set_status(Status(StatusCode.ERROR, details or None))


def trace_id() -> str:
    """The current trace id in hex, for log lines; '' when off."""
    if _tracer is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
