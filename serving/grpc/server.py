"""The model server's gRPC listener: a grpc.aio server on the same event loop and DataPlane as uvicorn.

It carries `inference.GRPCInferenceService`, the `grpc.health.v1` health service (SERVING once every
model is ready, for the empty name and the inference service) and server reflection, so grpcurl-style
tools can list and call it. Message size limit = `--max-body-bytes` (RESOURCE_EXHAUSTED above it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from serving.dataplane import DataPlane
from serving.grpc.messages import POOL, SERVICE
from serving.grpc.service import InferenceService
from serving.observability.grpc_calls import GrpcCalls
from serving.repository import Model

log = logging.getLogger("serving.grpc")
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _describe_in_pool(*files: Any) -> None:
    """Reflection answers from one pool: add health's and reflection's own files to ours."""
    for file in files:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        try:
            POOL.FindFileByName(proto.name)
        except KeyError:
            POOL.Add(proto)


# Request metadata is bounded as HTTP headers are (--max-header-bytes' default): grpc-core's own soft limit of
# 8 KiB refused metadata between 8 and 16 KiB at random (one roll of the dice per hop).
MAX_METADATA_BYTES = 64 * 1024


def server_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        (
            "grpc.so_reuseport",
            int(reuse_port),
        ),  # several workers on one fixed port share it; else refuse a taken one
    ]


@dataclass
class GrpcListener:
    """Build with the DataPlane, `start()` in the running loop, `stop()` on shutdown."""

    dataplane: DataPlane
    host: str = "127.0.0.1"
    port: int = 0
    reuse_port: bool = False
    bound_port: int = 0
    calls: GrpcCalls | None = None  # request ids and access lines of ModelInfer calls
    server: grpc.aio.Server | None = field(default=None, repr=False)
    _health: health.aio.HealthServicer | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    async def start(self) -> int:
        """Bind (port 0 picks a free one), start serving, log and return the port."""
        limits = self.dataplane.limits
        self.server = grpc.aio.server(options=server_options(limits.max_body_bytes, self.reuse_port))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, InferenceService(self.dataplane, calls=self.calls).handlers()
                ),
            )
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        _describe_in_pool(health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
        reflection.enable_server_reflection(
            [SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], self.server, pool=POOL
        )
        address = f"[{self.host}]" if ":" in self.host else self.host
        self.bound_port = self.server.add_insecure_port(f"{address}:{self.port}")
        await self.server.start()
        await self._publish_health()
        self.dataplane.repository.on_change.append(self._model_changed)
        log.info("gRPC (Open Inference Protocol) listening on %s:%d", self.host, self.bound_port)
        return self.bound_port

    async def stop(self, grace_s: float = 10.0) -> None:
        """Shutdown checklist: say NOT_SERVING, refuse new calls, let calls in flight finish within grace_s."""
        if self._model_changed in self.dataplane.repository.on_change:
            self.dataplane.repository.on_change.remove(self._model_changed)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace_s)

    def _model_changed(self, model: Model) -> None:
        """Repository callback (on the loop): health follows readiness."""
        task = asyncio.get_running_loop().create_task(self._publish_health())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_health(self) -> None:
        if self._health is None:
            return
        status = _SERVING if self.dataplane.repository.all_ready() else _NOT_SERVING
        for service in (health.OVERALL_HEALTH, SERVICE):
            await self._health.set(service, status)
