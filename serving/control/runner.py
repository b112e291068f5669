"""One revision on this machine: its predictor replicas and (if any) transformer replicas.

The command lines come from `process_args` (shared with the Kubernetes renderer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from serving.control.process_args import local_env, predictor_args, transformer_args
from serving.control.processes import ProcessSpec, Replica, ReplicaState
from serving.errors import ServingError
from serving.revision import Revision


class RevisionRunner:
    """Keeps `replicas` processes of each component of a revision running on this machine."""

    def __init__(
        self, revision: Revision, model_dir: Path, log_dir: Path, on_change: Callable[[], None],
        predictor_flags: tuple[str, ...] = (),
    ) -> None:
        self.revision = revision
        self.predictor_flags = predictor_flags
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.on_change = on_change
        self.predictors: list[Replica] = []
        self.transformers: list[Replica] = []
        self.error = ""

    def scale(self, replicas: int) -> list[Replica]:
        """Start or remove replicas; returns the removed ones (the caller drains then stops them)."""
        removed: list[Replica] = []
        removed += self._scale(self.predictors, replicas, self._predictor_spec, "predictor")
        if self.revision.transformer is not None:
            removed += self._scale(self.transformers, replicas, self._transformer_spec, "transformer")
        return removed

    def _scale(self, replicas: list[Replica], wanted: int, make: Callable[[int], ProcessSpec], component: str) -> list[Replica]:
        while len(replicas) < wanted:
            index = len(replicas)
            try:
                spec = make(index)
            except ServingError as exc:
                self.error = exc.message
                self.on_change()
                return []
            replica = Replica(f"{self.revision.name}-{component}-{index}", spec, self.log_dir)
            replicas.append(replica)
            replica.start(self.on_change)
        removed = replicas[wanted:]
        del replicas[wanted:]
        return removed

    def _predictor_spec(self, index: int) -> ProcessSpec:
        args = predictor_args(self.revision, self.model_dir) + list(self.predictor_flags)
        return ProcessSpec(args, local_env(self.revision.predictor), model_name=self.revision.isvc)

    def _transformer_spec(self, index: int) -> ProcessSpec:
        predictor = self.predictors[index % len(self.predictors)]
        assert self.revision.transformer is not None
        return ProcessSpec(transformer_args(self.revision, predictor.url), local_env(self.revision.transformer))

    def ready(self) -> bool:
        return any(r.state is ReplicaState.READY for r in self.predictors) and (
            self.revision.transformer is None or any(r.state is ReplicaState.READY for r in self.transformers)
        )

    def failure(self) -> str | None:
        if self.error:
            return self.error
        for replicas in (self.predictors, self.transformers):
            if replicas and all(r.state is ReplicaState.FAILED for r in replicas):
                return replicas[0].error
        return None

    def endpoints(self) -> tuple[str, ...]:
        entry = self.transformers if self.revision.transformer is not None else self.predictors
        ready_predictors = any(r.state is ReplicaState.READY for r in self.predictors)
        if not ready_predictors:
            return ()
        return tuple(r.url for r in entry if r.state is ReplicaState.READY)

    def all_replicas(self) -> list[Replica]:
        return self.transformers + self.predictors

    async def stop(self, replicas: list[Replica] | None = None) -> None:
        targets = self.all_replicas() if replicas is None else replicas
        await asyncio.gather(*(r.stop() for r in targets))
