"""What `serving render` / `convert` (and `apply --backend kubernetes`, same code) say about a spec, and where
they refuse it as `serving apply` does: accepted means in effect on Kubernetes, or said by name.

- an apiVersion `serving apply` refuses is refused by render and convert with the same message (one check,
  shared); KFServing's old KFService / v1alpha2 / serving.kubeflow.org documents are named as such, with what to
  write instead (not passed through as Kubernetes objects of another group).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.control.documents import read_documents
from serving.control.kubernetes.documents import read_converted
from serving.errors import ServingError
from tests.inprocess import run_cli

PREDICTOR = "spec:\n  predictor:\n    sklearn:\n      storageUri: s3://m/iris\n"
OLD_KFSERVICE = """
apiVersion: serving.kubeflow.org/v1alpha1
kind: KFService
metadata: {name: kfs}
spec:
  default:
    sklearn: {modelUri: "gs://x"}
"""


def _isvc(api: str | None) -> str:
    head = f"apiVersion: {api}\n" if api is not None else ""
    return head + "kind: InferenceService\nmetadata: {name: api}\n" + PREDICTOR


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            _isvc("totally.wrong/v9"),
            "apiVersion: 'totally.wrong/v9' is not supported; use serving.kserve.io/v1beta1",
        ),
        (_isvc(None), "apiVersion: required; use serving.kserve.io/v1beta1"),
        (_isvc("serving.kubeflow.org/v1beta1"), "KFServing's API group, renamed serving.kserve.io"),
        (_isvc("serving.kserve.io/v1alpha2"), "is the old KFServing API"),
        (
            OLD_KFSERVICE,
            "(kind KFService) is the old KFServing API, not served here; write it as apiVersion: "
            "serving.kserve.io/v1beta1, kind: InferenceService",
        ),
    ],
    ids=["other-group", "missing", "kfserving-group", "v1alpha2", "kfservice"],
)
def test_render_and_convert_refuse_the_api_version_apply_refuses(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(text)
    with pytest.raises(ServingError) as applied:  # serving apply, up -f, delete -f
        read_documents(path, lambda _: None)
    with pytest.raises(ServingError) as converted:  # serving render, convert, apply --backend kubernetes
        read_converted([path])
    assert said in applied.value.message
    assert converted.value.message == applied.value.message
    for command in ("render", "convert"):
        result = run_cli(command, "-f", str(path))
        assert result.returncode != 0 and said in result.stderr and not result.stdout, result


def test_a_supported_api_version_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(_isvc("serving.kserve.io/v1beta1"))
    result = run_cli("render", "-f", str(path))
    assert result.returncode == 0 and "kind: Deployment" in result.stdout, result
