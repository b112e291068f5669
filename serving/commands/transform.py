"""`serving transform`: a transformer in front of one predictor, served over V1 and V2 like any model.

Also takes the arguments KServe gives a custom transformer container (`--model_name`, `--predictor_host`
as host:port, `--predictor_use_ssl`, `--protocol` / `--predictor_protocol`, `--predictor_request_timeout_seconds`,
`--http_port`), so `spec.transformer.containers[].args` work unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn, cast

from serving.errors import BadRequest
from serving.observability import log_format
from serving.observability.options import from_args as observability_options
from serving.settings import Limits, ModelSettings
from serving.transformers.base import TransformerConfig
from serving.transformers.in_process import InProcessPredictor
from serving.transformers.predictor_client import PROTOCOLS
from serving.transformers.server import TRANSFORMERS, create_app, run

# the batching flags' defaults are the model server's
MODEL_DEFAULTS = ModelSettings(name="", model_dir=Path())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "transform", help="serve a transformer (pre/post-processing) in front of a predictor"
    )
    p.add_argument("--predictor-url", help="the predictor's base URL, e.g. http://127.0.0.1:8081")
    p.add_argument("--predictor_host", help="KServe form: host:port of the predictor")
    p.add_argument(
        "--predictor_use_ssl", action="store_true", help="KServe form: https (refused: plain http only)"
    )
    p.add_argument(
        "--model-name",
        "--model_name",
        dest="model_name",
        required=True,
        help="the model name served here and called on the predictor",
    )
    p.add_argument("--predictor-model", help="model name on the predictor (default: --model-name)")
    p.add_argument(
        "--transformer",
        default="tabular",
        help=f"{', '.join(TRANSFORMERS)} or module:Class (a serving.transformers.base.Transformer)",
    )
    p.add_argument(
        "--protocol",
        "--predictor_protocol",
        dest="protocol",
        choices=(*PROTOCOLS, GRPC_V2),
        default="v1",
        help="protocol spoken to the predictor (KServe's grpc-v2: its V2 over REST, the same tensors and answers)",
    )
    p.add_argument(
        "--predictor-request-retries",
        "--predictor_request_retries",
        dest="predictor_retries",
        type=int,
        default=0,
        help="KServe's: times a predictor call that could not connect is tried again (default 0)",
    )
    p.add_argument(
        "--enable_predictor_health_check",
        "--enable-predictor-health-check",
        action="store_true",
        help="KServe's: readiness follows the predictor's model (always so here)",
    )
    p.add_argument("--feature-names", type=_names, default=(), help="comma-separated feature order (records)")
    p.add_argument(
        "--labels", type=_names, default=(), help="comma-separated class names, class 0 first (labels)"
    )
    p.add_argument(
        "--predictor-input-name", default="input-0", help="name of the tensor sent to a V2 predictor"
    )
    p.add_argument(
        "--predictor-timeout",
        "--predictor_request_timeout_seconds",
        dest="predictor_timeout",
        type=float,
        default=Limits().request_timeout_s,
        help="seconds before a 504",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for a custom transformer (self.config.params); repeatable",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=0,
        help="requests transformed at once (the rest wait their turn; 0 = no limit): KServe's containerConcurrency",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=0,
        help="adaptive batching of the requests before they are transformed: rows per batch (0: off); "
        "KServe's batcher in front of the transformer",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        default=MODEL_DEFAULTS.max_latency_s * 1000,
        help="adaptive batching: longest wait for a batch",
    )
    p.add_argument("--max-body-bytes", type=int, default=Limits().max_body_bytes, help="413 above this")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", "--http_port", dest="port", type=int, default=8080)
    p.add_argument(
        "--log-level",
        choices=log_format.LEVELS,
        help=log_format.SERVER_LEVEL_HELP,
    )
    p.set_defaults(func=main)


GRPC_V2 = "grpc-v2"  # KServe's gRPC transformer: our predictor serves V2 over REST as well, which is used


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def config_from_args(
    args: argparse.Namespace, in_process: InProcessPredictor | None = None
) -> TransformerConfig:
    if in_process is not None:
        url = in_process.url
    elif args.predictor_url:
        url = args.predictor_url
    elif args.predictor_host:
        url = args.predictor_host if "://" in args.predictor_host else f"http://{args.predictor_host}"
    else:
        raise BadRequest(
            "serving transform needs --predictor-url URL (or KServe's --predictor_host HOST:PORT)"
        )
    if in_process is None and (args.predictor_use_ssl or not url.startswith("http://")):
        raise BadRequest(
            f"predictor {url!r}: only plain http:// is supported (loopback or in-cluster, no TLS)"
        )
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"--param {item!r}: expected KEY=VALUE")
        params[key] = value
    return TransformerConfig(
        predictor_url=url,
        predictor_model=args.predictor_model or args.model_name,
        protocol="v2" if args.protocol == GRPC_V2 else args.protocol,
        timeout_s=args.predictor_timeout,
        retries=max(args.predictor_retries, 0),
        input_name=args.predictor_input_name,
        feature_names=args.feature_names,
        labels=args.labels,
        params=params,
        in_process=in_process,
    )


class _Refusing(argparse.ArgumentParser):
    """argparse that raises its complaint (a 400 / exit 2 with one line) instead of printing usage and exiting."""

    where = "--with-transformer"

    def error(self, message: str) -> NoReturn:
        raise BadRequest(f"{self.where}: {message}")


def _parse(argv: list[str], where: str) -> argparse.Namespace:
    refusing: type[_Refusing] = type("Refusing", (_Refusing,), {"where": where})  # complaints name `where`
    parser = refusing(prog="serving")
    # Its sub-parsers are of the same class, so `transform`'s own complaints are raised too.
    register(cast(Any, parser.add_subparsers(dest="command", required=True)))
    return parser.parse_args(argv)


def check_args(argv: list[str], where: str) -> None:
    """`transform ...` as a spec writes it, refused now (naming `where`) for what the process would refuse when
    it starts: an unknown flag, a bad value. The model name and predictor are the backend's to add."""
    named = any(a.startswith(("--model-name", "--model_name")) for a in argv)
    _parse(argv + ([] if named else ["--model-name", "checked"]), where)


def parse_in_process(argv: list[str]) -> argparse.Namespace:
    """`serve --with-transformer "transform ..."`: the same flags as `serving transform`, no predictor URL."""
    args = _parse(argv, "--with-transformer")
    if args.predictor_url or args.predictor_host:
        raise BadRequest(
            "--with-transformer: the predictor is this process; drop --predictor-url/--predictor_host"
        )
    return args


def limits_from_args(args: argparse.Namespace) -> Limits:
    # The data plane's own timeout sits above the predictor's, so a slow predictor is reported as such.
    return Limits(
        max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.predictor_timeout + 5.0,
        max_concurrency=max(args.max_concurrency, 0),
    )


def batching_from_args(args: argparse.Namespace) -> tuple[int, float]:
    return max(args.max_batch_size, 0), max(args.max_latency_ms, 0.0) / 1000


def main(args: argparse.Namespace) -> int:
    app = create_app(
        args.model_name,
        args.transformer,
        config_from_args(args),
        limits_from_args(args),
        observability_options(args, "transformer"),
        batching=batching_from_args(args),
    )
    run(app, args.host, args.port, log_format.apply_server_level(args.log_level))
    return 0
