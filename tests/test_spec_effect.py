"""Every accepted InferenceService field takes effect, or says that it does not (issue 18).

Table-driven over serving/spec_effects.py: for each field path, a case applies it (non-default value; for
blocks also empty and at their defaults) and observes the effect where it can be seen without running
anything — the argv/env the local backend starts its processes with (`process_args`, what `RevisionRunner`
runs), the route the router gets (`routes_for`), the objects `serving render` prints — and the apply-time
warning for fields without a local effect. Three effects only show at run time and are checked on a real
server started in-process with the built argv: batching (batch metrics > 0 under concurrent requests),
`timeout` (504) and `containerConcurrency` (the surplus queued).
"""

from __future__ import annotations

import asyncio
import copy
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
from pydantic import BaseModel

from serving.commands.render import render
from serving.control.kubernetes.render import RenderSettings
from serving.control.local.processes import Liveness
from serving.control.local.rollout_api import set_canary_percent
from serving.control.process_args import (
    RevisionError,
    component_env,
    local_env,
    predictor_args,
    predictor_env,
    transformer_args,
)
from serving.control.reconcile import Observed, plan
from serving.control.routes import routes_for
from serving.control.runtime_catalog import RuntimeCatalog
from serving.revision import Revision
from serving.router.table import ServiceRoute
from serving.runtimes.base import ModelMetadata, Runtime
from serving.servingruntime import SelectionError
from serving.spec import (
    KUBERNETES_CONTAINER_ONLY,
    KUBERNETES_ONLY,
    InferenceService,
    PredictorSpec,
    SpecError,
    TransformerSpec,
    parse,
)
from serving.spec_effects import EFFECTS_BY_PATH, FIELD_EFFECTS, values_at
from serving.types import TensorDict
from tests.inprocess import serving_inprocess

SETTINGS = RenderSettings(image="registry.example/serving:test")
MODEL = {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://store/iris"}
TRANSFORM = {
    "containers": [{"name": "kserve-container", "args": ["serving", "transform", "--transformer", "tabular"]}]
}
SLEEP_S = 1.5


class Sleepy(Runtime):
    """Answers its input after SLEEP_S: long enough to pass a 1 s timeout, or to hold a concurrency slot."""

    platform = "sleepy"

    def load(self) -> None:
        pass

    def predict(
        self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict[str, Any]
    ) -> TensorDict:
        time.sleep(SLEEP_S)
        return dict(inputs)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)


@dataclass
class Effects:
    """Everything a spec turns into, without running it."""

    isvc: InferenceService
    revision: Revision
    argv: list[str]  # the local predictor process
    env: dict[str, str]
    transformer_argv: list[str] | None
    transformer_env: dict[str, str] | None
    objects: dict[str, dict[str, Any]]  # "Kind/component" -> rendered object
    route: ServiceRoute
    warnings: list[str]

    def container(self, component: str = "predictor") -> dict[str, Any]:
        return self.pod(component)["spec"]["containers"][0]

    def pod(self, component: str = "predictor") -> dict[str, Any]:
        return self.objects[f"Deployment/{component}"]["spec"]["template"]

    def warned(self, path: str) -> bool:
        return any(w.startswith(f"spec.{path}:") for w in self.warnings)


def _applied_secret(name: str, key: str) -> str | None:
    """The Secrets `serving apply -f` kept (here one, `s`), as the local control plane looks a key up."""
    return {"s": {"k": "from-secret"}}.get(name, {}).get(key)


def effects(predictor: dict[str, Any], transformer: dict[str, Any] | None = None, **metadata: Any) -> Effects:
    doc: dict[str, Any] = {
        "apiVersion": "serving.dev/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ml", **metadata},
        "spec": {"predictor": predictor} | ({"transformer": transformer} if transformer else {}),
    }
    isvc = parse(copy.deepcopy(doc))
    revision = Revision.from_spec(isvc)
    t_argv = t_env = None
    if revision.transformer is not None:
        t_env = local_env(component_env(revision.transformer), _applied_secret)
        try:
            t_argv = transformer_args(revision, "http://127.0.0.1:1")
        except RevisionError:
            t_argv = None
    rendered = render([copy.deepcopy(doc)], SETTINGS)[1:]
    objects = {f"{o['kind']}/{o['metadata']['labels']['serving.dev/component']}": o for o in rendered}
    ready = plan(isvc, None, Observed(frozenset({revision.name})))
    route = routes_for(isvc, ready, lambda name: ("http://x",), "example.com")
    # `serving up` refuses a custom predictor container (see _containers_predictor): no local argv
    custom = revision.predictor.custom_container is not None
    return Effects(
        isvc,
        revision,
        [] if custom else predictor_args(revision, "/models/iris"),
        local_env(predictor_env(revision), _applied_secret),
        t_argv,
        t_env,
        objects,
        route,
        isvc.warnings(),
    )


def flag(argv: list[str] | None, name: str) -> str | None:
    assert argv is not None
    return argv[argv.index(name) + 1] if name in argv else None


def model(**fields: Any) -> dict[str, Any]:
    return {"model": {**MODEL, **fields}}


def base() -> Effects:
    return effects(model())


def hpa(e: Effects, component: str = "predictor") -> dict[str, Any]:
    return e.objects[f"HorizontalPodAutoscaler/{component}"]["spec"]


def only_warned(path: str, make: Callable[[], Effects]) -> Callable[[], None]:
    """A field without a local effect: warned, and the local processes start exactly as without it."""

    def check() -> None:
        e, plain = make(), effects(model(), TRANSFORM if path.startswith("transformer") else None)
        assert e.warned(path), e.warnings
        assert unnamed(e.argv) == unnamed(plain.argv) and unnamed(e.transformer_argv) == unnamed(
            plain.transformer_argv
        )

    return check


def unnamed(argv: list[str] | None) -> list[str] | None:
    """The argv without the revision's name (a changed field makes another revision, named by its digest)."""
    if argv is None or "--revision" not in argv:
        return argv
    i = argv.index("--revision")
    return argv[:i] + argv[i + 2 :]


# -- one check per field ---------------------------------------------------------------------------------------
def _name() -> None:
    e = effects(model(), name="wine")
    assert flag(e.argv, "--name") == "wine" and e.revision.name.startswith("wine-")
    assert e.route.host == "wine.ml.example.com" and e.objects["Deployment/predictor"]["metadata"][
        "name"
    ].startswith("wine-")


def _namespace() -> None:
    e = effects(model(), namespace="team")
    assert e.route.namespace == "team" and all(
        o["metadata"]["namespace"] == "team" for o in e.objects.values()
    )


def _min_replicas() -> None:
    e = effects({"minReplicas": 3, **model()})
    assert list(plan(e.isvc, None, Observed()).run.values()) == [3]
    assert e.objects["Deployment/predictor"]["spec"]["replicas"] == 3 and not e.warnings
    zero = effects(
        {"minReplicas": 0, **model()}
    )  # starts at initial-scale 1, then the autoscaler may go to 0
    assert list(plan(zero.isvc, None, Observed()).run.values()) == [1] and not zero.warnings
    assert zero.route.activator  # the router holds requests while it scales from zero


def _max_replicas() -> None:
    e = effects({"minReplicas": 1, "maxReplicas": 5, **model()})
    assert hpa(e)["maxReplicas"] == 5 and not e.warnings
    assert list(plan(e.isvc, None, Observed()).run.values()) == [1]


def _scale_metric() -> None:
    e = effects({"maxReplicas": 3, "scaleMetric": "memory", **model()})
    assert hpa(e)["metrics"][0]["resource"]["name"] == "memory" and not e.warnings


def _scale_target() -> None:
    e = effects({"maxReplicas": 3, "scaleTarget": 55, **model()})
    assert hpa(e)["metrics"][0]["resource"]["target"]["averageUtilization"] == 55 and not e.warnings


def _scale_metric_type() -> None:
    e = effects({"maxReplicas": 3, "scaleMetric": "memory", "scaleMetricType": "Utilization", **model()})
    assert hpa(e)["metrics"][0]["resource"]["target"]["type"] == "Utilization" and not e.warnings
    with pytest.raises(SpecError, match="scaleMetricType: 'AverageValue' is not supported for memory"):
        effects({"maxReplicas": 3, "scaleMetric": "memory", "scaleMetricType": "AverageValue", **model()})


MEMORY_60 = {
    "metrics": [
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 60}},
        }
    ]
}


def _auto_scaling() -> None:
    e = effects({"maxReplicas": 3, "autoScaling": MEMORY_60, **model()})
    resource = hpa(e)["metrics"][0]["resource"]
    assert resource["name"] == "memory" and resource["target"]["averageUtilization"] == 60 and not e.warnings


def _canary() -> None:
    v1 = parse(
        {
            "apiVersion": "serving.dev/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris"},
            "spec": {"predictor": model()},
        }
    )
    v2 = parse(
        {
            "apiVersion": "serving.dev/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris"},
            "spec": {"predictor": {"canaryTrafficPercent": 30, **model(storageUri="pvc://store/v2")}},
        }
    )
    r1, r2 = Revision.from_spec(v1).name, Revision.from_spec(v2).name
    first = plan(v1, None, Observed(frozenset({r1})))
    split = plan(v2, first.state, Observed(frozenset({r1, r2})))
    arms = routes_for(
        v2, split, lambda name: ("u",), "d"
    ).arms  # the same function feeds both backends' tables
    assert [(a.revision, a.percent) for a in arms] == [(r1, 70), (r2, 30)]
    assert Revision.from_spec(v2).name == Revision.from_spec(parse({**v2.model_dump(by_alias=True)})).name


def _concurrency() -> None:
    e = effects({"containerConcurrency": 4, **model()})
    assert (
        flag(e.argv, "--max-concurrency") == "4" and flag(e.container()["args"], "--max-concurrency") == "4"
    )
    assert (
        "--max-concurrency" not in effects({"containerConcurrency": 0, **model()}).argv
    )  # KServe: unlimited


def _timeout() -> None:
    e = effects({"timeout": 7, **model()})
    assert (
        flag(e.argv, "--request-timeout") == "7" and flag(e.container()["args"], "--request-timeout") == "7"
    )
    assert e.route.timeout_s == 7.0
    plain = base()  # no `timeout`: Knative's default, as a KServe InferenceService gets it
    assert flag(plain.argv, "--request-timeout") == "300" and plain.route.timeout_s == 300.0
    # a transformer in front waits for its predictor as long as the predictor's own limit (not its default)
    fronted = effects({"timeout": 90, **model()}, TRANSFORM)
    assert (
        fronted.transformer_argv is not None and flag(fronted.transformer_argv, "--predictor-timeout") == "90"
    )
    transformer = fronted.pod("transformer")["spec"]["containers"][0]
    assert flag(transformer["args"], "--predictor-timeout") == "90"
    assert flag(effects(model(), TRANSFORM).transformer_argv or [], "--predictor-timeout") == "300"


def _transformer_canary() -> None:
    """KServe splits the component that has a new revision: a transformer-only change by the transformer's
    percent, a predictor change by the predictor's (the pair is one revision here)."""

    def isvc(predictor: dict[str, Any], transformer: dict[str, Any]) -> InferenceService:
        spec = {"predictor": predictor, "transformer": transformer}
        return parse(
            {
                "apiVersion": "serving.dev/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "t"},
                "spec": spec,
            }
        )

    def split(v2: InferenceService) -> list[tuple[str, int]]:
        v1 = isvc(model(), TRANSFORM)
        r1, r2 = Revision.from_spec(v1).name, Revision.from_spec(v2).name
        first = plan(v1, None, Observed(frozenset({r1})))
        arms = routes_for(
            v2, plan(v2, first.state, Observed(frozenset({r1, r2}))), lambda n: ("u",), "d"
        ).arms
        return sorted((("v1" if a.revision == r1 else "v2"), a.percent) for a in arms)

    labelled = [*TRANSFORM["containers"][0]["args"], "--labels", "a,b,c"]
    other_args = {"containers": [{**TRANSFORM["containers"][0], "args": labelled}]}
    assert split(
        isvc({**model(), "canaryTrafficPercent": 50}, {**other_args, "canaryTrafficPercent": 20})
    ) == [
        ("v1", 80),
        ("v2", 20),
    ], "only the transformer changed: its own percent"
    new_model = {**model(storageUri="pvc://store/v2"), "canaryTrafficPercent": 50}
    assert split(isvc(new_model, {**TRANSFORM, "canaryTrafficPercent": 20})) == [("v1", 50), ("v2", 50)]
    assert split(isvc(model(), {**other_args, "canaryTrafficPercent": 20})) == [("v1", 80), ("v2", 20)]
    assert split(isvc(model(storageUri="pvc://store/v2"), {**TRANSFORM, "canaryTrafficPercent": 20})) == [
        ("v2", 100)
    ], "the predictor changed, without a percent of its own: all at once, as KServe's predictor"
    assert not effects(model(), {"canaryTrafficPercent": 10, **TRANSFORM}).warned(
        "transformer.canaryTrafficPercent"
    )
    # `serving rollout rollback` / `promote` write every component's percent, so a transformer canary obeys them
    predictor, transformer = (
        {**model(), "canaryTrafficPercent": 50},
        {**other_args, "canaryTrafficPercent": 20},
    )
    doc = {"spec": {"predictor": predictor, "transformer": transformer}}
    set_canary_percent(doc, 0)
    assert split(isvc(predictor, transformer)) == [("v1", 100), ("v2", 0)]
    set_canary_percent(doc, None)
    assert split(isvc(predictor, transformer)) == [("v2", 100)]


def _transformer_concurrency() -> None:
    e = effects(model(), {"containerConcurrency": 2, **TRANSFORM})
    assert flag(e.transformer_argv, "--max-concurrency") == "2"
    assert flag(e.container("transformer")["args"], "--max-concurrency") == "2"
    assert not e.warned("transformer.containerConcurrency")
    assert "--max-concurrency" not in (effects(model(), TRANSFORM).transformer_argv or [])


def _transformer_timeout() -> None:
    """KServe: the transformer answers the client, so its timeout bounds the request; the predictor's bounds
    the transformer's wait for it."""
    e = effects({"timeout": 90, **model()}, {"timeout": 5, **TRANSFORM})
    assert e.route.timeout_s == 5.0 and flag(e.transformer_argv, "--predictor-timeout") == "90"
    assert not e.warned("transformer.timeout")
    assert effects({"timeout": 90, **model()}, TRANSFORM).route.timeout_s == 300.0, "unset: Knative's default"


def _deployment_strategy(component: str) -> Callable[[], None]:
    """KServe's example (counts written as strings) and Recreate: the component's Deployment gets it as written,
    valid for Kubernetes; warned locally; without it ours; a Recreate with a rollingUpdate is refused."""

    def case() -> None:
        kserve = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "0", "maxSurge": "25%"}}
        for given, rendered in (
            (kserve, {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}),
            ({"type": "Recreate"}, {"type": "Recreate"}),
        ):
            block = {"deploymentStrategy": given}
            e = (
                effects({**block, **model()})
                if component == "predictor"
                else effects(model(), {**block, **TRANSFORM})
            )
            deployment = e.objects[f"Deployment/{component}"]
            assert deployment["spec"]["strategy"] == rendered and e.warned(f"{component}.deploymentStrategy")
            kubernetes_validate.validate(deployment, "1.29", strict=True)
        ours = base().objects["Deployment/predictor"]["spec"]["strategy"]
        assert ours == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        for bad in (
            {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
            {"rollingUpdate": {"maxSurge": "x"}},
        ):
            with pytest.raises(SpecError, match="deploymentStrategy"):
                effects({"deploymentStrategy": bad, **model()})

    return case


def _batcher() -> None:
    for block, expected in (
        ({"maxBatchSize": 8, "maxLatency": 20}, ("8", "20")),
        ({}, ("32", "500")),
        ({"maxBatchSize": 32, "maxLatency": 500}, ("32", "500")),
    ):
        e = effects({"batcher": block, **model()})
        for argv in (e.argv, e.container()["args"]):
            assert (flag(argv, "--max-batch-size"), flag(argv, "--max-latency-ms")) == expected, block
    assert "--max-batch-size" not in base().argv and "--max-batch-size" not in base().container()["args"]


def _batch_size() -> None:
    e = effects({"batcher": {"maxBatchSize": 4}, **model()})
    assert flag(e.argv, "--max-batch-size") == "4" == flag(e.container()["args"], "--max-batch-size")


def _max_latency() -> None:
    e = effects({"batcher": {"maxLatency": 9}, **model()})
    assert flag(e.argv, "--max-latency-ms") == "9" == flag(e.container()["args"], "--max-latency-ms")


def _transformer_batcher() -> None:
    e = effects(model(), {"batcher": {"maxBatchSize": 8, "maxLatency": 20}, **TRANSFORM})
    for argv in (e.transformer_argv, e.container("transformer")["args"]):
        assert (flag(argv, "--max-batch-size"), flag(argv, "--max-latency-ms")) == ("8", "20")
    assert "--max-batch-size" not in e.argv, "the predictor does not batch unless its own batcher says so"
    assert not e.warned("transformer.batcher")
    timed = effects(model(), {"batcher": {"timeout": 3}, **TRANSFORM})
    assert flag(timed.transformer_argv, "--max-batch-size") == "32" and timed.warned("transformer.batcher")


def _batcher_timeout() -> None:
    e = effects({"batcher": {"timeout": 3}, **model()})
    assert e.warned("predictor.batcher.timeout") and unnamed(e.argv) == unnamed(
        effects({"batcher": {}, **model()}).argv
    )


def _logger(component: str) -> Callable[[], None]:
    def check() -> None:
        block = {"logger": {"mode": "request", "url": "http://sink.example/"}}
        e = (
            effects({**block, **model()}, {**TRANSFORM, **block})
            if component == "transformer"
            else effects({**block, **model()})
        )
        argv = e.transformer_argv if component == "transformer" else e.argv
        assert (
            flag(argv, "--logger-mode") == "request" and flag(argv, "--logger-url") == "http://sink.example/"
        )
        assert flag(e.container(component)["args"], "--logger-mode") == "request"
        assert "--logger-mode" not in base().argv

    return check


def _logger_mode() -> None:
    assert (
        flag(effects({"logger": {"mode": "response", "url": "http://s/"}, **model()}).argv, "--logger-mode")
        == "response"
    )


def _logger_url() -> None:
    assert (
        flag(effects({"logger": {"url": "http://other/"}, **model()}).argv, "--logger-url") == "http://other/"
    )


def _logger_metadata_headers() -> None:
    e = effects({"logger": {"url": "http://s/", "metadataHeaders": ["x-user", "X-B3-TraceId"]}, **model()})
    assert flag(e.argv, "--logger-metadata-headers") == "x-user,X-B3-TraceId"
    assert flag(e.container("predictor")["args"], "--logger-metadata-headers") == "x-user,X-B3-TraceId"


def _logger_metadata_annotations() -> None:
    logger = {"logger": {"url": "http://s/", "metadataAnnotations": ["team", "example.com/cost", "absent"]}}
    annotations = {"team": "ml", "example.com/cost": "42", "other": "x"}
    e = effects({**logger, **model()}, annotations=annotations)
    expected = '{"example.com/cost":"42","team":"ml"}'  # only those named, and that the service has
    assert flag(e.argv, "--logger-annotations") == expected
    assert flag(e.container("predictor")["args"], "--logger-annotations") == expected
    assert "--logger-annotations" not in effects({**logger, **model()}).argv  # none of them set: no flag
    (said,) = [w for w in e.warnings if w.startswith("metadata.annotations:")]  # the others: no local effect
    assert "other" in said and "team" not in said and "example.com/cost" not in said, said
    other = effects({**logger, **model()}, annotations={**annotations, "team": "search"})
    assert other.revision.name != e.revision.name  # another value: another revision (KServe: the pod's)
    with pytest.raises(SpecError, match="'not a key!' is not an annotation key"):
        effects({"logger": {"url": "http://s/", "metadataAnnotations": ["not a key!"]}, **model()})


def _pod_meta(component: str, field: str) -> Callable[[], None]:
    def check() -> None:
        block = {field: {"team": "ml"}}
        e = (
            effects({**block, **model()}, {**TRANSFORM, **block})
            if component == "transformer"
            else effects({**block, **model()})
        )
        assert e.pod(component)["metadata"][field]["team"] == "ml" and e.warned(f"{component}.{field}")

    return check


def _transformer_annotations() -> None:
    """Other keys go on the pod (warned locally); `serving.dev/placement: in-process` moves the transformer into
    the predictor's process, locally and in the rendered objects (not warned)."""
    _pod_meta("transformer", "annotations")()
    e = effects(model(), {**TRANSFORM, "annotations": {"serving.dev/placement": "in-process"}})
    assert "--with-transformer" in e.argv
    assert "Deployment/transformer" not in e.objects and not e.warned("transformer.annotations")
    assert "--with-transformer" in e.pod("predictor")["spec"]["containers"][0]["args"]


POD_VALUES: dict[str, Any] = {
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "gpu", "operator": "Exists"}],
    "affinity": {"nodeAffinity": {}},
    "imagePullSecrets": [{"name": "reg"}],
    "volumes": [{"name": "extra", "emptyDir": {}}],
    "securityContext": {"runAsGroup": 3000},
    "initContainers": [{"name": "warm", "image": "busybox", "command": ["true"]}],
    "hostNetwork": True,
    "hostPID": True,
    "hostIPC": True,
    "shareProcessNamespace": True,
    "dnsPolicy": "ClusterFirstWithHostNet",
    "dnsConfig": {"nameservers": ["10.0.0.10"]},
    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["store"]}],
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
    "terminationGracePeriodSeconds": 0,  # 0 (stop at once) is a value, not "unset"
    "enableServiceLinks": True,
    "automountServiceAccountToken": False,
    "readinessGates": [{"conditionType": "example.com/ready"}],
    "preemptionPolicy": "Never",
    "os": {"name": "linux"},
}


def _pod_rendered(field: str, pod: dict[str, Any], value: Any) -> bool:
    """The user's pod field in the rendered pod spec: as written, or merged with ours (volumes beside ours, init
    containers before the storage-initializer, securityContext keys over ours)."""
    got = pod.get(field)
    if field == "volumes":
        return got[-1] == value[0] and got[0]["name"] in ("model", "tmp")  # ours first
    if field == "initContainers":
        return got[0] == value[0]
    if field == "securityContext":
        return got["runAsGroup"] == 3000 and got["fsGroup"] == 1000  # ours kept
    return bool(got == value)


def _pod_field(component: str, field: str) -> Callable[[], None]:
    value: Any = POD_VALUES.get(field, "x")

    def check() -> None:
        block = {field: value}
        e = (
            effects({**block, **model()}, {**TRANSFORM, **block})
            if component == "transformer"
            else effects({**block, **model()})
        )
        pod = e.pod(component)["spec"]
        assert _pod_rendered(field, pod, value), pod.get(field)
        if f"{component}.{field}" == "predictor.serviceAccountName":  # its Secrets: the fetch's credentials
            assert not e.warned("predictor.serviceAccountName") and e.revision.service_account == value
        else:
            assert e.warned(f"{component}.{field}")
        if field == "initContainers" and component == "predictor":
            assert [c["name"] for c in pod["initContainers"]] == ["warm", "storage-initializer"]

    return check


CONTAINER_VALUES: dict[str, tuple[Any, Any]] = {  # field -> (as written, as rendered)
    "readinessProbe": (
        {"httpGet": {"path": "/v1/models/iris"}},
        {"httpGet": {"path": "/v1/models/iris", "port": "http"}},
    ),
    "livenessProbe": ({"tcpSocket": {}}, {"tcpSocket": {"port": "http"}}),
    "startupProbe": ({"exec": {"command": ["true"]}}, {"exec": {"command": ["true"]}}),
    "lifecycle": ({"preStop": {"exec": {"command": ["sleep", "5"]}}},) * 2,
    "terminationMessagePath": ("/dev/termination-log2",) * 2,
    "terminationMessagePolicy": ("FallbackToLogsOnError",) * 2,
    "imagePullPolicy": ("Always",) * 2,
    "envFrom": ([{"secretRef": {"name": "s"}}],) * 2,
    "workingDir": ("/work",) * 2,
}


def _container_rendered(field: str, container: dict[str, Any], value: Any) -> bool:
    if field == "volumeMounts":  # beside the model's (or the transformer's /tmp)
        return container[field][-1] == value[0] and len(container[field]) > 1
    if field == "securityContext":  # runAsUser 0 drops our runAsNonRoot (it would refuse to start)
        sc = container[field]
        return sc["runAsUser"] == 0 and "runAsNonRoot" not in sc and sc["readOnlyRootFilesystem"] is True
    return bool(container.get(field) == CONTAINER_VALUES[field][1])


def _model_container_field(field: str) -> Callable[[], None]:
    """KServe's corev1.Container fields on `model:`: rendered into the model server's container, warned."""

    def check() -> None:
        value = CONTAINER_SAMPLES[field]
        e = effects(model(**{field: value}))
        assert _container_rendered(field, e.container(), value), e.container()
        if (
            field == "livenessProbe"
        ):  # its timings are the local supervisor's too (tests/test_up_busy_replica.py)
            assert not e.warned(f"predictor.model.{field}")
            timed = effects(model(livenessProbe={"timeoutSeconds": 3, "failureThreshold": 5}))
            assert timed.revision.model is not None
            assert Liveness.of_probe(timed.revision.model.liveness_probe) == Liveness(3, 10, 5)
        else:
            assert e.warned(f"predictor.model.{field}")
        assert unnamed(e.argv) == unnamed(base().argv)

    return check


CONTAINER_SAMPLES: dict[str, Any] = {
    **{k: v[0] for k, v in CONTAINER_VALUES.items()},
    "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
    "securityContext": {"runAsUser": 0},
}


def _model_ports() -> None:
    """KServe's gRPC example (`ports: [{name: h2c, containerPort: 8081}]`), and other ports: h2c/grpc is where our
    server's gRPC listens, http/http1 its REST; warned locally (serving up gives each replica its ports)."""
    e = effects(
        model(protocolVersion="grpc-v2", ports=[{"name": "h2c", "protocol": "TCP", "containerPort": 9000}])
    )
    container = e.container()
    assert flag(container["args"], "--grpc-port") == "9000" and flag(container["args"], "--port") == "8080"
    assert {"name": "grpc", "containerPort": 9000, "protocol": "TCP"} in container["ports"]
    assert e.warned("predictor.model.ports")
    rest = effects(model(ports=[{"containerPort": 8085}, {"name": "metrics", "containerPort": 9100}]))
    container = rest.container()
    assert flag(container["args"], "--port") == "8085" and flag(container["args"], "--grpc-port") == "8081"
    assert container["ports"][0] == {"name": "http", "containerPort": 8085, "protocol": "TCP"}
    assert container["ports"][-1] == {"name": "metrics", "containerPort": 9100}
    assert rest.pod()["metadata"]["annotations"]["prometheus.io/port"] == "8085"
    assert rest.objects["Service/predictor"]["spec"]["ports"][0]["targetPort"] == "http"
    for ports, message in (
        (
            [{"name": "http", "containerPort": 8080}, {"name": "h2c", "containerPort": 8080}],
            "share port 8080",
        ),
        ([{"name": "http", "containerPort": 1}, {"name": "http1", "containerPort": 2}], "a second HTTP port"),
        ([{"name": "h2c"}], r"ports\[0\]\.containerPort: required"),
    ):
        with pytest.raises(SpecError, match=message):
            effects(model(ports=ports))


def _service_annotations() -> None:
    """KServe copies the service's annotations to its pods, except its own (and Knative's) controls; its
    prometheus.kserve.io/port|path set the pod's scrape port and path. Locally: warned by name."""
    annotations = {
        "sidecar.istio.io/inject": "true",
        "prometheus.io/scrape": "true",
        "prometheus.kserve.io/port": "8082",
        "prometheus.kserve.io/path": "/othermetrics",
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "autoscaling.knative.dev/target": "5",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    e = effects(model(), annotations=annotations)
    pod = e.pod()["metadata"]["annotations"]
    assert pod["sidecar.istio.io/inject"] == "true"
    # nothing of ours listens on 8082 or answers /othermetrics: the scrape stays on our /metrics, and is said
    assert (pod["prometheus.io/port"], pod["prometheus.io/path"]) == ("8080", "/metrics")
    from serving.control.kubernetes.documents import cluster_warnings

    said = cluster_warnings(e.isvc.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert any(w.startswith("metadata.annotations.prometheus.kserve.io/port: '8082'") for w in said), said
    exporter = {"name": "exporter", "image": "me/exporter", "ports": [{"containerPort": 8082}]}
    beside = effects({**model(), "containers": [exporter]}, annotations=annotations)
    scraped = beside.pod()["metadata"]["annotations"]
    assert (scraped["prometheus.io/port"], scraped["prometheus.io/path"]) == ("8082", "/othermetrics")
    from serving.spec_effects import unsupported_annotations

    scraping = "serving.kserve.io/enable-prometheus-scraping"
    assert unsupported_annotations({scraping: "true"}) == []  # every pod here is: nothing to say
    assert "not turned off" in unsupported_annotations({scraping: "false"})[0]
    assert not [k for k in pod if "kserve.io" in k or "knative.dev" in k or "kubectl" in k], pod
    (warning,) = [w for w in e.warnings if w.startswith("metadata.annotations:")]
    assert "sidecar.istio.io/inject" in warning and "prometheus.kserve.io/port" in warning
    assert "autoscaling.knative.dev/target" not in warning  # a scaling knob: it takes effect here
    scaling = effects(model(), annotations={"autoscaling.knative.dev/target": "5"})
    assert not [w for w in scaling.warnings if w.startswith("metadata.annotations:")]
    assert "autoscaling.knative.dev/target" not in scaling.pod()["metadata"]["annotations"]


def _service_labels() -> None:
    """`networking.kserve.io/visibility: cluster-local` (and Knative's older label): no ingress of a service's
    own exists to leave out, here or rendered: warned by name, locally and by `serving render`."""
    from serving.control.kubernetes.documents import cluster_warnings

    for key in ("networking.kserve.io/visibility", "serving.knative.dev/visibility"):
        e = effects(model(), labels={key: "cluster-local"})
        assert any(w.startswith(f"metadata.labels: {key}: cluster-local: no effect") for w in e.warnings)
        assert not [o for o in e.objects if o.startswith(("Ingress", "HTTPRoute"))]
        doc = {**e.isvc.model_dump(by_alias=True, exclude_none=True)}
        assert any(w.startswith(f"metadata.labels.{key}: cluster-local") for w in cluster_warnings(doc))
    plain = effects(model(), labels={"team": "ml"})
    assert not [w for w in plain.warnings if w.startswith("metadata.labels")]


def _containers_predictor() -> None:
    """KServe's custom predictor: rendered as written (not our image), refused locally naming the field and
    what works instead; beside a model, its containers run next to the model server (warned locally)."""
    custom = {
        "name": "kserve-container",
        "image": "me/predictor:1",
        "args": ["--model_name", "iris"],
        "env": [{"name": "STORAGE_URI", "value": "s3://models/iris"}],
    }
    e = effects({"containers": [custom]})
    container = e.container()
    assert (container["image"], container["args"]) == ("me/predictor:1", ["--model_name", "iris"])
    assert "command" not in container and container["env"] == custom["env"]
    assert e.pod()["spec"]["initContainers"][0]["args"][:3] == ["storage", "pull", "s3://models/iris"]
    with pytest.raises(
        RevisionError, match=r"^spec\.predictor\.containers: .*Kubernetes only.*model\.runtime"
    ):
        predictor_args(e.revision, "/models/iris")
    sidecar = effects({**model(), "containers": [{"name": "proxy", "image": "me/proxy:1"}]})
    containers = sidecar.pod()["spec"]["containers"]
    assert [c["name"] for c in containers] == ["kserve-container", "proxy"]
    assert containers[0]["image"] == SETTINGS.image and containers[1]["image"] == "me/proxy:1"
    assert sidecar.warned("predictor.containers")


def _format_name() -> None:
    e = effects({"model": {**MODEL, "modelFormat": {"name": "xgboost"}}})
    assert flag(e.argv, "--runtime") == "xgboost" == flag(e.container()["args"], "--runtime")
    short = effects({"onnx": {"storageUri": "pvc://store/iris"}})  # the shorthand is the same field
    assert flag(short.argv, "--runtime") == "onnx"


def _storage_uri() -> None:
    e = effects(model(storageUri="pvc://store/v9"))
    assert e.revision.storage_uri == "pvc://store/v9"  # what the local storage layer resolves
    assert e.pod()["spec"]["initContainers"][0]["args"][:3] == ["storage", "pull", "pvc://store/v9"]
    assert not e.warned("predictor.model.storageUri")
    hdfs = effects(model(storageUri="hdfs://namenode/models/iris"))  # KServe's, accepted, not fetched here
    assert hdfs.warned("predictor.model.storageUri")


def _storage_uris(where: str) -> Callable[[], None]:
    def check() -> None:
        items = [{"uri": "s3://models/iris"}, {"uri": "pvc://store/pre", "mountPath": "/mnt/models/pre"}]
        written = {"model": {**MODEL, "storageUri": None, "storageUris": items}}
        if where == "predictor":
            written = {"model": {"modelFormat": MODEL["modelFormat"]}, "storageUris": items}
        e = effects(written)
        assert [(i.uri, i.subpath) for i in e.revision.storage_uris] == [  # what serving up composes
            ("s3://models/iris", ""),
            ("pvc://store/pre", "pre"),
        ]
        args = e.pod()["spec"]["initContainers"][0]["args"]
        assert args[:4] == ["storage", "pull", "s3://models/iris", "/mnt/models"]
        assert args[args.index("--also") :][:3] == ["--also", "pvc://store/pre", "/mnt/models/pre"]
        assert not e.warned(f"{where}.storageUris")
        hf = [{"uri": "hf://org/model"}, {"uri": "s3://b/x", "mountPath": "/mnt/models/x"}]
        unfetched = (
            effects({"model": {"modelFormat": MODEL["modelFormat"]}, "storageUris": hf})
            if where == "predictor"
            else effects({"model": {"modelFormat": MODEL["modelFormat"], "storageUris": hf}})
        )
        assert unfetched.warned(f"{where}.storageUris")

    return check


def _storage_spec() -> None:
    from serving.control.local.storage_bridge import location

    e = effects(
        {"model": {"modelFormat": {"name": "sklearn"}, "storage": {"key": "k", "path": "models/iris"}}}
    )
    secret = {"k": '{"type": "s3", "bucket": "b", "region": "r"}'}  # what serving up resolves it with
    assert location(e.revision, lambda r: ("storage-config", secret)) == (
        "s3://b/models/iris",
        {"AWS_DEFAULT_REGION": "r"},
    )
    init = e.pod()["spec"]["initContainers"][0]  # no Secret in these files: the path, and the entry as a ref
    assert init["args"][:4] == ["storage", "pull", "--storage-path", "models/iris"]
    assert {
        "name": "STORAGE_CONFIG",
        "valueFrom": {"secretKeyRef": {"name": "storage-config", "key": "k"}},
    } in (init["env"])
    assert not e.warned("predictor.model.storage")
    mesh = effects(
        {"model": {"modelFormat": {"name": "sklearn"}, "storage": {"path": "m", "schemaPath": "s"}}}
    )
    assert mesh.warned("predictor.model.storage")


def _runtime() -> None:
    e = effects(model(runtime="tests.test_spec_effect:Sleepy"))
    assert (
        flag(e.argv, "--runtime")
        == "tests.test_spec_effect:Sleepy"
        == flag(e.container()["args"], "--runtime")
    )
    named = effects(model(runtime="kserve-sklearnserver"))
    assert flag(named.argv, "--runtime") == "sklearn" and not named.warned("predictor.model.runtime")
    # a ServingRuntime by name: its args reach the server
    catalog = RuntimeCatalog(None)
    catalog.apply(_runtime_doc("proba", [{"name": "sklearn", "version": "1"}], args=["--predict-proba"]))
    chosen = effects({"model": {**MODEL, "runtime": "proba"}})
    assert "--predict-proba" in catalog.flags_for(chosen.revision)


def _runtime_doc(name: str, formats: list[dict[str, Any]], args: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": name},
        "spec": {
            "supportedModelFormats": formats,
            "protocolVersions": ["v1", "v2"],
            "containers": [{"name": "kserve-container", "args": args or []}],
        },
    }


def _selected(e: Effects) -> str:
    """The runtime KServe's selection gives this revision, or its refusal."""
    try:
        return " ".join(RuntimeCatalog(None).flags_for(e.revision))
    except SelectionError as exc:
        return exc.message


def _format_version() -> None:
    def versioned(version: str) -> Effects:
        return effects({"model": {**MODEL, "modelFormat": {"name": "sklearn", "version": version}}})

    assert _selected(versioned("1")) == "--runtime sklearn"
    assert "No runtime found" in _selected(versioned("7"))  # no built-in lists sklearn 7
    assert not versioned("7").warned("predictor.model.modelFormat.version")


def _protocol_version() -> None:
    catalog = RuntimeCatalog(None)
    v1_only = _runtime_doc("v1-only", [{"name": "sklearn"}])
    v1_only["spec"]["protocolVersions"] = ["v1"]
    catalog.apply(v1_only)
    catalog.check(effects(model(runtime="v1-only", protocolVersion="v1")).isvc)
    with pytest.raises(SpecError, match="spec.predictor.model.runtime"):
        catalog.check(effects(model(runtime="v1-only", protocolVersion="v2")).isvc)
    assert not effects(model(protocolVersion="v2")).warned("predictor.model.protocolVersion")


def _args() -> None:
    e = effects(model(args=["--predict-proba"]))
    assert e.argv[-1] == "--predict-proba" and "--predict-proba" in e.container()["args"]


def _env(component: str) -> Callable[[], None]:
    def check() -> None:
        env = [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]
        if component == "transformer":
            t = copy.deepcopy(TRANSFORM)
            t["containers"][0]["env"] = env
            e = effects(model(), t)
            local = e.transformer_env
        else:
            e = effects(model(env=env))
            local = e.env
        assert local == {"A": "1", "B": "from-secret"}  # locally: from the Secrets applied with the service
        assert e.container(component)["env"] == [{"name": "A", "value": "1"}, env[1]]

    return check


def _model_resources() -> None:
    resources = {"limits": {"cpu": "2", "memory": "1Gi"}}
    e = effects(model(resources=resources))
    assert e.container()["resources"] == resources and e.warned("predictor.model.resources")


def _model_image() -> None:
    e = effects(model(image="me/sklearn:2"))
    assert e.container()["image"] == "me/sklearn:2" and e.warned("predictor.model.image")


def _transformer_hpa(field: str, value: Any, check: Callable[[dict[str, Any]], bool]) -> Callable[[], None]:
    def run() -> None:
        e = effects(
            model(),
            {"maxReplicas": 4, field: value, **TRANSFORM}
            if field != "maxReplicas"
            else {"maxReplicas": value, **TRANSFORM},
        )
        assert check(hpa(e, "transformer")) and e.warned(f"transformer.{field}")

    return run


def _container(field: str, value: Any, rendered: Callable[[dict[str, Any]], bool]) -> Callable[[], None]:
    def check() -> None:
        t = copy.deepcopy(TRANSFORM)
        t["containers"][0][field] = value
        e = effects(model(), t)
        assert rendered(e.container("transformer")), e.container("transformer")
        if not EFFECTS_BY_PATH[f"transformer.containers[].{field}"].local:
            assert e.warned(f"transformer.containers[].{field}")
        else:
            assert not e.warned(f"transformer.containers[].{field}")

    return check


def _command_args() -> None:
    t = {"containers": [{"command": ["serving"], "args": ["transform", "--transformer", "tabular"]}]}
    e = effects(model(), t)
    assert e.transformer_argv is not None and e.transformer_argv[:3] == [
        "transform",
        "--transformer",
        "tabular",
    ]
    assert (
        e.container("transformer")["command"] == ["serving"]
        and e.container("transformer")["args"][0] == "transform"
    )


CASES: dict[str, Callable[[], None]] = {
    "metadata.name": _name,
    "metadata.namespace": _namespace,
    "metadata.annotations": _service_annotations,
    "metadata.labels": _service_labels,
    "predictor.minReplicas": _min_replicas,
    "predictor.maxReplicas": _max_replicas,
    "predictor.scaleMetric": _scale_metric,
    "predictor.scaleTarget": _scale_target,
    "predictor.scaleMetricType": _scale_metric_type,
    "predictor.autoScaling": _auto_scaling,
    "predictor.canaryTrafficPercent": _canary,
    "predictor.containerConcurrency": _concurrency,
    "predictor.timeout": _timeout,
    "predictor.deploymentStrategy": _deployment_strategy("predictor"),
    "transformer.deploymentStrategy": _deployment_strategy("transformer"),
    "predictor.batcher": _batcher,
    "predictor.batcher.maxBatchSize": _batch_size,
    "predictor.batcher.maxLatency": _max_latency,
    "predictor.batcher.timeout": _batcher_timeout,
    "predictor.logger": _logger("predictor"),
    "predictor.logger.mode": _logger_mode,
    "predictor.logger.url": _logger_url,
    "predictor.logger.metadataHeaders": _logger_metadata_headers,
    "predictor.logger.metadataAnnotations": _logger_metadata_annotations,
    "predictor.labels": _pod_meta("predictor", "labels"),
    "predictor.annotations": _pod_meta("predictor", "annotations"),
    "predictor.containers": _containers_predictor,
    "predictor.model.modelFormat.name": _format_name,
    "predictor.model.modelFormat.version": _format_version,
    "predictor.model.storageUri": _storage_uri,
    "predictor.storageUris": _storage_uris("predictor"),
    "predictor.model.storageUris": _storage_uris("predictor.model"),
    "predictor.model.storage": _storage_spec,
    "predictor.model.runtime": _runtime,
    "predictor.model.runtimeVersion": only_warned(
        "predictor.model.runtimeVersion", lambda: effects(model(runtimeVersion="1.3"))
    ),
    "predictor.model.protocolVersion": _protocol_version,
    "predictor.model.args": _args,
    "predictor.model.env": _env("predictor"),
    "predictor.model.resources": _model_resources,
    "predictor.model.name": only_warned(
        "predictor.model.name", lambda: effects(model(name="kserve-container"))
    ),
    "predictor.model.image": _model_image,
    "predictor.model.ports": _model_ports,
    **{f"predictor.model.{f}": _model_container_field(f) for f in KUBERNETES_CONTAINER_ONLY if f != "ports"},
    "transformer.minReplicas": _transformer_hpa("minReplicas", 2, lambda h: h["minReplicas"] == 2),
    "transformer.maxReplicas": _transformer_hpa("maxReplicas", 6, lambda h: h["maxReplicas"] == 6),
    "transformer.scaleMetric": _transformer_hpa(
        "scaleMetric", "memory", lambda h: h["metrics"][0]["resource"]["name"] == "memory"
    ),
    "transformer.scaleTarget": _transformer_hpa(
        "scaleTarget", 40, lambda h: h["metrics"][0]["resource"]["target"]["averageUtilization"] == 40
    ),
    "transformer.scaleMetricType": _transformer_hpa(
        "scaleMetricType",
        "Utilization",
        lambda h: h["metrics"][0]["resource"]["target"]["type"] == "Utilization",
    ),
    "transformer.autoScaling": _transformer_hpa(
        "autoScaling", MEMORY_60, lambda h: h["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    ),
    "transformer.canaryTrafficPercent": _transformer_canary,
    "transformer.containerConcurrency": _transformer_concurrency,
    "transformer.timeout": _transformer_timeout,
    "transformer.batcher": _transformer_batcher,
    "transformer.logger": _logger("transformer"),
    "transformer.labels": _pod_meta("transformer", "labels"),
    "transformer.annotations": _transformer_annotations,
    "transformer.containers[].command": _command_args,
    "transformer.containers[].args": _command_args,
    "transformer.containers[].env": _env("transformer"),
    "transformer.containers[].image": _container("image", "me/tx:1", lambda c: c["image"] == "me/tx:1"),
    "transformer.containers[].name": _container("name", "tx", lambda c: c["name"] == "tx"),
    "transformer.containers[].resources": _container(
        "resources", {"limits": {"cpu": "1"}}, lambda c: c["resources"] == {"limits": {"cpu": "1"}}
    ),
    "transformer.containers[].ports": _container(  # where it listens: --port, the Service's http port
        "ports",
        [{"containerPort": 9000}],
        lambda c: (
            c["ports"][0] == {"name": "http", "containerPort": 9000} and flag(c["args"], "--port") == "9000"
        ),
    ),
    **{
        f"transformer.containers[].{f}": _container(
            f, CONTAINER_SAMPLES[f], lambda c, f=f: _container_rendered(f, c, CONTAINER_SAMPLES[f])
        )
        for f in KUBERNETES_CONTAINER_ONLY
        if f != "ports"
    },
    **{f"{c}.{f}": _pod_field(c, f) for c in ("predictor", "transformer") for f in KUBERNETES_ONLY},
}


@pytest.mark.parametrize("path", [e.path for e in FIELD_EFFECTS])
def test_field_takes_effect(path: str) -> None:
    CASES[path]()


def test_every_row_has_a_case_and_every_case_a_row() -> None:
    assert set(CASES) == set(EFFECTS_BY_PATH)


def _paths(model_type: type[BaseModel], prefix: str) -> set[str]:
    """Every field path of a spec model, nested blocks and lists of blocks included ("[]")."""
    out = set()
    for name, info in model_type.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        out.add(path)
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            inner = (*typing.get_args(arg), arg)
            for candidate in inner:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    many = typing.get_origin(arg) is tuple
                    out |= _paths(candidate, path + ("[]" if many else ""))
    return out


def test_every_accepted_field_has_a_row() -> None:
    """A new spec field without a row fails here: say where it takes effect (or that it does not)."""
    shorthands = {"predictor.sklearn", "predictor.xgboost", "predictor.onnx"}  # normalised to predictor.model
    fields = (_paths(PredictorSpec, "predictor") | _paths(TransformerSpec, "transformer")) - shorthands
    fields = {f for f in fields if not any(f.startswith(s + ".") for s in shorthands)}
    covered = set(EFFECTS_BY_PATH)

    def has_row(path: str) -> bool:  # a row for the field, for a block around it, or for each field inside it
        bare = path.replace("[]", "")
        parts = bare.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        return any(
            row.replace("[]", "") in prefixes or row.replace("[]", "").startswith(bare + ".")
            for row in covered
        )

    assert sorted(f for f in fields if not has_row(f)) == []
    assert not [
        row
        for row in covered
        if not row.startswith("metadata.")
        and row.replace("[]", "") not in {f.replace("[]", "") for f in fields}
    ]


def test_shorthand_fields_are_the_model_fields() -> None:
    e = effects({"xgboost": {"storageUri": "pvc://s/x", "args": ["--predict-proba"]}})
    assert values_at(e.isvc, "predictor.model.args") == [("--predict-proba",)]
    assert flag(e.argv, "--runtime") == "xgboost" and e.argv[-1] == "--predict-proba"


# -- effects that only show at run time: a real server started in-process with the argv the backend built ------
def _served(predictor: dict[str, Any], model_dir: Path) -> list[str]:
    e = effects(predictor)
    argv = predictor_args(e.revision, model_dir)
    assert argv[0] == "serve"
    return argv


async def _post_all(url: str, count: int) -> list[httpx.Response]:
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [6.8, 2.8, 4.8, 1.4]}]
    }
    async with httpx.AsyncClient(timeout=30) as client:
        return list(await asyncio.gather(*(client.post(url, json=body) for _ in range(count))))


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_kserve_documented_batcher_batches_on_a_real_server(model_repo: Path) -> None:
    """KServe's example `batcher: {maxBatchSize: 32, maxLatency: 500}` (the defaults) batches."""
    argv = _served(
        {
            "timeout": 60,
            "batcher": {"maxBatchSize": 32, "maxLatency": 500},
            "model": {**MODEL, "storageUri": "unused"},
        },
        model_repo / "sklearn-iris",
    )
    with serving_inprocess(argv) as server:
        responses = asyncio.run(_post_all(f"{server.url}/v2/models/iris/infer", 16))
        assert [r.status_code for r in responses] == [200] * 16
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    batches, rows = _metric(metrics, "serving_batch_size_count"), _metric(metrics, "serving_batch_size_sum")
    assert batches > 0 and rows == 16 and rows > batches, (batches, rows)  # several requests shared a batch


def test_timeout_answers_504_on_a_real_server(tmp_path: Path) -> None:
    argv = _served({"timeout": 1, **model(runtime="tests.test_spec_effect:Sleepy")}, tmp_path)
    with serving_inprocess(argv) as server:
        (response,) = asyncio.run(_post_all(f"{server.url}/v2/models/iris/infer", 1))
    assert response.status_code == 504 and "error" in response.json()


def test_container_concurrency_queues_the_surplus_on_a_real_server(tmp_path: Path) -> None:
    """KServe: a hard limit whose surplus is buffered. Two at once on one slot: both 200, one after the other
    (the second waits for the first: both are answered no sooner than two model calls)."""
    argv = _served({"containerConcurrency": 1, **model(runtime="tests.test_spec_effect:Sleepy")}, tmp_path)
    with serving_inprocess(argv) as server:
        started = time.monotonic()
        responses = asyncio.run(_post_all(f"{server.url}/v2/models/iris/infer", 2))
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert elapsed >= 2 * SLEEP_S, elapsed  # never two in the model at once


def test_container_concurrency_with_workers_is_said_to_hold_per_worker(tmp_path: Path) -> None:
    """Each `--workers` process keeps its own containerConcurrency slots: a limit of 1 lets 2 in at once."""
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "cc"},
        "spec": {
            "predictor": {
                "containerConcurrency": 1,
                "sklearn": {"storageUri": str(tmp_path), "args": ["--workers", "2"]},
            }
        },
    }
    said = "spec.predictor.containerConcurrency: 1 holds per worker process with sklearn.args --workers 2"
    assert any(w.startswith(said) for w in parse(doc).warnings())
    doc["spec"]["predictor"]["sklearn"]["args"] = ["--workers", "1"]
    assert not any("containerConcurrency" in w for w in parse(doc).warnings())


def test_settings_that_keep_batches_smaller_than_the_batcher_says_are_said(tmp_path: Path) -> None:
    """A containerConcurrency under maxBatchSize (no more requests than that reach the batcher at once) and the
    batching flags in model.args (they win over the block): accepted, and said at apply."""
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "b"},
        "spec": {
            "predictor": {
                "containerConcurrency": 1,
                "batcher": {"maxBatchSize": 32, "maxLatency": 500},
                "sklearn": {"storageUri": str(tmp_path), "args": ["--max-batch-size", "4"]},
            }
        },
    }
    warnings = parse(doc).warnings()
    assert any(
        w.startswith("spec.predictor.batcher.maxBatchSize: 32, but containerConcurrency: 1") for w in warnings
    )
    assert (
        "spec.predictor.sklearn.args: --max-batch-size 4 overrides spec.predictor.batcher.maxBatchSize"
        in " ".join(warnings)
    )
    doc["spec"]["predictor"] |= {"containerConcurrency": 64, "sklearn": {"storageUri": str(tmp_path)}}
    assert not any("batcher" in w for w in parse(doc).warnings())


def test_an_in_process_transformers_logger_is_said_to_replace_the_predictors() -> None:
    import yaml as _yaml

    doc = _yaml.safe_load(
        """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: inp}
spec:
  predictor:
    logger: {mode: response, url: "http://127.0.0.1:1/predictor-sink"}
    sklearn: {storageUri: /tmp/m}
  transformer:
    annotations: {serving.dev/placement: in-process}
    logger: {mode: all, url: "http://127.0.0.1:1/transformer-sink"}
    containers:
    - name: kserve-container
      image: serving
      args: [serving, transform, --transformer, identity]
"""
    )
    assert any(w.startswith("spec.predictor.logger: no effect with") for w in parse(doc).warnings())
    del doc["spec"]["transformer"]["logger"]
    assert not any(w.startswith("spec.predictor.logger") for w in parse(doc).warnings())


def test_warnings_name_a_shorthand_predictors_field_as_written(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "short"},
        "spec": {"predictor": {"sklearn": {"storageUri": str(tmp_path), "runtimeVersion": "1.2"}}},
    }
    assert (
        "spec.predictor.sklearn.runtimeVersion: accepted; no effect on the local backend"
        in parse(doc).warnings()
    )
