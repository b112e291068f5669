"""KServe's ServingRuntime validating webhook (servingruntime_webhook.go) denies a runtime whose autoSelect format
ties another runtime of its scope (same format and version, same priority, a protocol in common) or that gives
one format two priorities; `serving apply` refuses it with that meaning, `serving render` and the operator (no
webhook ships) warn (audit /tmp/audit-kserve4 M5: both were accepted silently, the tie broken by name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.control import runtime_catalog
from serving.control.kubernetes import runtimes as cluster_runtimes
from serving.control.runtime_catalog import STATE_FILE, RuntimeCatalog
from serving.errors import BadRequest
from serving.servingruntime import BUILTIN_RUNTIMES, ServingRuntime, parse_runtime, priority_conflict
from tests.inprocess import run_cli
from tests.up_support import cli, serving_up


class Said:
    """A logger's stand-in that keeps its warnings (formatted as logging formats them)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.warnings.append(message % args if args else message)


def doc(
    name: str,
    formats: list[dict[str, Any]],
    *,
    cluster: bool = False,
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime" if cluster else "ServingRuntime",
        "metadata": {"name": name, **({} if cluster else {"namespace": namespace})},
        "spec": {
            "supportedModelFormats": formats,
            "containers": [{"name": "kserve-container", "image": "x", "args": ["--runtime=sklearn"]}],
            **spec,
        },
    }


def fmt(
    name: str = "xgboost", version: str | None = "2", priority: int | None = 5, auto: bool = True
) -> dict:
    out: dict[str, Any] = {"name": name, "autoSelect": auto}
    if version is not None:
        out["version"] = version
    if priority is not None:
        out["priority"] = priority
    return out


def rt(name: str, formats: list[dict[str, Any]], **kw: Any) -> ServingRuntime:
    return parse_runtime(doc(name, formats, **kw))


V2 = {"protocolVersions": ["v2"]}


def test_a_tie_is_denied_as_kserves_webhook_denies_it() -> None:
    message = priority_conflict(rt("same-b", [fmt()], **V2), [rt("same-a", [fmt()], **V2)])
    assert message is not None and message.startswith(
        "ServingRuntime same-b: same priority assigned for the model format xgboost in the servingruntimes "
        "same-a and same-b in namespace default: "
    ), message
    assert 'both autoSelect xgboost version "2" at priority 5 and list v2' in message
    cluster = priority_conflict(rt("b", [fmt()], cluster=True, **V2), [rt("a", [fmt()], cluster=True, **V2)])
    assert cluster is not None and "in the clusterservingruntimes a and b: " in cluster
    # the name is compared as KServe's EqualFold does; two unset versions are equal
    assert priority_conflict(rt("b", [fmt("XGBoost")], **V2), [rt("a", [fmt()], **V2)]) is not None
    unversioned = [fmt(version=None)]
    assert priority_conflict(rt("b", unversioned, **V2), [rt("a", unversioned, **V2)]) is not None


@pytest.mark.parametrize(
    ("new", "existing"),
    [
        # KServe compares the protocolVersions as listed: a runtime listing none shares none (the audit's 29)
        (rt("b", [fmt()]), rt("a", [fmt()])),
        (rt("b", [fmt()], protocolVersions=["v1"]), rt("a", [fmt()], **V2)),
        (rt("b", [fmt(version="1")], **V2), rt("a", [fmt()], **V2)),
        (rt("b", [fmt(priority=6)], **V2), rt("a", [fmt()], **V2)),
        (rt("b", [fmt(priority=None)], **V2), rt("a", [fmt()], **V2)),
        (rt("b", [fmt(auto=False)], **V2), rt("a", [fmt()], **V2)),
        (rt("b", [fmt()], **V2), rt("a", [fmt()], disabled=True, **V2)),
        (rt("b", [fmt()], disabled=True, **V2), rt("a", [fmt()], **V2)),
        (rt("a", [fmt()], **V2), rt("a", [fmt()], **V2)),  # an update of itself
    ],
)
def test_no_tie_without_every_condition_kserve_checks(new: ServingRuntime, existing: ServingRuntime) -> None:
    assert priority_conflict(new, [existing]) is None


def test_one_format_with_two_priorities_is_denied() -> None:
    two = rt("diffprio", [fmt("onnx", "1", 1), fmt("onnx", "2", 7)], protocolVersions=["v1"])
    message = priority_conflict(two, [])
    assert message == (
        "ServingRuntime diffprio: different priorities assigned for the model format onnx under the servingruntime "
        'diffprio (onnx version "1" at priority 1, onnx version "2" at 7): KServe\'s webhook refuses this; give '
        "every autoSelect onnx entry one priority"
    )
    assert priority_conflict(rt("same", [fmt("onnx", "1", 3), fmt("onnx", "2", 3)]), []) is None
    assert priority_conflict(rt("unset", [fmt("onnx", "1", None), fmt("onnx", "2", 3)]), []) is None
    assert priority_conflict(rt("manual", [fmt("onnx", "1", 1), fmt("onnx", "2", 7, auto=False)]), []) is None
    assert priority_conflict(rt("off", [fmt("onnx", "1", 1), fmt("onnx", "2", 7)], disabled=True), []) is None


def test_the_scope_is_the_namespace_or_the_cluster_and_builtins_are_cluster_runtimes() -> None:
    """Built-in runtimes are ordinary ClusterServingRuntimes in KServe (kserve-xgbserver: xgboost 1 and 2 at
    priority 1): a ClusterServingRuntime tying one is denied there, so here; a ServingRuntime never is (KServe
    lists only its namespace's ServingRuntimes), nor one replacing a built-in by its name."""
    catalog = RuntimeCatalog(None)
    catalog.apply(doc("same-a", [fmt()], namespace="team-a", **V2))
    assert catalog.conflict(rt("same-b", [fmt()], namespace="team-b", **V2)) is None
    assert catalog.conflict(rt("same-b", [fmt()], cluster=True, **V2)) is None
    assert catalog.conflict(rt("same-b", [fmt()], namespace="team-a", **V2)) is not None
    xgb = next(r for r in BUILTIN_RUNTIMES if r.name == "kserve-xgbserver")
    assert [(f.version, f.priority, f.auto_select) for f in xgb.spec.supported_model_formats] == [
        ("1", 1, True),
        ("2", 1, True),
    ]
    tie = catalog.conflict(rt("my-xgb", [fmt(priority=1)], cluster=True, **V2))
    assert tie is not None and "in the clusterservingruntimes kserve-xgbserver (built in) and my-xgb: " in tie
    assert catalog.conflict(rt("my-xgb", [fmt(priority=1)], **V2)) is None
    assert catalog.conflict(rt("kserve-xgbserver", [fmt(priority=1)], cluster=True, **V2)) is None
    # the built-in ones tie nothing among themselves
    assert all(RuntimeCatalog(None).conflict(r) is None for r in BUILTIN_RUNTIMES)


TIE = yaml.safe_dump_all([doc("same-a", [fmt()], **V2), doc("same-b", [fmt()], **V2)])


def test_serving_apply_refuses_a_tie_and_applies_nothing(tmp_path: Path) -> None:
    """Through a real `serving up`: the audit's 29b (two runtimes tied over v2) and 29c (one format, two
    priorities) are refused naming both runtimes and the format, nothing of the file applied; 29 (no
    protocolVersions listed) is accepted, as KServe's webhook accepts it; a runtime tying one already applied,
    or a built-in one, is refused too."""
    state = tmp_path / "state"
    with serving_up(state) as server:

        def apply(name: str, text: str) -> Any:
            (tmp_path / name).write_text(text)
            return cli(server, state, "apply", "-f", str(tmp_path / name), check=False)

        refused = apply("29b.yaml", TIE)
        assert refused.returncode == 2, refused
        assert refused.stderr.startswith(
            "error: ServingRuntime same-b: same priority assigned for the model format xgboost in the "
            "servingruntimes same-a and same-b in namespace default"
        ), refused.stderr
        missing = cli(server, state, "get", "sr", "same-a", check=False)
        assert missing.returncode != 0, "the refused file applied nothing, same-a included"

        diff = doc("diffprio", [fmt("onnx", "1", 1), fmt("onnx", "2", 7)], protocolVersions=["v1"])
        refused = apply("29c.yaml", yaml.safe_dump(diff))
        assert refused.returncode == 2 and "different priorities assigned for the model format onnx" in (
            refused.stderr
        ), refused.stderr

        assert apply("a.yaml", yaml.safe_dump(doc("same-a", [fmt()], **V2))).returncode == 0
        later = apply("b.yaml", yaml.safe_dump(doc("same-b", [fmt()], **V2)))
        assert later.returncode == 2 and "servingruntimes same-a and same-b" in later.stderr, later.stderr
        # same-a again, changed but still alone in its namespace at that priority: an update, accepted
        assert (
            apply("a.yaml", yaml.safe_dump(doc("same-a", [fmt()], protocolVersions=["v1", "v2"]))).returncode
            == 0
        )

        untied = yaml.safe_dump_all([doc("same-c", [fmt()]), doc("same-d", [fmt()])])
        assert apply("29.yaml", untied).returncode == 0

        builtin = apply("csr.yaml", yaml.safe_dump(doc("my-xgb", [fmt(priority=1)], cluster=True, **V2)))
        assert (
            builtin.returncode == 2
            and "clusterservingruntimes kserve-xgbserver (built in) and my-xgb" in (builtin.stderr)
        ), builtin.stderr
        table = cli(server, state, "get", "servingruntimes").stdout
        assert "same-a" in table and "same-c" in table and "same-b" not in table and "my-xgb" not in table


def test_render_and_the_operator_warn_of_a_tie_they_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No webhook ships with the operator: the cluster admits such a runtime. `serving render` says so on
    stderr and renders; the operator logs it once, when the runtime arrives, and selects among both."""
    path = tmp_path / "tie.yaml"
    path.write_text(TIE)
    rendered = run_cli("render", "-f", str(path))
    assert rendered.returncode == 0, rendered.stderr
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(rendered.stdout)] == ["same-a", "same-b"]
    assert rendered.stderr.count("warning: ") == 1
    assert (
        "warning: ServingRuntime same-b: same priority assigned for the model format xgboost in the "
        "servingruntimes same-a and same-b in namespace default" in rendered.stderr
    )
    assert "the operator keeps it (no ServingRuntime webhook ships with it)" in rendered.stderr

    said = Said()
    monkeypatch.setattr(cluster_runtimes, "log", said)  # the operator's log, whatever its handlers and level
    runtimes = cluster_runtimes.ClusterRuntimes()
    for body in yaml.safe_load_all(TIE):
        assert runtimes.event(body, None) == (True, "default")
    resync = next(yaml.safe_load_all(TIE))
    assert runtimes.event(resync, None) == (False, "default")  # unchanged: not said again
    assert len(said.warnings) == 1 and said.warnings[0].startswith("ServingRuntime same-b: "), said.warnings


def test_a_tie_stored_before_is_kept_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runtimes a version without this check stored keep serving after an upgrade; the log says which tie."""
    (tmp_path / STATE_FILE).write_text(json.dumps(list(yaml.safe_load_all(TIE))))
    said = Said()
    monkeypatch.setattr(runtime_catalog, "log", said)
    catalog = RuntimeCatalog(tmp_path)
    assert sorted(key[2] for key in catalog.runtimes) == ["same-a", "same-b"]
    assert len(said.warnings) == 1, said.warnings
    assert said.warnings[0].startswith("a stored runtime apply now refuses: ServingRuntime same-b: ")


def test_kserves_mlserver_runtime_serves_the_class_its_model_class_label_names() -> None:
    """KServe's kserve-mlserver sets MLSERVER_MODEL_IMPLEMENTATION from the service's `modelClass` label, and
    MLServer loads that class whatever the format: an xgboost-format service labelled SKLearnModel was served as
    xgboost here (audit /tmp/audit-kserve4 L2)."""
    from serving.revision import Revision
    from serving.servingruntime import ServiceMeta
    from serving.spec import parse

    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "kserve-mlserver"},
        "spec": {
            "supportedModelFormats": [{"name": "xgboost", "version": "2", "autoSelect": True, "priority": 2}],
            "protocolVersions": ["v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "mlserver:replace",
                    "env": [{"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": "{{.Labels.modelClass}}"}],
                }
            ],
        },
    }
    catalog = RuntimeCatalog(None)
    catalog.apply(runtime)

    def flags(label: str | None) -> list[str]:
        labels = {"modelClass": label} if label is not None else {}
        isvc = parse(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "m", "labels": labels},
                "spec": {
                    "predictor": {
                        "model": {
                            "modelFormat": {"name": "xgboost"},
                            "protocolVersion": "v2",
                            "runtime": "kserve-mlserver",
                            "storageUri": "/m",
                        }
                    }
                },
            }
        )
        return catalog.resolve(Revision.from_spec(isvc), ServiceMeta.of(isvc.metadata))[1]

    assert flags("mlserver_sklearn.SKLearnModel")[:2] == ["--runtime", "sklearn"]
    assert flags(None)[:2] == [
        "--runtime",
        "xgboost",
    ]  # no label: the placeholder is empty, the format decides
    with pytest.raises(
        BadRequest, match="MLSERVER_MODEL_IMPLEMENTATION 'mlserver_lightgbm.LightGBMModel' is an"
    ):
        flags("mlserver_lightgbm.LightGBMModel")


def test_a_runtimes_worker_spec_is_refused_as_multi_node_serving_not_as_a_typo() -> None:
    """`workerSpec` is KServe's multi-node field: refused in the InferenceService's words, not pydantic's
    'Extra inputs are not permitted' (audit /tmp/audit-kserve4 L4)."""
    from serving.servingruntime import RuntimeSpecError, parse_runtime

    with pytest.raises(RuntimeSpecError) as refused:
        parse_runtime(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ServingRuntime",
                "metadata": {"name": "multi"},
                "spec": {
                    "supportedModelFormats": [{"name": "sklearn"}],
                    "workerSpec": {"size": 2},
                    "containers": [{"name": "kserve-container", "image": "i"}],
                },
            }
        )
    assert refused.value.message.startswith(
        "ServingRuntime multi: spec.workerSpec: not supported: multi-node"
    )
