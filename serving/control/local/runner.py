"""One revision on this machine: its predictor replicas and (if any) transformer replicas.

The command lines come from `process_args` (shared with the Kubernetes renderer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from serving.control.local.processes import Liveness, ProcessSpec, Replica, ReplicaState
from serving.control.process_args import (
    MissingSecretKey,
    SecretLookup,
    check_local_transformer,
    component_env,
    local_env,
    predictor_args,
    predictor_env,
    predictor_model_name,
    transformer_args,
)
from serving.errors import ServingError
from serving.revision import Revision
from serving.servingruntime import ServingRuntime, runtime_env
from serving.var_refs import expand_all


class ReplicaHandle(Protocol):
    """One replica as the runner sees it: `processes.Replica` (an OS process) or a test's in-process fake.

    `start` begins supervision and calls `on_change()` on every state change; `port` is 0 until the replica
    listens; `url` is its base URL once it does; `stop` drains nothing (the caller drained it) and ends it.
    """

    name: str
    spec: ProcessSpec
    state: ReplicaState
    error: str
    port: int

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int:
        """Its current process (0 when none): a restart is a new one, whose counters start from 0."""
        ...

    def start(self, on_change: Callable[[], None]) -> None: ...

    async def stop(self) -> None: ...


ReplicaFactory = Callable[[str, ProcessSpec, Path], ReplicaHandle]  # (name, what to run, log dir) -> replica


class RevisionRunner:
    """Keeps `replicas` processes of each component of a revision running on this machine.

    Transformer i calls predictor i (modulo); it starts once that predictor listens, and is replaced when the
    predictor comes back on another port after a restart.
    """

    def __init__(
        self,
        revision: Revision,
        model_dir: Path,
        log_dir: Path,
        on_change: Callable[[], None],
        predictor_flags: tuple[str, ...] = (),
        replica_factory: ReplicaFactory | None = None,
    ) -> None:
        self.revision = revision
        # `serving up`'s (--no-pickle, --grpc-port) and the selected ServingRuntime's flags; the user's
        # `model.args` come after them (and cannot undo --no-pickle or move a port: those are dropped)
        self.predictor_flags = predictor_flags
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.on_change = on_change
        self.make_replica: ReplicaFactory = replica_factory or Replica
        self.predictors: list[ReplicaHandle] = []
        self.transformers: list[ReplicaHandle] = []
        self.error = ""
        # which step set `error`, for the control plane's retries: "runtime" (no ServingRuntime serves it:
        # selected again when runtimes change), "storage" (the storageUri could not be fetched: retried with
        # backoff), "secret" (an env secretKeyRef no applied Secret answers: started again when one is applied),
        # "" (none of these: a spec the user must change)
        self.failed_step = ""
        self.secret: SecretLookup | None = None  # the applied Secrets of its namespace, for env secretKeyRefs
        self.fetching = False  # its model is still being downloaded: nothing starts until it is here
        self.runtime: ServingRuntime | None = None  # the ServingRuntime selected for it (None: no selection)

    def scale(self, replicas: int) -> list[ReplicaHandle]:
        """Start or remove replicas; returns the removed ones (the caller drains then stops them)."""
        if self.fetching:
            return []
        removed = self._scale(self.predictors, replicas, self._predictor_spec, "predictor")
        if self.revision.transformer_process is not None and not self.error:
            removed += self._repoint_transformers()
            removed += self._scale(self.transformers, replicas, self._transformer_spec, "transformer")
        return removed

    def _scale(
        self,
        replicas: list[ReplicaHandle],
        wanted: int,
        make: Callable[[int], ProcessSpec | None],
        component: str,
    ) -> list[ReplicaHandle]:
        while len(replicas) < wanted:
            index = len(replicas)
            try:
                spec = make(index)
            except ServingError as exc:
                self.error = exc.message
                if isinstance(exc, MissingSecretKey):
                    self.failed_step = "secret"
                self.on_change()
                return []
            if spec is None:  # its predictor does not listen yet: the next reconcile starts it
                break
            replica = self.make_replica(f"{self.revision.name}-{component}-{index}", spec, self.log_dir)
            replicas.append(replica)
            replica.start(self.on_change)
        removed = replicas[wanted:]
        del replicas[wanted:]
        return removed

    def _predictor_spec(self, index: int) -> ProcessSpec:
        name = predictor_model_name(self.revision)
        env = local_env(
            predictor_env(self.revision, runtime_env(self.runtime, self.revision.isvc)), self.secret
        )
        args = expand_all(predictor_args(self.revision, self.model_dir, self.predictor_flags), env)
        model = self.revision.model
        liveness = Liveness.of_probe(model.liveness_probe if model is not None else None)
        return ProcessSpec(args, env, model_name=name, liveness=liveness)

    def _predictor_url(self, index: int) -> str | None:
        if not self.predictors:
            return None
        predictor = self.predictors[index % len(self.predictors)]
        return predictor.url if predictor.port else None

    def _transformer_spec(self, index: int) -> ProcessSpec | None:
        assert self.revision.transformer is not None
        check_local_transformer(self.revision)  # a custom image fails now, not once a predictor listens
        url = self._predictor_url(index)
        if url is None:
            return None
        env = local_env(component_env(self.revision.transformer), self.secret)
        return ProcessSpec(
            expand_all(transformer_args(self.revision, url), env),  # `$(VAR)` as the kubelet expands it
            env,
            model_name=self.revision.transformer.model_name or self.revision.isvc,
            liveness=Liveness.of_probe(self.revision.transformer.containers[0].liveness_probe),
        )

    def _repoint_transformers(self) -> list[ReplicaHandle]:
        """Transformers whose predictor now listens elsewhere: removed here, started again by `_scale`."""
        for index, transformer in enumerate(self.transformers):
            url = self._predictor_url(index)
            if (
                url is not None
                and transformer.spec.args[transformer.spec.args.index("--predictor-url") + 1] != url
            ):
                stale = self.transformers[index:]
                del self.transformers[index:]
                return stale
        return []

    def ready(self) -> bool:
        return any(r.state is ReplicaState.READY for r in self.predictors) and (
            self.revision.transformer_process is None
            or any(r.state is ReplicaState.READY for r in self.transformers)
        )

    def failure(self) -> str | None:
        if self.error:
            return self.error
        for replicas in (self.predictors, self.transformers):
            if replicas and all(r.state is ReplicaState.FAILED for r in replicas):
                return replicas[0].error
        return None

    def endpoints(self) -> tuple[str, ...]:
        entry = self.transformers if self.revision.transformer_process is not None else self.predictors
        ready_predictors = any(r.state is ReplicaState.READY for r in self.predictors)
        if not ready_predictors:
            return ()
        return tuple(r.url for r in entry if r.state is ReplicaState.READY)

    def all_replicas(self) -> list[ReplicaHandle]:
        return self.transformers + self.predictors

    async def stop(self, replicas: list[ReplicaHandle] | None = None) -> None:
        targets = self.all_replicas() if replicas is None else replicas
        await asyncio.gather(*(r.stop() for r in targets))
