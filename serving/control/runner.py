"""One revision on this machine: its predictor replicas and (if any) transformer replicas.

Turns the revision's normalised spec into `serving serve` / `serving transform` process arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from serving.control.processes import ProcessSpec, Replica, ReplicaState
from serving.errors import ServingError
from serving.revision import Revision

KSERVE_RUNTIMES = {"kserve-sklearnserver": "sklearn", "kserve-xgbserver": "xgboost", "kserve-mlserver": None}


class RevisionError(ServingError):
    status_code = 400


def predictor_args(revision: Revision, model_dir: Path) -> list[str]:
    model = revision.model
    args = ["serve", "--model-dir", str(model_dir), "--name", revision.isvc]
    runtime = model.get("runtime")
    if runtime and ":" in runtime:
        args += ["--runtime", runtime]
    elif revision.model_format:
        args += ["--runtime", revision.model_format]
    batcher = revision.batcher
    if batcher:
        args += ["--max-batch-size", str(batcher.get("maxBatchSize", 32)),
                 "--max-latency-ms", str(batcher.get("maxLatency", 500))]
    if "timeout" in revision.predictor:
        args += ["--request-timeout", str(revision.predictor["timeout"])]
    if revision.predictor.get("containerConcurrency"):
        args += ["--max-concurrency", str(revision.predictor["containerConcurrency"])]
    return args + list(model.get("args", ()))


def transformer_args(revision: Revision, predictor_url: str) -> list[str]:
    assert revision.transformer is not None
    container = revision.transformer["containers"][0]
    argv = list(container.get("command", ())) + list(container.get("args", ()))
    if argv[:1] == ["serving"]:
        argv = argv[1:]
    if argv[:1] != ["transform"]:
        raise RevisionError(
            "spec.transformer.containers[0]: the local backend runs `serving transform ...` as the transformer; "
            "set args to [\"serving\", \"transform\", ...] (a custom image runs on the Kubernetes backend only)"
        )
    argv += ["--predictor-url", predictor_url]
    if not any(a.startswith(("--model-name", "--model_name")) for a in argv):
        argv += ["--model-name", revision.isvc]
    return argv


def _env(component: dict) -> dict[str, str]:
    source = component.get("model", {}).get("env") or [
        e for c in component.get("containers", ()) for e in c.get("env", ())
    ]
    return {e["name"]: str(e.get("value", "")) for e in source if not e.get("valueFrom")}


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
        return ProcessSpec(args, _env(self.revision.predictor), model_name=self.revision.isvc)

    def _transformer_spec(self, index: int) -> ProcessSpec:
        predictor = self.predictors[index % len(self.predictors)]
        return ProcessSpec(transformer_args(self.revision, predictor.url), _env(self.revision.transformer or {}))

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
