"""`serving serve`: one model server process for a model directory."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from serving.observability import log_format
from serving.observability.options import from_args as observability_options
from serving.server import ServerConfig, run
from serving.settings import Limits, ModelSettings

LIMITS = Limits()  # every limit flag defaults to the one value in serving/settings.py
MODEL = ModelSettings(name="", model_dir=Path())  # and so does every per-model flag


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("serve", help="serve the model(s) in a directory over V1 and V2 REST")
    p.add_argument("--model-dir", required=True, help="a model folder, or a folder of model folders")
    p.add_argument("--name", help="model name (default: the directory's name)")
    p.add_argument("--runtime", help="sklearn, xgboost, onnx or module:Class (default: from the file name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve the Open Inference Protocol over gRPC on this port (0: a free one, logged)",
    )
    p.add_argument("--model-version", default=MODEL.version, help="version reported in V2 metadata")
    p.add_argument("--predict-proba", action="store_true", help="return probabilities by default")
    p.add_argument(
        "--intra-op-threads",
        type=int,
        default=MODEL.intra_op_threads,
        help="onnxruntime intra-op threads (0: its default)",
    )
    p.add_argument(
        "--native-threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads per process (numpy, sklearn, xgboost); 0: the libraries' default",
    )
    p.add_argument(
        "--no-pickle", action="store_true", help="refuse joblib/pickle artifacts (they run code on load)"
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=MODEL.max_batch_size,
        help="adaptive batching: rows per batch (0: off)",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        default=MODEL.max_latency_s * 1000,
        help="adaptive batching: longest wait for a batch",
    )
    p.add_argument(
        "--max-batches-in-flight",
        type=int,
        default=MODEL.max_batches_in_flight,
        help="adaptive batching: batches run at once",
    )
    p.add_argument(
        "--max-queue-size",
        type=int,
        default=MODEL.max_queue_size,
        help="adaptive batching: waiting requests; 503 above",
    )
    p.add_argument("--max-body-bytes", type=int, default=LIMITS.max_body_bytes, help="413 above this")
    p.add_argument(
        "--max-header-bytes",
        type=int,
        default=LIMITS.max_header_bytes,
        help="431 for a request line + headers above this",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_seconds,
        default=LIMITS.header_timeout_s,
        metavar="SECONDS",
        help="408 (or a silent close if nothing came) for a request line + headers not complete this long "
        "after the connection opened or the previous response",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_seconds,
        default=LIMITS.body_timeout_s,
        metavar="SECONDS",
        help="408 for a request body that goes this long without a byte",
    )
    p.add_argument(
        "--max-tensor-elements",
        type=int,
        default=LIMITS.max_tensor_elements,
        help="400 above this per tensor",
    )
    p.add_argument(
        "--max-json-depth", type=int, default=LIMITS.max_json_depth, help="400 for data nested deeper"
    )
    p.add_argument(
        "--request-timeout", type=float, default=LIMITS.request_timeout_s, help="seconds before a 504"
    )
    p.add_argument(
        "--max-queue-wait",
        type=float,
        default=LIMITS.max_queue_wait_s,
        help="seconds of expected queueing before an unbatched model sheds load with 503",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=LIMITS.max_queue,
        help="requests waiting for an unbatched model before 503",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=LIMITS.max_concurrency,
        help="per-model requests in the model at once (0: unlimited); the surplus waits for a slot within "
        "--request-timeout (10 per slot, then 503)",
    )
    p.add_argument(
        "--with-transformer",
        metavar='"transform ARGS"',
        help="also run this transformer in this process, in front of the model (no HTTP hop between them); "
        "the quoted `serving transform` flags without --predictor-url",
    )
    p.add_argument(
        "--log-level",
        choices=log_format.LEVELS,
        help=log_format.SERVER_LEVEL_HELP,
    )
    p.set_defaults(func=main)


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        model_dir=args.model_dir,
        name=args.name,
        host=args.host,
        port=args.port,
        workers=args.workers,
        native_threads=args.native_threads,
        log_level=args.log_level,
        observability=observability_options(args, "predictor").to_dict(),
        grpc_port=args.grpc_port,
        transformer=None if args.with_transformer is None else shlex.split(args.with_transformer),
        model={
            "runtime": args.runtime,
            "version": args.model_version,
            "predict_proba": args.predict_proba,
            "intra_op_threads": args.intra_op_threads,
            "allow_pickle": not args.no_pickle,
            "max_batch_size": args.max_batch_size,
            "max_latency_s": args.max_latency_ms / 1000.0,
            "max_batches_in_flight": args.max_batches_in_flight,
            "max_queue_size": args.max_queue_size,
        },
        limits={
            "max_body_bytes": args.max_body_bytes,
            "max_header_bytes": args.max_header_bytes,
            "header_timeout_s": args.header_timeout,
            "body_timeout_s": args.body_timeout,
            "max_tensor_elements": args.max_tensor_elements,
            "max_json_depth": args.max_json_depth,
            "request_timeout_s": args.request_timeout,
            "max_concurrency": args.max_concurrency,
            "max_queue_wait_s": args.max_queue_wait,
            "max_queue": args.max_queue,
        },
    )


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.grpc_port is not None:
        from serving.grpc.lifespan import check_port

        check_port(config.grpc_port, config.workers)  # in the workers it would fail again and again
    run(config)
    return 0
