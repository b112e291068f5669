"""ServingRuntime / ClusterServingRuntime documents and KServe's runtime selection (pure functions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from serving.servingruntime import (
    BUILTIN_RUNTIMES,
    NO_RUNTIME,
    ModelRequest,
    RuntimeSpecError,
    SelectionError,
    ServingRuntime,
    parse_runtime,
    runtime_implementation,
    select_runtime,
    serve_flags,
)


def runtime(
    name: str, formats: list[dict[str, Any]], *, cluster: bool = False, **spec: Any
) -> ServingRuntime:
    return parse_runtime(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterServingRuntime" if cluster else "ServingRuntime",
            "metadata": {"name": name, **({} if cluster else {"namespace": "ml"})},
            "spec": {"supportedModelFormats": formats, **spec},
        }
    )


def fmt(name: str, version: str | None = None, auto: bool | None = True, priority: int | None = None) -> dict:
    out: dict[str, Any] = {"name": name, "autoSelect": auto}
    if version is not None:
        out["version"] = version
    if priority is not None:
        out["priority"] = priority
    return out


CLUSTER = list(BUILTIN_RUNTIMES)


@pytest.mark.parametrize(
    ("format_name", "expected"),
    [("sklearn", "kserve-sklearnserver"), ("xgboost", "kserve-xgbserver"), ("onnx", "kserve-tritonserver")],
)
def test_builtins_are_auto_selected_by_format(format_name: str, expected: str) -> None:
    chosen = select_runtime(ModelRequest(format_name), [], CLUSTER)
    assert chosen.name == expected and chosen.cluster_scoped
    assert runtime_implementation(chosen, format_name) == format_name
    assert serve_flags(chosen, "iris") == []  # model_name/model_dir/http_port are the backend's business


def test_explicit_runtime_wins_even_without_auto_select() -> None:
    mine = runtime("mine", [fmt("sklearn", auto=False)], protocolVersions=["v1", "v2"])
    request = ModelRequest("sklearn", runtime="mine")
    assert select_runtime(request, [mine], CLUSTER).name == "mine"
    assert select_runtime(ModelRequest("sklearn"), [mine], CLUSTER).name == "kserve-sklearnserver"
    assert select_runtime(
        ModelRequest("sklearn", runtime="kserve-sklearnserver"), [mine], CLUSTER
    ).cluster_scoped


def test_namespace_runtimes_before_cluster_ones_then_highest_priority() -> None:
    low = runtime("a-low", [fmt("sklearn", priority=1)])
    high = runtime("b-high", [fmt("sklearn", priority=5)])
    unset = runtime("0-unset", [fmt("sklearn")])
    assert select_runtime(ModelRequest("sklearn"), [low, high, unset], CLUSTER).name == "b-high"
    cluster_high = runtime("c-cluster", [fmt("sklearn", priority=100)], cluster=True)
    assert select_runtime(ModelRequest("sklearn"), [low], [cluster_high, *CLUSTER]).name == "a-low"
    assert select_runtime(ModelRequest("sklearn"), [], [*CLUSTER, cluster_high]).name == "c-cluster"


def test_disabled_version_and_protocol_filter() -> None:
    disabled = runtime("off", [fmt("sklearn", priority=9)], disabled=True)
    v2_only = runtime("v2only", [fmt("sklearn", priority=8)], protocolVersions=["v2"])
    versioned = runtime("versioned", [fmt("sklearn", version="1", priority=7)])
    ns = [disabled, v2_only, versioned]
    assert select_runtime(ModelRequest("sklearn"), ns, []).name == "versioned"
    assert select_runtime(ModelRequest("sklearn", protocol="v2"), ns, CLUSTER).name == "v2only"
    assert select_runtime(ModelRequest("sklearn", format_version="1"), ns, []).name == "versioned"
    with pytest.raises(SelectionError, match=NO_RUNTIME):
        select_runtime(ModelRequest("sklearn", format_version="2"), ns, [])
    with pytest.raises(SelectionError, match=NO_RUNTIME):
        select_runtime(ModelRequest("sklearn", protocol="grpc-v2"), [disabled, v2_only], [])


def test_a_runtime_without_protocol_versions_supports_every_protocol() -> None:
    """KServe's IsProtocolVersionSupported: an empty protocolVersions list supports any protocol (the auditor's
    proba-noproto runtime, auto-selected and named, for v1 and v2); an InferenceService without
    protocolVersion still asks for v1, so a v2-only runtime is not chosen for it."""
    noproto = runtime("proba-noproto", [fmt("sklearn", version="1", priority=5)])
    v2_only = runtime("v2only", [fmt("sklearn", priority=9)], protocolVersions=["v2"])
    for protocol in (None, "v1", "v2", "grpc-v1", "grpc-v2"):
        chosen = select_runtime(ModelRequest("sklearn", protocol=protocol), [noproto], CLUSTER)
        assert chosen.name == "proba-noproto", protocol
        named = ModelRequest("sklearn", protocol=protocol, runtime="proba-noproto")
        assert select_runtime(named, [noproto], CLUSTER).name == "proba-noproto", protocol
    assert select_runtime(ModelRequest("sklearn"), [noproto, v2_only], []).name == "proba-noproto"
    assert select_runtime(ModelRequest("sklearn", protocol="v2"), [noproto, v2_only], []).name == "v2only"


def test_priority_ties_prefer_the_lowest_listed_protocol_then_name() -> None:
    """KServe sorts the runtime lists by GetProtocolVersionPriority (v1 < v2 < grpc-v1 < grpc-v2, no list
    last) before the priority sort, so an equal priority goes to the runtime listing the lower protocol."""
    a_none = runtime("a-none", [fmt("sklearn", priority=3)])
    b_v2 = runtime("b-v2", [fmt("sklearn", priority=3)], protocolVersions=["grpc-v2", "v2"])
    c_v1 = runtime("c-v1", [fmt("sklearn", priority=3)], protocolVersions=["v2", "v1"])
    d_v1 = runtime("d-v1", [fmt("sklearn", priority=3)], protocolVersions=["v1"])
    assert select_runtime(ModelRequest("sklearn"), [a_none, b_v2, d_v1, c_v1], []).name == "c-v1"
    assert select_runtime(ModelRequest("sklearn", protocol="v2"), [a_none, b_v2], []).name == "b-v2"
    assert select_runtime(ModelRequest("sklearn", protocol="grpc-v1"), [a_none, b_v2], []).name == "a-none"


def test_runtime_table_says_all_protocols_for_a_runtime_listing_none() -> None:
    from serving.commands.runtime_table import render

    noproto = runtime("proba-noproto", [fmt("sklearn", version="1", priority=5)])
    rows = render([noproto.model_dump(mode="json", by_alias=True, exclude_none=True)], "table").splitlines()
    assert rows[0].split()[4] == "PROTOCOLS" and rows[1].split()[4] == "all", rows


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "No ServingRuntimes or ClusterServingRuntimes with the name: nope"),
        ("off", "Specified runtime off is disabled"),
        ("xgb-only", "Specified runtime xgb-only does not support specified framework/version"),
        ("v2only", "Specified runtime v2only does not support specified protocol version"),
    ],
)
def test_explicit_runtime_errors_use_kserves_messages(name: str, message: str) -> None:
    ns = [
        runtime("off", [fmt("sklearn")], disabled=True),
        runtime("xgb-only", [fmt("xgboost")]),
        runtime("v2only", [fmt("sklearn")], protocolVersions=["v2"]),
    ]
    with pytest.raises(SelectionError) as failure:
        select_runtime(ModelRequest("sklearn", runtime=name), ns, CLUSTER)
    assert failure.value.message == message


def test_custom_module_class_runtime_and_templated_args() -> None:
    shared = runtime(
        "my-ranker",
        [fmt("sklearn", auto=False)],
        containers=[
            {
                "name": "kserve-container",
                "image": "registry.example/ranker:1",
                "args": [
                    "--model_name={{.Name}}",
                    "--model_dir",
                    "/mnt/models",
                    "--runtime",
                    "ranker.model:Ranker",
                    "--max-batch-size",
                    "16",
                    "--model-version",
                    "{{.Name}}-v1",
                ],
            }
        ],
    )
    chosen = select_runtime(ModelRequest("sklearn", runtime="my-ranker"), [shared], CLUSTER)
    assert runtime_implementation(chosen, "sklearn") == "ranker.model:Ranker"
    assert serve_flags(chosen, "iris") == ["--max-batch-size", "16", "--model-version", "iris-v1"]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"supportedModelFormats": [fmt("sklearn")], "multiModel": True}, "spec.multiModel"),
        ({"supportedModelFormats": []}, "spec.supportedModelFormats"),
        ({"supportedModelFormats": [fmt("sklearn", priority=0)]}, "spec.supportedModelFormats.0.priority"),
        ({"supportedModelFormats": [fmt("sklearn")], "protocolVersions": ["v9"]}, "spec.protocolVersions.0"),
        ({"supportedModelFormats": [fmt("sklearn")], "replicaz": 1}, "spec.replicaz"),
    ],
)
def test_bad_documents_name_the_field(spec: dict, path: str) -> None:
    with pytest.raises(RuntimeSpecError) as failure:
        parse_runtime(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ServingRuntime",
                "metadata": {"name": "bad"},
                "spec": spec,
            }
        )
    assert path in failure.value.message, failure.value.message
    assert failure.value.status_code == 400
    if path == "spec.multiModel":
        assert "not supported" in failure.value.message


@pytest.mark.parametrize(
    ("format_name", "extra_args", "flags"),
    [
        ("sklearn", [], []),
        # xgbserver's --nthread (threads per prediction) is our OpenMP pool size
        ("xgboost", ["--nthread=1"], ["--native-threads", "1"]),
    ],
)
def test_kserve_documented_runtime_parses(format_name: str, extra_args: list[str], flags: list[str]) -> None:
    """KServe's own stock ClusterServingRuntimes (config/runtimes), taken as written."""
    server = {"sklearn": "sklearnserver", "xgboost": "xgbserver"}[format_name]
    doc = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": f"kserve-{server}"},
        "spec": {
            "annotations": {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [
                {"name": format_name, "version": "1", "autoSelect": True, "priority": 1}
            ],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": f"kserve/{server}:latest",
                    "args": [
                        "--model_name={{.Name}}",
                        "--model_dir=/mnt/models",
                        "--http_port=8080",
                        *extra_args,
                    ],
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
        },
    }
    parsed = parse_runtime(doc)
    assert parsed.cluster_scoped and parsed.namespace is None
    assert runtime_implementation(parsed, format_name) == format_name and serve_flags(parsed, "x") == flags


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["ServingRuntime", "ClusterServingRuntime"])
def test_runtime_crds_are_committed_valid_and_accept_kserve_documents(kind: str) -> None:
    import jsonschema
    import kubernetes_validate

    from serving.runtime_crd import FILES, runtime_crd, runtime_crd_yaml

    for folder in ("charts/serving/crds", "charts/kustomize"):
        path = ROOT / folder / FILES[kind]
        assert path.read_text() == runtime_crd_yaml(kind), (
            f"{path} drifted: python -m serving.runtime_crd {folder}"
        )
    document = runtime_crd(kind)
    kubernetes_validate.validate(document, "1.30", strict=True)
    assert document["spec"]["scope"] == ("Cluster" if kind == "ClusterServingRuntime" else "Namespaced")
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for builtin in BUILTIN_RUNTIMES:
        jsonschema.validate(builtin.model_dump(mode="json", by_alias=True, exclude_none=True), schema)
    bad = {
        "apiVersion": "serving.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": {"supportedModelFormats": [{"name": "sklearn", "priority": 0}]},
    }
    with pytest.raises(jsonschema.ValidationError, match="minimum"):
        jsonschema.validate(bad, schema)


SHARED_RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: echo-runtime
spec:
  supportedModelFormats:
  - name: sklearn
    autoSelect: false
  protocolVersions: [v1, v2]
  containers:
  - name: kserve-container
    image: registry.example/echo:1
    args: ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--runtime=tests.runtimes_for_tests:EchoRuntime"]
"""


def test_serving_up_selects_runtimes_and_refuses_bad_ones(tmp_path: Any) -> None:
    """Through a real `serving up`: a shared ServingRuntime pointing at a `module:Class` runtime serves an
    InferenceService that names it; `runtime: kserve-sklearnserver` works as in KServe; an unknown or
    conflicting runtime is refused at apply with the field path (the running service undisturbed); a model no
    runtime supports stays not ready with KServe's message; `serving get servingruntimes` lists them."""
    import httpx

    from tests.support import train_iris_sklearn, wait_until
    from tests.up_support import apply_text, cli, get_isvc, isvc_yaml, predict, serving_up, wait_for_traffic

    model = train_iris_sklearn(tmp_path / "models" / "iris").parent
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        named = isvc_yaml("echo", model).replace(
            "      modelFormat:", "      runtime: echo-runtime\n      modelFormat:"
        )
        apply_text(server, state, SHARED_RUNTIME + "---" + named, tmp_path, "echo.yaml")
        builtin = isvc_yaml("iris", model).replace(
            "      modelFormat:", "      runtime: kserve-sklearnserver\n      modelFormat:"
        )
        apply_text(server, state, builtin, tmp_path, "iris.yaml")
        for name in ("echo", "iris"):
            wait_for_traffic(server, state, name, lambda t: sorted(t.values()) == [100])
        echoed = client.post(
            "/v2/models/echo/infer",
            json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2.5]}]},
        )
        assert echoed.status_code == 200, echoed.text
        assert echoed.json()["outputs"][0]["data"] == [1.5, 2.5], (
            "the ServingRuntime's module:Class served it"
        )
        assert predict(client, "iris").json()["predictions"][0] in (0, 1, 2)

        for runtime, message in (
            ("nope", "No ServingRuntimes or ClusterServingRuntimes with the name: nope"),
            (
                "kserve-xgbserver",
                "Specified runtime kserve-xgbserver does not support specified framework/version",
            ),
        ):
            bad = isvc_yaml("iris", model).replace(
                "      modelFormat:", f"      runtime: {runtime}\n      modelFormat:"
            )
            (tmp_path / "bad.yaml").write_text(bad)
            refused = cli(server, state, "apply", "-f", str(tmp_path / "bad.yaml"), check=False)
            assert refused.returncode != 0
            assert f"spec.predictor.model.runtime: {message}" in refused.stderr, refused.stderr
        assert predict(client, "iris").status_code == 200, "the refused apply left the running service alone"

        unsupported = isvc_yaml("v9", model).replace(
            "        name: sklearn", "        name: sklearn\n        version: '9'"
        )
        apply_text(server, state, unsupported, tmp_path, "v9.yaml")

        def failure() -> str:
            status = get_isvc(server, state, "v9").get("status", {})
            return (status.get("modelStatus", {}).get("lastFailureInfo") or {}).get("message", "")

        wait_until(failure, 30, what="v9 failure")
        assert "No runtime found to support specified framework/version" in failure()

        table = cli(server, state, "get", "servingruntimes").stdout
        assert (
            "echo-runtime" in table
            and "kserve-sklearnserver" in table
            and "tests.runtimes_for_tests:EchoRuntime" in table
        )
        one = json.loads(cli(server, state, "get", "sr/echo-runtime", "-o", "json").stdout)
        assert one["metadata"]["name"] == "echo-runtime"  # the object itself, as kubectl prints one
        named = cli(server, state, "get", "csr", "kserve-sklearnserver").stdout.splitlines()
        assert len(named) == 2 and named[1].startswith("kserve-sklearnserver ")
        missing = cli(server, state, "get", "sr", "nosuch", check=False)
        assert missing.returncode != 0 and "servingruntime 'nosuch' not found" in missing.stderr, missing
        listed = httpx.get(
            f"{server.url}/api/v1/servingruntimes",
            headers={"authorization": f"Bearer {(state / 'token').read_text().strip()}"},
        ).json()
        assert {i["metadata"]["name"] for i in listed["items"]} >= {"echo-runtime", "kserve-tritonserver"}
        again = cli(server, state, "apply", "-f", str(tmp_path / "echo.yaml")).stdout
        assert "servingruntime/echo-runtime unchanged" in again, again


@pytest.mark.parametrize("format_name", ["sklearn", "xgboost"])
def test_kserve_mlserver_by_name_serves_sklearn_and_xgboost_over_v2(format_name: str) -> None:
    """KServe's documented `runtime: kserve-mlserver` (with protocolVersion v2): our runtime for the format."""
    request = ModelRequest(format_name, runtime="kserve-mlserver", protocol="v2")
    chosen = select_runtime(request, [], CLUSTER)
    assert chosen.name == "kserve-mlserver" and chosen.cluster_scoped
    assert runtime_implementation(chosen, format_name) == format_name and serve_flags(chosen, "iris") == []
    assert select_runtime(ModelRequest(format_name, protocol="v2"), [], CLUSTER).name != "kserve-mlserver"
    with pytest.raises(SelectionError):  # MLServer speaks v2 only, as KServe's runtime declares
        select_runtime(ModelRequest(format_name, runtime="kserve-mlserver", protocol="v1"), [], CLUSTER)


def test_runtime_table_shows_what_runs_here_for_a_multi_format_runtime() -> None:
    """KServe's own kserve-mlserver lists lightgbm first; here it runs our sklearn and xgboost runtimes (the
    model's format picks one), a runtime listing only formats we do not serve runs nothing, and an explicit
    `--runtime` is shown as written."""
    from serving.commands.runtime_table import render

    mlserver = runtime(
        "kserve-mlserver",
        [fmt("lightgbm", "3"), fmt("sklearn", "1"), fmt("xgboost", "2"), fmt("mlflow", "2")],
        cluster=True,
        protocolVersions=["v2"],
    )
    lightgbm = runtime("lgb", [fmt("lightgbm")])
    custom = runtime("ranker", [fmt("sklearn")], containers=[{"args": ["--runtime", "ranker.model:Ranker"]}])
    docs = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in (mlserver, lightgbm, custom)]
    rows = [line.split() for line in render(docs, "table").splitlines()]
    assert rows[0][5] == "RUNTIME"
    assert {row[0]: row[5] for row in rows[1:]} == {
        "kserve-mlserver": "sklearn,xgboost",
        "lgb": "<none>",
        "ranker": "ranker.model:Ranker",
    }
