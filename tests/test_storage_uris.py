"""KServe's `storageUris`: several URIs into one model folder, each at its `mountPath` under /mnt/models.

End to end on this machine: a real S3 server on loopback (moto, IAM on: the predictor's env gives the keys), a
local folder and a local file, `serving up` in-process, a prediction through the router, the folder the model
server was given, and that folder gone with the service. Also the refusals (field paths named), the one-item
form being `storageUri` itself, `serving storage pull --also`, and what `serving render` gives the
storage-initializer.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from serving.revision import Revision
from serving.spec import SpecError, parse
from serving.storage import leases
from tests.inprocess import run_cli
from tests.support import train_iris_sklearn, wait_until
from tests.test_storage_s3 import S3  # the `s3` fixture: tests/conftest.py
from tests.up_support import apply_text, cli, get_isvc, predict, serving_up, wait_for_traffic


def _isvc(predictor: dict) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "multi"},
        "spec": {"predictor": predictor},
    }


SKLEARN = {"modelFormat": {"name": "sklearn"}}


def test_one_item_into_mnt_models_is_storage_uri_itself() -> None:
    """KServe's docs: `storageUris: [{uri}]` and `storageUri` are the same; so the same revision here."""
    written = [
        {"model": SKLEARN, "storageUris": [{"uri": "s3://b/iris"}]},
        {"model": {**SKLEARN, "storageUris": [{"uri": "s3://b/iris", "mountPath": "/mnt/models"}]}},
        {"model": {**SKLEARN, "storageUri": "s3://b/iris"}},
    ]
    revisions = {Revision.from_spec(parse(_isvc(p))).name for p in written}
    assert len(revisions) == 1
    revision = Revision.from_spec(parse(_isvc(written[0])))
    assert revision.storage_uri == "s3://b/iris" and revision.storage_uris == ()


def test_items_keep_their_places_under_mnt_models() -> None:
    predictor = {
        "sklearn": {},
        "storageUris": [
            {"uri": "s3://b/iris"},
            {"uri": "gs://b/pre", "mountPath": "/mnt/models/preprocessing/"},
            {"uri": "https://h/vocab.txt", "path": "/mnt/models/vocab"},  # `path`: the docs' older name
        ],
    }
    revision = Revision.from_spec(parse(_isvc(predictor)))
    assert revision.storage_uri is None
    assert [(i.uri, i.subpath) for i in revision.storage_uris] == [
        ("s3://b/iris", ""),
        ("gs://b/pre", "preprocessing"),
        ("https://h/vocab.txt", "vocab"),
    ]


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        (
            {"model": {**SKLEARN, "storageUri": "s3://b/x"}, "storageUris": [{"uri": "s3://b/y"}]},
            "storageUri and storageUris are both set",
        ),
        (
            {"model": {**SKLEARN, "storageUri": "s3://b/x", "storageUris": [{"uri": "s3://b/y"}]}},
            "spec.predictor.model: storageUri and storageUris are both set",
        ),
        ({"model": SKLEARN, "storageUris": []}, "storageUris: empty"),
        (
            {"model": SKLEARN, "storageUris": [{"uri": "s3://b/y", "mountPath": "/data/y"}]},
            "spec.predictor.storageUris[0].mountPath: mountPath '/data/y': outside /mnt/models",
        ),
        (
            {"model": SKLEARN, "storageUris": [{"uri": "s3://b/y", "mountPath": "models/y"}]},
            "must be an absolute path",
        ),
        (
            {"model": SKLEARN, "storageUris": [{"uri": "s3://b/y", "mountPath": "/mnt/models/../etc"}]},
            "must not contain '..'",
        ),
        (
            {"model": SKLEARN, "storageUris": [{"uri": "ftp://b/y"}]},
            "spec.predictor.storageUris[0].uri: storage scheme 'ftp://' is unknown",
        ),
        (
            {
                "model": SKLEARN,
                "storageUris": [{"uri": "s3://b/y", "mountPath": "/mnt/models/a", "path": "/mnt/models/b"}],
            },
            "path '/mnt/models/b' and mountPath '/mnt/models/a' disagree",
        ),
        (
            {
                "containers": [{"name": "kserve-container", "image": "me/mine"}],
                "storageUris": [{"uri": "s3://b/y"}],
            },
            "storageUris beside a custom predictor container: not served here",
        ),
    ],
)
def test_refusals_name_the_field(predictor: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(_isvc(predictor))
    assert message in str(caught.value)


def test_a_transformers_storage_uris_are_refused_saying_why() -> None:
    document = _isvc({"model": {**SKLEARN, "storageUri": "s3://b/iris"}})
    document["spec"]["transformer"] = {
        "containers": [{"name": "kserve-container", "image": "me/t"}],
        "storageUris": [{"uri": "s3://b/t"}],
    }
    with pytest.raises(SpecError, match=r"^spec\.transformer\.storageUris: KServe's, not served here"):
        parse(document)


def test_storage_pull_also(tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "trained" / "iris").parent
    extra = tmp_path / "pre"
    extra.mkdir()
    (extra / "labels.json").write_text("[]")
    dest = tmp_path / "mnt" / "models"
    cache = ("--cache-dir", str(tmp_path / "cache"))
    done = run_cli("storage", "pull", str(model), str(dest), "--also", str(extra), str(dest / "pre"), *cache)
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "model.joblib",
        "pre/labels.json",
    ]
    assert done.stdout.count("pulled ") == 2


def test_render_gives_the_initializer_every_pair(tmp_path: Path) -> None:
    path = tmp_path / "multi.yaml"
    predictor = {
        "model": SKLEARN,
        "storageUris": [
            {"uri": "s3://b/iris"},
            {"uri": "pvc://claim-a/pre", "mountPath": "/mnt/models/pre"},
            {"uri": "pvc://claim-b/vocab", "mountPath": "/mnt/models/vocab"},
        ],
    }
    path.write_text(yaml.safe_dump(_isvc(predictor)))
    rendered = run_cli("render", "-f", str(path))
    assert rendered.returncode == 0, rendered.stderr
    deployment = next(d for d in yaml.safe_load_all(rendered.stdout) if d and d.get("kind") == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (init,) = [c for c in pod["initContainers"] if c["name"] == "storage-initializer"]
    args = init["args"]
    assert args[:4] == ["storage", "pull", "s3://b/iris", "/mnt/models"]
    assert args[args.index("--also") :][:6] == [
        "--also",
        "pvc://claim-a/pre",
        "/mnt/models/pre",
        "--also",
        "pvc://claim-b/vocab",
        "/mnt/models/vocab",
    ]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"claim-a", "claim-b"}
    assert {m["mountPath"] for m in init["volumeMounts"]} >= {"/mnt/pvc/claim-a", "/mnt/pvc/claim-b"}


def _held_under(cache: Path) -> list[str]:
    return [path for path in leases._held if path.startswith(str(cache))]


def test_up_serves_a_model_built_from_s3_a_folder_and_a_file(s3: S3, tmp_path: Path) -> None:
    pre = tmp_path / "preprocessing"
    pre.mkdir()
    (pre / "scaler.json").write_text(json.dumps({"mean": [5.8, 3.0, 3.7, 1.2]}))
    vocab = tmp_path / "elsewhere" / "vocab.txt"
    vocab.parent.mkdir()
    vocab.write_text("setosa\n")
    (vocab.parent / "unrelated.bin").write_bytes(b"\0" * 16)  # beside the file: not fetched with it
    env = [{"name": k, "value": v} for k, v in s3.env().items()]
    predictor = {
        "model": {**SKLEARN, "env": env},
        "storageUris": [
            {"uri": "s3://models/iris"},
            {"uri": str(pre), "mountPath": "/mnt/models/preprocessing"},
            {"uri": f"file://{vocab}", "path": "/mnt/models/vocab"},
        ],
    }
    state, cache = tmp_path / "state", tmp_path / "cache"
    with serving_up(state, extra=("--cache-dir", str(cache))) as server, server.client() as client:
        apply_text(server, state, yaml.safe_dump(_isvc(predictor)), tmp_path, "multi.yaml")
        wait_for_traffic(server, state, "multi", lambda t: sorted(t.values()) == [100])
        response = predict(client, "multi")
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0] in (0, 1, 2)

        (built,) = (cache / "composed").iterdir()
        assert sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()) == [
            "extra/labels.txt",  # from the bucket, as a single storageUri brings it
            "model.joblib",
            "preprocessing/scaler.json",
            "vocab/vocab.txt",
        ]
        (pre / "scaler.json").write_text("edited after the fetch")
        assert json.loads((built / "preprocessing" / "scaler.json").read_text())["mean"][0] == 5.8
        assert not _held_under(cache), "the bucket's folder is copied in and its lease given back"

        cli(server, state, "delete", "multi")
        wait_until(lambda: not built.exists(), 30, what="the built folder removed with its service")


def test_an_item_that_cannot_be_fetched_fails_the_revision_naming_it(tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "trained" / "iris").parent
    missing = tmp_path / "not-there"
    predictor = {
        "model": SKLEARN,
        "storageUris": [{"uri": str(model)}, {"uri": str(missing), "mountPath": "/mnt/models/extra"}],
    }
    state, cache = tmp_path / "state", tmp_path / "cache"
    with serving_up(state, extra=("--cache-dir", str(cache))) as server:
        apply_text(server, state, yaml.safe_dump(_isvc(predictor)), tmp_path, "multi.yaml")

        def failure() -> str:
            info = get_isvc(server, state, "multi").get("status", {}).get("modelStatus", {})
            return str((info.get("lastFailureInfo") or {}).get("message", ""))

        wait_until(failure, 30, what="the revision's failure")
        assert failure().startswith("spec.predictor.model.storageUris: "), failure()
        assert str(missing) in failure()
        assert not any((cache / "composed").glob("*")), "nothing of a failed build is left"


def test_relative_item_uris_are_next_to_the_yaml_and_missing_ones_warned(tmp_path: Path) -> None:
    from serving.commands.apply_outcome import missing_local_paths
    from serving.control.documents import read_documents

    (tmp_path / "iris").mkdir()
    path = tmp_path / "multi.yaml"
    predictor = {
        "model": SKLEARN,
        "storageUris": [{"uri": "iris"}, {"uri": "file://pre", "mountPath": "/mnt/models/pre"}],
    }
    path.write_text(yaml.safe_dump(_isvc(predictor)))
    (doc,) = read_documents(path)
    items = doc["spec"]["predictor"]["storageUris"]
    assert [i["uri"] for i in items] == [str(tmp_path / "iris"), f"file://{tmp_path / 'pre'}"]
    assert missing_local_paths(doc) == [str(tmp_path / "pre")]


def test_render_warns_of_a_local_item(tmp_path: Path) -> None:
    path = tmp_path / "multi.yaml"
    predictor = {
        "model": SKLEARN,
        "storageUris": [{"uri": "s3://b/iris"}, {"uri": "/data/pre", "path": "/mnt/models/p"}],
    }
    path.write_text(yaml.safe_dump(_isvc(predictor)))
    rendered = run_cli("render", "-f", str(path))
    assert rendered.returncode == 0, rendered.stderr
    assert (
        "spec.predictor.model.storageUris[1].uri: '/data/pre' is a local path; the cluster cannot read it"
        in (rendered.stderr)
    )


def test_the_only_model_below_mnt_models_is_served_under_the_service_name(tmp_path: Path) -> None:
    """KServe's storageUris page puts the model at /mnt/models/model beside /mnt/models/preprocessing: the
    service's name (serving up's --name) is the model's, not the folder's; several sub-folder models stay a
    repository of their folders' names."""
    from serving.repository import discover
    from tests.inprocess import serving_inprocess

    root = tmp_path / "mnt-models"
    train_iris_sklearn(root / "model")
    (root / "preprocessing").mkdir()
    (root / "preprocessing" / "vocab.txt").write_text("setosa\n")
    (only,) = discover(root, name="preprocessing-pipeline")
    assert (only.name, only.model_dir) == ("preprocessing-pipeline", (root / "model").resolve())
    with serving_inprocess(["serve", "--model-dir", str(root), "--name", "preprocessing-pipeline"]) as server:
        answer = httpx.post(
            f"{server.url}/v1/models/preprocessing-pipeline:predict",
            json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
        )
    assert answer.status_code == 200, answer.text
    train_iris_sklearn(root / "other")
    assert sorted(m.name for m in discover(root, name="svc")) == ["model", "other"]
