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
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_names_its_field(name: str) -> None:
    body, expected = MISTAKES[name]
    with pytest.raises(SpecError) as caught:
        load_documents(HEAD + body)
    assert expected in caught.value.message, caught.value.message
    assert caught.value.status_code == 400
