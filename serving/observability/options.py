"""The observability flags, in one place for every command, and how they reach child processes.

`serving up` passes its choices to the processes it starts through the environment (`SERVING_LOG_FORMAT`,
`SERVING_ACCESS_LOG_SAMPLE`, `SERVING_OTEL`, `SERVING_LOGGER_DEFAULT_URL`); a component's own identity and
its spec's `logger` block come as flags from the revision's argv builder (`component_flags`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

ENV_LOG_FORMAT = "SERVING_LOG_FORMAT"
ENV_ACCESS_LOG_SAMPLE = "SERVING_ACCESS_LOG_SAMPLE"
ENV_OTEL = "SERVING_OTEL"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_LOGGER_DEFAULT_URL = (
    "SERVING_LOGGER_DEFAULT_URL"  # KServe's `logger.defaultUrl`: for blocks without a url
)


@dataclass(frozen=True, slots=True)
class ObservabilityOptions:
    log_format: str | None = None  # json | text; None: text on a terminal, JSON otherwise
    access_log_sample: float = 1.0  # share of 2xx requests logged; errors always are
    otel: bool = False
    otel_endpoint: str | None = None  # OTLP/HTTP collector; default: the OTEL_* environment variables
    logger_url: str | None = None
    logger_mode: str | None = None  # all | request | response; set alone, the default URL is used
    logger_metadata_headers: tuple[str, ...] = ()  # request headers copied into events' `metadata`
    logger_annotations: str = (
        ""  # JSON of the InferenceService annotations `logger.metadataAnnotations` names
    )
    isvc: str = ""
    namespace: str = "default"
    revision: str = ""
    component: str = ""

    def payload_logger_url(self) -> str | None:
        """Where this process sends payload events, or None: an explicit URL, else the default for a block."""
        if self.logger_url:
            return self.logger_url
        return os.environ.get(ENV_LOGGER_DEFAULT_URL) or None if self.logger_mode else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SERVER_COMMANDS = ("serve", "transform", "router", "up")  # processes that answer requests
COMPONENT_COMMANDS = ("serve", "transform")  # processes a revision is made of


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """`--log-format` for every command; tracing, access log and payload logger flags for the servers."""
    group = parser.add_argument_group("observability")
    group.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=os.environ.get(ENV_LOG_FORMAT),
        help="log lines as JSON or text (default: text on a terminal, JSON otherwise)",
    )
    if command not in SERVER_COMMANDS:
        return
    group.add_argument(
        "--access-log-sample",
        type=_fraction,
        default=float(os.environ.get(ENV_ACCESS_LOG_SAMPLE, "1")),
        help="share of successful requests given an access log line, 0-1 (errors: always)",
    )
    group.add_argument(
        "--otel",
        action="store_true",
        default=bool(os.environ.get(ENV_OTEL)),
        help="OpenTelemetry tracing over OTLP (also on when OTEL_EXPORTER_OTLP_ENDPOINT is set)",
    )
    group.add_argument(
        "--otel-endpoint",
        help="OTLP/HTTP collector base URL, e.g. http://collector:4318 "
        "(implies --otel; default: OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    group.add_argument(
        "--logger-url",
        help="payload logger sink: http(s)://receiver (CloudEvents) or "
        "file:///path.jsonl; for `serving up`, the default of every spec `logger` block",
    )
    group.add_argument(
        "--logger-mode",
        choices=("all", "request", "response"),
        help="what the payload logger sends (default all)",
    )
    group.add_argument(
        "--logger-metadata-headers",
        type=_header_names,
        default=(),
        metavar="NAME,NAME",
        help="request headers copied into each payload event's `metadata` extension (KServe's "
        "logger.metadataHeaders)",
    )
    if command not in COMPONENT_COMMANDS:
        return
    group.add_argument(
        "--logger-annotations",
        type=_json_object,
        default="",
        metavar="JSON",
        help="each payload event's `annotations` extension: the InferenceService annotations KServe's "
        "logger.metadataAnnotations names, as a JSON object (set by serving up and the operator)",
    )
    group.add_argument(
        "--isvc", default="", help="InferenceService name in logs, events and spans (set by serving up)"
    )
    group.add_argument("--isvc-namespace", default="default", help="its namespace")
    group.add_argument("--revision", default="", help="revision name (the ce-endpoint of payload events)")
    group.add_argument("--component", default="", help="predictor or transformer")


def _header_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _json_object(text: str) -> str:
    """A JSON object of strings, kept as its compact text (what the events carry); "" for none."""
    if not text.strip():
        return ""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise argparse.ArgumentTypeError('a JSON object of strings, e.g. {"team": "ml"}')
    return json.dumps(value, separators=(",", ":"), sort_keys=True) if value else ""


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def from_args(args: argparse.Namespace, component: str) -> ObservabilityOptions:
    return ObservabilityOptions(
        log_format=args.log_format,
        access_log_sample=args.access_log_sample,
        otel=args.otel,
        otel_endpoint=args.otel_endpoint,
        logger_url=args.logger_url,
        logger_mode=args.logger_mode,
        logger_metadata_headers=args.logger_metadata_headers,
        logger_annotations=getattr(args, "logger_annotations", ""),
        isvc=getattr(args, "isvc", ""),
        namespace=getattr(args, "isvc_namespace", "default"),
        revision=getattr(args, "revision", ""),
        component=getattr(args, "component", "") or component,
    )


def export_to_children(options: ObservabilityOptions) -> Callable[[], None]:
    """`serving up`: the processes it starts inherit these choices through the environment. Returns the
    function that puts the environment back (called at shutdown, for a `serving up` run inside a test)."""
    wanted = {ENV_ACCESS_LOG_SAMPLE: repr(options.access_log_sample)}
    if options.log_format:
        wanted[ENV_LOG_FORMAT] = options.log_format
    if options.otel or options.otel_endpoint:
        wanted[ENV_OTEL] = "1"
    if options.otel_endpoint:  # the standard variable: every child's exporter sends where this one does
        wanted[OTLP_ENDPOINT_ENV] = options.otel_endpoint
    if options.logger_url:
        wanted[ENV_LOGGER_DEFAULT_URL] = options.logger_url
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    return restore


def component_flags(
    isvc: str,
    namespace: str,
    revision: str,
    component: str,
    logger: Any,
    annotations: Mapping[str, str] | None = None,
) -> list[str]:
    """Flags naming a revision's component process and its spec `logger` block (None: no payload logging),
    plus the choices of the process building the argv (`serving up`, or the operator from the chart's values),
    so a model server started locally or rendered into a pod logs, samples and traces alike. `annotations`:
    the InferenceService's, of which `logger.metadataAnnotations` picks those its events carry."""
    flags = ["--isvc", isvc, "--isvc-namespace", namespace, "--revision", revision, "--component", component]
    env = os.environ
    if env.get(ENV_LOG_FORMAT):
        flags += ["--log-format", env[ENV_LOG_FORMAT]]
    if env.get(ENV_ACCESS_LOG_SAMPLE):
        flags += ["--access-log-sample", env[ENV_ACCESS_LOG_SAMPLE]]
    if env.get(ENV_OTEL):
        flags.append("--otel")
        if env.get(OTLP_ENDPOINT_ENV):  # a pod does not inherit the operator's environment
            flags += ["--otel-endpoint", env[OTLP_ENDPOINT_ENV]]
    if logger is not None:
        flags += ["--logger-mode", logger.mode]
        url = logger.url or env.get(ENV_LOGGER_DEFAULT_URL)
        if url:
            flags += ["--logger-url", url]
        if logger.metadata_headers:
            flags += ["--logger-metadata-headers", ",".join(logger.metadata_headers)]
        picked = {k: annotations[k] for k in logger.metadata_annotations if annotations and k in annotations}
        if picked:
            flags += ["--logger-annotations", json.dumps(picked, separators=(",", ":"), sort_keys=True)]
    return flags
