"""One revision -> the `serving serve` / `serving transform` command line and environment of each component.

Pure and shared: the local backend runs these argv as processes, the Kubernetes renderer puts the same argv into
its containers, so a revision runs the same command everywhere. Every spec field with a process-level effect
is translated here, once (the spec-effect tests check each one).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from serving.errors import BadRequest, ServingError
from serving.model_args import model_name, translate
from serving.observability.options import component_flags
from serving.revision import Revision
from serving.spec import DEFAULT_TIMEOUT_S, ComponentSpec, EnvVar, PredictorSpec, is_serving_transform
from serving.var_refs import expand

WITH_TRANSFORMER = (
    "--with-transformer"  # `serve ... --with-transformer "transform ARGS"` (one shell-quoted string)
)


class RevisionError(ServingError):
    status_code = 400


def predictor_args(revision: Revision, model_dir: Path | str, runtime_flags: Sequence[str] = ()) -> list[str]:
    """`serve ...` without host and port (each backend adds its own). Later flags win, so the order is the
    precedence: the selected ServingRuntime's flags (after the `--runtime` a modelFormat implies, which they
    may replace), then the InferenceService's own fields (`batcher`, `timeout`, `containerConcurrency`: a
    shared runtime's defaults never override what the service wrote), then the user's `model.args` (KServe's
    flags translated)."""
    check_local_predictor(revision.predictor)
    predictor, model = revision.predictor, revision.model
    args = ["serve", "--model-dir", str(model_dir), "--name", predictor_model_name(revision)]
    runtime = model.runtime if model is not None else None
    if runtime and ":" in runtime:
        args += ["--runtime", runtime]
    elif revision.model_format and not any(
        f == "--runtime" or f.startswith("--runtime=") for f in runtime_flags
    ):
        args += ["--runtime", revision.model_format]  # the selected runtime's own --runtime replaces it
    args += runtime_flags
    if predictor.batcher is not None:  # presence is meaning: `batcher: {}` batches with the defaults
        args += [
            "--max-batch-size",
            str(predictor.batcher.max_batch_size),
            "--max-latency-ms",
            str(predictor.batcher.max_latency),
        ]
    timeout = predictor.timeout if predictor.timeout is not None else DEFAULT_TIMEOUT_S
    args += ["--request-timeout", str(timeout)]
    if predictor.container_concurrency:  # KServe: 0 means unlimited
        args += ["--max-concurrency", str(predictor.container_concurrency)]
    args += _observability(revision, "predictor")
    if revision.in_process_transformer is not None:
        args += [WITH_TRANSFORMER, shlex.join(_our_transformer_argv(revision))]
    return args + translate(model.args if model is not None else ())


def predictor_model_name(revision: Revision) -> str:
    """The name the predictor serves its model under. The user's (`--model_name` in `model.args`) first; else,
    behind a transformer of its own process, the model that transformer calls (KServe's transformer calls
    `/v1/models/<its --model_name>:predict` on its predictor, so `--model_name mnist` there means a predictor
    serving `mnist`); else the InferenceService's name. spec.parse refuses the first two disagreeing."""
    model = revision.model
    named = model_name(model.expanded_args) if model is not None else None
    transformer = revision.transformer_process
    called = transformer.called_model if transformer is not None else None
    return named or called or revision.isvc


def check_local_predictor(predictor: PredictorSpec) -> None:
    """A custom predictor image is run by Kubernetes only: say so, and what works here instead."""
    container = predictor.custom_container
    if container is not None:
        raise RevisionError(
            f"spec.predictor.containers: a custom predictor container (image {container.image}) runs on "
            "Kubernetes only (`serving render -f FILE`, `serving apply --backend kubernetes -f FILE`): `serving "
            "up` starts processes, not images. On this machine, serve the model with spec.predictor.model "
            "(modelFormat + storageUri), or your own Python class with spec.predictor.model.runtime: "
            "module:Class (a serving.runtimes.base.Runtime; README: Custom runtime)"
        )


def transformer_args(revision: Revision, predictor_url: str) -> list[str]:
    """`transform ...` of our transformer, pointed at this revision's predictor."""
    check_local_transformer(revision)
    argv = _our_transformer_argv(revision) + ["--predictor-url", predictor_url]
    return argv + _observability(revision, "transformer")


def _our_transformer_argv(revision: Revision) -> list[str]:
    """`transform ...` as written, without a leading `serving`, naming the model after the service."""
    argv = transformer_argv(revision)
    argv = argv[1:] if argv[:1] == ["serving"] else argv
    if not any(a.startswith(("--model-name", "--model_name")) for a in argv):
        argv += ["--model-name", revision.isvc]
    if not any(a.startswith(("--predictor-timeout", "--predictor_request_timeout_seconds")) for a in argv):
        timeout = revision.predictor.timeout  # the predictor's own limit bounds the transformer's wait for it
        argv += ["--predictor-timeout", str(timeout if timeout is not None else DEFAULT_TIMEOUT_S)]
    batcher = revision.transformer.batcher if revision.transformer is not None else None
    if batcher is not None and not any(a.startswith("--max-batch-size") for a in argv):
        argv += [
            "--max-batch-size",
            str(batcher.max_batch_size),
            "--max-latency-ms",
            str(batcher.max_latency),
        ]
    concurrency = revision.transformer.container_concurrency if revision.transformer is not None else None
    if concurrency and not any(a.startswith("--max-concurrency") for a in argv):
        argv += ["--max-concurrency", str(concurrency)]  # KServe's hard limit of the transformer's container
    return argv


def _observability(revision: Revision, component: str) -> list[str]:
    """Who this process is (for logs, spans and payload events) and its spec `logger` block, if any.

    A transformer in the predictor's process answers the clients, so its `logger` block (if set) is the one
    that logs their payloads."""
    spec = revision.predictor if component == "predictor" else revision.transformer
    logger = getattr(spec, "logger", None)
    if component == "predictor" and revision.in_process_transformer is not None:
        logger = revision.in_process_transformer.logger or logger
    return component_flags(
        revision.isvc, revision.namespace, revision.name, component, logger, dict(revision.annotations)
    )


def check_local_transformer(revision: Revision) -> None:
    """Our `serving transform` runs anywhere; a custom transformer image runs on Kubernetes only."""
    if not is_our_transformer(revision):
        raise RevisionError(
            "spec.transformer.containers[0]: the local backend runs `serving transform ...` as the transformer; "
            'set args to ["serving", "transform", ...] (a custom image runs on the Kubernetes backend only)'
        )


def transformer_argv(revision: Revision) -> list[str]:
    """The transformer container's command + args as written."""
    assert revision.transformer is not None
    return revision.transformer.argv


def is_our_transformer(revision: Revision) -> bool:
    return is_serving_transform(transformer_argv(revision))


def component_env(component: ComponentSpec) -> tuple[EnvVar, ...]:
    """The environment a component's own process gets: its model's `env` (`model:` or a `sklearn:`-style
    shorthand), else its main container's (a custom predictor's kserve-container, a transformer's first). Other
    containers are sidecars: their `env` is theirs, as Kubernetes scopes it to the container declaring it."""
    if isinstance(component, PredictorSpec):
        main = component.custom_container
        if main is not None:
            return main.env
        return component.normalised_model().env
    return component.containers[0].env if component.containers else ()


def predictor_env(revision: Revision, runtime_env: tuple[EnvVar, ...] = ()) -> tuple[EnvVar, ...]:
    """The predictor process's environment: the selected ServingRuntime's container `env` (`runtime_env`), under
    the predictor's own `env`; a transformer run inside it brings its own (and wins a clash)."""
    inside = revision.in_process_transformer
    own = component_env(revision.predictor) + (component_env(inside) if inside is not None else ())
    return merge_env(runtime_env, own)


def merge_env(base: tuple[EnvVar, ...], over: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
    """Kubernetes' merge of two containers' `env` by name, as KServe merges a ServingRuntime's container with
    the predictor's: `over` wins a name both set; `base`'s other entries come first."""
    names = {e.name for e in over}
    return tuple(e for e in base if e.name not in names) + over


# (Secret name, key) -> its value, None when there is no such Secret or key: the Secrets `serving apply` kept
SecretLookup = Callable[[str, str], str | None]


class MissingSecretKey(BadRequest):
    """An env `valueFrom.secretKeyRef` that no applied Secret answers (Kubernetes: CreateContainerConfigError)."""


def local_env(env: tuple[EnvVar, ...], secret: SecretLookup | None = None) -> dict[str, str]:
    """For a local process: plain values, and `valueFrom.secretKeyRef` read from the Secrets applied with
    `serving apply -f` (`secret`; a missing one fails the replica unless the ref is `optional`, as the kubelet
    does). Other `valueFrom` sources (ConfigMaps, fieldRef) exist on Kubernetes only (warned at apply)."""
    out: dict[str, str] = {}
    for e in env:
        if e.value_from is None:
            out[e.name] = expand(e.value, out)  # `$(A)` from the variables before it, as the kubelet does
            continue
        ref = e.value_from.get("secretKeyRef")
        if secret is None or not isinstance(ref, dict):
            continue
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        value = secret(name, key)
        if value is not None:
            out[e.name] = value
        elif not ref.get("optional"):
            raise MissingSecretKey(
                f"env {e.name}: valueFrom.secretKeyRef: no key {key!r} in Secret {name!r}; apply the v1 Secret "
                "with `serving apply -f` (or mark the ref optional: true)"
            )
    return out
