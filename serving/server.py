"""Running the model server under uvicorn, with one or several worker processes.

Workers are separate processes that each build the app from `SERVING_SERVER_CONFIG` (JSON), so the
CLI parses argv once and the factory never reads argv.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from serving.dataplane import DataPlane
from serving.http.app import build_app
from serving.http.launcher import run_http_server
from serving.metrics import Metrics
from serving.observability import log_format
from serving.observability.hook import observe
from serving.observability.options import ObservabilityOptions
from serving.ready_banner import announce_when_ready
from serving.repository import ModelRepository, discover
from serving.settings import Limits, ModelSettings

CONFIG_ENV = "SERVING_SERVER_CONFIG"


@dataclass(slots=True)
class ServerConfig:
    model_dir: str
    name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    native_threads: int = 1  # BLAS/OpenMP threads per process; 0 = the libraries' default
    model: dict[str, Any] = field(default_factory=dict)  # ModelSettings fields shared by every model
    limits: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = None  # None: access lines on, uvicorn at warning (log_format.apply_server_level)
    grpc_port: int | None = None  # gRPC Open Inference Protocol beside HTTP (None: off, 0: a free port)
    observability: dict[str, Any] = field(default_factory=dict)  # ObservabilityOptions fields
    transformer: list[str] | None = None  # `transform ...` argv of a transformer run in this process

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServerConfig:
        return cls(**json.loads(os.environ[CONFIG_ENV]))


def limit_native_threads(threads: int) -> None:
    """BLAS/OpenMP thread pools sized for serving: one thread per call by default. Requests already run
    concurrently; spare BLAS threads spin-wait between small products (measured: 60 -> 17 ms of CPU per
    1M-element request) and steal cores from the event loop."""
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


def create_app(config: ServerConfig) -> ASGIApp:
    limit_native_threads(config.native_threads)
    root = Path(config.model_dir).resolve()
    template = ModelSettings(name="", model_dir=root, **config.model)
    models = discover(root, config.name, template)
    search_root = root if len(models) > 1 or models[0].model_dir != root else None
    limits = Limits(**config.limits)
    if config.transformer is None:
        repository = ModelRepository(models, search_root=search_root)
        dataplane = DataPlane(repository, limits, Metrics())
    else:
        dataplane = _with_transformer(models, config.transformer, limits)
    dataplane.repository.on_change.append(announce_when_ready(dataplane.repository, config.host, config.port))
    # The one observability hook: request ids, access log, spans, payload logger (metrics on this /metrics).
    app = observe(
        # A transformer's readiness follows its predictor for as long as it serves: nothing to wait for.
        build_app(dataplane, load_before_serving=config.workers > 1 and config.transformer is None),
        ObservabilityOptions(**config.observability),
        dataplane.metrics.registry,
    )
    if config.grpc_port is None:
        return app
    from serving.grpc.lifespan import with_grpc  # grpcio is imported only when gRPC is asked for

    return with_grpc(app, dataplane, config.host, config.grpc_port, config.workers)


def _with_transformer(models: list[ModelSettings], argv: list[str], limits: Limits) -> DataPlane:
    """The transformer's data plane, its predictor (the one model here, as `<name>-predictor`) in-process."""
    from serving.errors import ArtifactError
    from serving.transformers.in_process import PREDICTOR_SUFFIX, transformer_dataplane

    if len(models) != 1:
        raise ArtifactError(f"--with-transformer serves one model; the model directory holds {len(models)}")
    (model,) = models
    predictor = DataPlane(
        ModelRepository([replace(model, name=model.name + PREDICTOR_SUFFIX)]), limits, Metrics()
    )
    return transformer_dataplane(predictor, argv, limits, model.name)


def app_from_env() -> ASGIApp:
    """uvicorn factory for worker processes."""
    config = ServerConfig.from_env()
    log_format.configure(
        config.observability.get("log_format")
    )  # a fresh interpreter: the CLI's set-up is gone
    log_format.apply_server_level(config.log_level)
    return create_app(config)


def run(config: ServerConfig) -> None:
    limits = Limits(**config.limits)
    options: dict[str, Any] = dict(
        log_level=log_format.apply_server_level(config.log_level),
        max_header_bytes=limits.max_header_bytes,
        header_timeout_s=limits.header_timeout_s,
        body_timeout_s=limits.body_timeout_s,
    )
    if config.workers > 1:
        os.environ[CONFIG_ENV] = config.to_env()
        # Metrics of every worker in files of a fresh directory, merged on /metrics (never stale counts).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir = tempfile.mkdtemp(prefix="serving-metrics-")
        try:
            run_http_server(
                "serving.server:app_from_env",
                config.host,
                config.port,
                workers=config.workers,
                factory=True,
                **options,
            )
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    else:
        run_http_server(create_app(config), config.host, config.port, **options)
