"""InferenceService YAML as KServe documents it is accepted; each mistake is refused with its field path."""

from __future__ import annotations

import pytest

from serving.revision import Revision
from serving.spec import SpecError, load_documents

HEAD = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: iris\n"

KSERVE_DOCS = {
    "model-format": """
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://kfserving-examples/models/sklearn/1.0/model
""",
    "v2-runtime-resources": """
spec:
  predictor:
    minReplicas: 0
    maxReplicas: 3
    scaleMetric: cpu
    scaleTarget: 60
    serviceAccountName: sa
    model:
      modelFormat: {name: sklearn, version: "1"}
      protocolVersion: v2
      runtime: kserve-sklearnserver
      storageUri: s3://bucket/model
      env:
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}
      resources:
        requests: {cpu: 100m, memory: 256Mi}
        limits: {cpu: "1", memory: 1Gi}
""",
    "shorthand-canary-batcher-logger": """
spec:
  predictor:
    canaryTrafficPercent: 10
    timeout: 30
    containerConcurrency: 8
    batcher: {maxBatchSize: 32, maxLatency: 500}
    logger: {mode: all, url: http://message-dumper.default/}
    xgboost:
      storageUri: gs://kfserving-examples/models/xgboost/iris
""",
    "custom-transformer": """
spec:
  transformer:
    containers:
      - name: kserve-container
        image: kserve/image-transformer:latest
        args: [--model_name, iris, --protocol, v2]
        env: [{name: STORAGE_URI, value: gs://x}]
  predictor:
    onnx:
      storageUri: gs://kfserving-examples/onnx/style
""",
    # KServe's sklearn gRPC example (docs: frameworks/sklearn): the container port named h2c
    "grpc-v2-ports": """
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      protocolVersion: grpc-v2
      runtime: kserve-sklearnserver
      storageUri: gs://kfserving-examples/models/sklearn/1.0/model
      ports:
        - name: h2c
          protocol: TCP
          containerPort: 8081
""",
    # KServe's pod and container overrides (PodSpec and corev1.Container are inlined in its spec)
    "pod-and-container-fields": """
spec:
  predictor:
    serviceAccount: sa
    securityContext: {runAsUser: 1000}
    volumes: [{name: extra, emptyDir: {}}]
    initContainers: [{name: warm, image: busybox, command: [sh, -c, echo hi]}]
    hostNetwork: false
    dnsPolicy: ClusterFirst
    terminationGracePeriodSeconds: 60
    sklearn:
      storageUri: gs://kfserving-examples/models/sklearn/1.0/model
      imagePullPolicy: Always
      readinessProbe: {httpGet: {path: /v1/models/iris}}
      livenessProbe: {httpGet: {path: /v1/models/iris}}
      startupProbe: {tcpSocket: {port: 8080}, failureThreshold: 30}
      volumeMounts: [{name: extra, mountPath: /extra}]
      securityContext: {allowPrivilegeEscalation: false}
      lifecycle: {preStop: {exec: {command: [sleep, "5"]}}}
      terminationMessagePath: /dev/termination-log
      terminationMessagePolicy: FallbackToLogsOnError
""",
}


@pytest.mark.parametrize("name", sorted(KSERVE_DOCS))
def test_kserve_documented_yaml_is_accepted(name: str) -> None:
    (isvc,) = load_documents(HEAD + KSERVE_DOCS[name])
    assert isvc.key == ("default", "iris")
    assert Revision.from_spec(isvc).model_format in ("sklearn", "xgboost", "onnx")


def test_several_documents_in_one_file() -> None:
    text = (
        HEAD
        + KSERVE_DOCS["model-format"]
        + "---\n"
        + HEAD.replace("iris", "other")
        + KSERVE_DOCS["model-format"]
    )
    assert [i.metadata.name for i in load_documents(text)] == ["iris", "other"]


MISTAKES = {
    "missing predictor": ("spec: {}\n", "spec.predictor: Field required"),
    "two model formats": (
        "spec:\n  predictor:\n    sklearn: {storageUri: ./m}\n    xgboost: {storageUri: ./m}\n",
        "spec.predictor: give exactly one of model, sklearn, xgboost, onnx",
    ),
    "bad storageUri": (
        "spec:\n  predictor:\n    sklearn: {storageUri: 'ftp://h/m'}\n",
        "spec.predictor.sklearn.storageUri",
    ),
    "empty storageUri": (
        "spec:\n  predictor:\n    sklearn: {storageUri: ''}\n",
        "spec.predictor.sklearn.storageUri",
    ),
    "negative replicas": (
        "spec:\n  predictor:\n    minReplicas: -1\n    sklearn: {storageUri: ./m}\n",
        "spec.predictor.minReplicas",
    ),
    "canary over 100": (
        "spec:\n  predictor:\n    canaryTrafficPercent: 150\n    sklearn: {storageUri: ./m}\n",
        "spec.predictor.canaryTrafficPercent",
    ),
    "unknown field": (
        "spec:\n  predictor:\n    sklearn: {storageUri: ./m, colour: red}\n",
        "spec.predictor.sklearn.colour: unknown field",
    ),
    "unsupported format": (
        "spec:\n  predictor:\n    tensorflow: {storageUri: ./m}\n",
        "spec.predictor.tensorflow",
    ),
    "explainer": ("spec:\n  predictor:\n    sklearn: {storageUri: ./m}\n  explainer: {}\n", "spec.explainer"),
    "max below min": (
        "spec:\n  predictor:\n    minReplicas: 3\n    maxReplicas: 2\n    sklearn: {storageUri: ./m}\n",
        "maxReplicas 2 is below minReplicas 3",
    ),
    "multi-node": (
        "spec:\n  predictor:\n    workerSpec: {pipelineParallelSize: 2}\n    sklearn: {storageUri: ./m}\n",
        "spec.predictor.workerSpec: not supported: multi-node serving",
    ),
    "a volume named as ours": (
        "spec:\n  predictor:\n    volumes: [{name: model, emptyDir: {}}]\n    sklearn: {storageUri: ./m}\n",
        "spec.predictor.volumes: volume 'model' (item 0): the pod has a volume of that name already",
    ),
    "two service accounts": (
        "spec:\n  predictor:\n    serviceAccount: a\n    serviceAccountName: b\n    sklearn: {storageUri: ./m}\n",
        "serviceAccount 'a' and serviceAccountName 'b' disagree",
    ),
    "a bad policy": (
        "spec:\n  predictor:\n    sklearn: {storageUri: ./m, imagePullPolicy: Sometimes}\n",
        "spec.predictor.sklearn.imagePullPolicy",
    ),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_names_its_field(name: str) -> None:
    body, expected = MISTAKES[name]
    with pytest.raises(SpecError) as caught:
        load_documents(HEAD + body)
    assert expected in caught.value.message, caught.value.message
    assert caught.value.status_code == 400


def test_the_deprecated_service_account_is_the_service_account_name() -> None:
    (isvc,) = load_documents(HEAD + KSERVE_DOCS["pod-and-container-fields"])
    assert isvc.spec.predictor.service_account_name == "sa"
    (spelt,) = load_documents(
        HEAD + KSERVE_DOCS["pod-and-container-fields"].replace("serviceAccount:", "serviceAccountName:")
    )
    assert Revision.from_spec(isvc).name == Revision.from_spec(spelt).name  # one field, one revision


def test_init_containers_are_not_mistaken_for_containers() -> None:
    """It was refused as `unknown field (not supported); did you mean 'containers'?`."""
    (isvc,) = load_documents(HEAD + KSERVE_DOCS["pod-and-container-fields"])
    assert isvc.spec.predictor.init_containers[0]["name"] == "warm" and not isvc.spec.predictor.containers


def test_kubectl_get_output_is_accepted() -> None:
    """`kubectl get isvc NAME -o yaml` of a KServe service: server-managed metadata (KServe's finalizer too)."""
    text = HEAD + KSERVE_DOCS["model-format"]
    text = text.replace(
        "  name: iris\n",
        "  name: iris\n  finalizers: [inferenceservice.finalizers]\n  generation: 2\n  resourceVersion: '7'\n"
        "  uid: 3b0e\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  selfLink: /apis/x\n  managedFields: []\n",
    )
    (isvc,) = load_documents(text + "status: {url: http://iris.default.example.com}\n")
    assert isvc.metadata.name == "iris"


def test_a_kubernetes_list_is_read_item_by_item() -> None:
    """`kind: List` (kubectl get -o yaml of several objects; kubectl apply takes it), and our own `get -o yaml`."""
    item = (HEAD + KSERVE_DOCS["model-format"]).replace("\n", "\n    ")
    text = f"apiVersion: v1\nkind: List\nitems:\n  - {item}\n"
    assert [i.metadata.name for i in load_documents(text)] == ["iris"]
    two = text + f"  - {item.replace('name: iris', 'name: other')}\n"
    assert [i.metadata.name for i in load_documents(two)] == ["iris", "other"]
    assert [i.metadata.name for i in load_documents(two.replace("apiVersion: v1\nkind: List\n", ""))] == [
        "iris",
        "other",
    ]
    with pytest.raises(SpecError) as caught:
        load_documents(two.replace("name: other", "name: Other"), "list.yaml")
    assert caught.value.message.startswith("list.yaml: document 1, items[1]: metadata.name")


def test_grpc_v2_is_warned_where_serving_up_routes_no_grpc() -> None:
    """KServe's gRPC example applied to a `serving up` without --grpc-port: its gRPC is not routed (REST is)."""
    (isvc,) = load_documents(HEAD + KSERVE_DOCS["grpc-v2-ports"])
    message = (
        "spec.predictor.model.protocolVersion: grpc-v2: gRPC is served by the router only with serving up "
        "--grpc-port"
    )
    assert any(w.startswith(message) for w in isvc.warnings(grpc_routed=False))
    assert not any(w.startswith(message) for w in isvc.warnings(grpc_routed=True))
    assert not any(w.startswith(message) for w in isvc.warnings())  # the server's routing unknown: not said
    (shorthand,) = load_documents(
        HEAD + "spec: {predictor: {sklearn: {protocolVersion: grpc-v2, storageUri: /m}}}"
    )
    assert any(
        w.startswith("spec.predictor.sklearn.protocolVersion: grpc-v2")
        for w in shorthand.warnings(grpc_routed=False)
    )
    (v2,) = load_documents(HEAD + KSERVE_DOCS["model-format"])
    assert not any("grpc" in w for w in v2.warnings(grpc_routed=False))
