"""Kubernetes objects beside InferenceServices (README's credentials example: an InferenceService, then a `v1`
Secret; a ServiceAccount; a ConfigMap): a `v1` Secret or ServiceAccount is kept by `serving apply` / `up` /
`delete` (stored for a model's KServe `storage:` and its service account's credentials, see
tests/test_storage_spec*.py and tests/test_account_credentials.py), the others are skipped with one warning line
naming them, and passed through by `serving render` / `convert`, whose storage-initializer then takes its
credentials from the Secrets of the predictor's ServiceAccount in the same files, as the operator does."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.commands.render import render
from serving.control.documents import read_documents
from serving.control.kubernetes.documents import read_converted
from serving.control.kubernetes.render import RenderSettings
from serving.errors import ServingError
from tests.support import train_iris_sklearn
from tests.up_support import cli, get_isvc, serving_up

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: readme-sa}
spec:
  predictor:
    serviceAccountName: models-sa
    model:
      modelFormat: {name: sklearn}
      storageUri: STORAGE
      env:
      - {name: AWS_ENDPOINT_URL, value: "http://minio.local:9000"}
"""
K8S = """
---
apiVersion: v1
kind: Secret
metadata:
  name: s3creds
  annotations:
    serving.kserve.io/s3-endpoint: minio.local:9000
    serving.kserve.io/s3-usehttps: "0"
stringData: {AWS_ACCESS_KEY_ID: "...", AWS_SECRET_ACCESS_KEY: "..."}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: models-sa}
secrets: [{name: s3creds}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""


def _file(tmp_path: Path, storage: str = "s3://models/iris") -> Path:
    path = tmp_path / "readme-sa.yaml"
    path.write_text(ISVC.replace("STORAGE", storage) + K8S)
    return path


def test_apply_reads_only_what_serving_up_runs_and_names_the_rest(tmp_path: Path) -> None:
    warnings: list[str] = []
    docs = read_documents(_file(tmp_path), warnings.append)
    assert [d["kind"] for d in docs] == ["InferenceService", "Secret", "ServiceAccount"]
    assert len(warnings) == 1, warnings
    assert "skipped ConfigMap/settings:" in warnings[0]


def test_a_misspelt_kind_of_our_groups_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(ISVC.replace("kind: InferenceService", "kind: InferenceServce").replace("STORAGE", "/m"))
    with pytest.raises(ServingError):
        read_documents(path, lambda _: None)


def test_render_and_convert_pass_them_through_and_use_the_accounts_secrets(tmp_path: Path) -> None:
    documents = read_converted([_file(tmp_path)])
    assert [d["kind"] for d in documents] == ["InferenceService", "Secret", "ServiceAccount", "ConfigMap"]
    assert documents[1]["apiVersion"] == "v1", "passed through as written"
    objects = render(documents, RenderSettings())
    assert {"Secret", "ServiceAccount", "ConfigMap"} <= {o["kind"] for o in objects}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"] if "valueFrom" in e}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "s3creds", "key": "AWS_ACCESS_KEY_ID"}
    assert {"name": "S3_ENDPOINT", "value": "minio.local:9000"} in init["env"]
    namespaced = read_converted([_file(tmp_path)], "ml")
    assert all(d["metadata"]["namespace"] == "ml" for d in namespaced)


def test_serving_apply_and_delete_take_readmes_example(tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "models" / "iris").parent
    path = _file(tmp_path, str(model))
    state = tmp_path / "state"
    with serving_up(state) as server:
        applied = cli(server, state, "apply", "-f", str(path))
        said = [line for line in applied.stdout.splitlines() if not line.startswith("  warning:")]
        assert said == [
            "inferenceservice/readme-sa created",
            "secret/s3creds created",
            "serviceaccount/models-sa created",
        ], applied.stdout
        assert applied.stderr.count("warning:") == 1 and "ConfigMap/settings" in applied.stderr
        assert "Secret/s3creds" not in applied.stderr and "ServiceAccount/" not in applied.stderr
        assert get_isvc(server, state, "readme-sa")["metadata"]["name"] == "readme-sa"
        deleted = cli(server, state, "delete", "-f", str(path))
        assert deleted.stdout.splitlines() == [
            "inferenceservice/readme-sa deleted",
            "secret/s3creds deleted",
            "serviceaccount/models-sa deleted",
        ], deleted.stdout
        assert "ConfigMap/settings" in deleted.stderr


def test_readmes_own_credentials_example_is_read_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("# ... or per predictor")
    block = readme[start : readme.index("```", start)]
    path = tmp_path / "example.yaml"
    path.write_text(block)
    warnings: list[str] = []
    kinds = ["InferenceService", "ServiceAccount", "Secret", "Secret"]
    assert [d["kind"] for d in read_documents(path, warnings.append)] == kinds
    assert warnings == []
    assert [d["kind"] for d in read_converted([path])] == kinds


LIST = """
apiVersion: v1
kind: List
items:
- apiVersion: serving.kserve.io/v1beta1
  kind: InferenceService
  metadata: {name: list-iris}
  spec:
    predictor:
      model: {modelFormat: {name: sklearn}, storageUri: s3://models/iris}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {a: b}
"""


def test_a_list_is_read_item_by_item_by_apply_up_delete_and_render(tmp_path: Path) -> None:
    """`kind: List` (what `kubectl get -o yaml` writes, and `kubectl apply` takes): its InferenceService was
    skipped by apply as `List/?` and passed through by render unrendered."""
    path = tmp_path / "list.yaml"
    path.write_text(LIST)
    warnings: list[str] = []
    docs = read_documents(path, warnings.append)  # serving apply, up -f and delete -f read files so
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("InferenceService", "list-iris")]
    assert len(warnings) == 1 and "skipped ConfigMap/settings" in warnings[0] and "List" not in warnings[0]
    objects = render(read_converted([path]), RenderSettings())
    kinds = [o["kind"] for o in objects]
    assert kinds == ["InferenceService", "Deployment", "Service", "ConfigMap"], kinds
    path.write_text(LIST.replace("name: list-iris", "name: List_Iris"))
    with pytest.raises(ServingError, match=r"list\.yaml: document 1, items\[0\]: metadata\.name"):
        read_documents(path, lambda _: None)


GRAPH = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: g-sklearn-iris}
spec: {predictor: {sklearn: {storageUri: s3://models/iris}}}
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: model-chainer}
spec:
  nodes:
    root:
      routerType: Sequence
      routes: [{serviceName: g-sklearn-iris}]
---
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata: {name: model1}
spec: {inferenceService: g-sklearn-iris, model: {storageUri: s3://m, framework: sklearn, memory: 256Mi}}
---
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterStorageContainer
metadata: {name: default}
spec: {container: {name: storage-initializer, image: kserve/storage-initializer:latest}}
"""


def test_kserve_kinds_not_run_here_are_skipped_one_line_each(tmp_path: Path) -> None:
    """InferenceGraph, TrainedModel, ClusterStorageContainer: each skipped with one line naming its kind (it was
    refused as `apiVersion ... not supported; ...kind: Input should be 'InferenceService'`, and the file's
    InferenceServices not applied); the rest of the file goes on, as with other Kubernetes kinds."""
    path = tmp_path / "graph.yaml"
    path.write_text(GRAPH)
    warnings: list[str] = []
    docs = read_documents(path, warnings.append)
    assert [d["metadata"]["name"] for d in docs] == ["g-sklearn-iris"]
    assert [w.split(" is not supported here")[0] for w in warnings] == [
        f"{path}: kind InferenceGraph (serving.kserve.io/v1alpha1)",
        f"{path}: kind TrainedModel (serving.kserve.io/v1alpha1)",
        f"{path}: kind ClusterStorageContainer (serving.kserve.io/v1alpha1)",
    ]
    assert "skipped InferenceGraph/model-chainer" in warnings[0]
    said: list[str] = []
    converted = read_converted([path], warn=said.append)  # render, convert, apply --backend kubernetes
    assert [d["kind"] for d in converted] == ["InferenceService"] and said == warnings
    path.write_text(GRAPH.replace("kind: InferenceGraph", "kind: InferenceGrph"))
    with pytest.raises(ServingError):  # a misspelt kind of KServe's group is still refused
        read_documents(path, lambda _: None)
