"""Spec errors a user can act on: the closest known field for a typo (at every level of the spec), and YAML
syntax errors that name the file, the document and the line."""

from __future__ import annotations

from typing import Any

import pytest

from serving.spec import SpecError, load_documents, parse

HEAD = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"


def isvc(predictor: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {"predictor": predictor},
        **top,
    }


SKLEARN = {"sklearn": {"storageUri": "/m"}}
TYPOS = [
    (
        isvc({"model": {"modelFormat": {"name": "sklearn"}, "storageURI": "/m"}}),
        "spec.predictor.model.storageURI",
        "storageUri",
    ),
    (
        isvc({"sklearn": {"storageUri": "/m", "protocolVersoin": "v2"}}),
        "spec.predictor.sklearn.protocolVersoin",
        "protocolVersion",
    ),
    (
        isvc({**SKLEARN, "canaryTraficPercent": 10}),
        "spec.predictor.canaryTraficPercent",
        "canaryTrafficPercent",
    ),
    (
        isvc({**SKLEARN, "batcher": {"maxBatchsize": 3}}),
        "spec.predictor.batcher.maxBatchsize",
        "maxBatchSize",
    ),
    (
        isvc({"sklearn": {"storageUri": "/m", "env": [{"name": "A", "valu": "b"}]}}),
        "spec.predictor.sklearn.env[0].valu",
        "value",
    ),
    ({**isvc(SKLEARN), "metadata": {"name": "x", "lables": {}}}, "metadata.lables", "labels"),
    (
        {
            **isvc(SKLEARN),
            "spec": {"predictor": SKLEARN, "transformer": {"containers": [{"name": "t", "imag": "i"}]}},
        },
        "spec.transformer.containers[0].imag",
        "image",
    ),
]


@pytest.mark.parametrize(("doc", "path", "meant"), TYPOS, ids=[t[1] for t in TYPOS])
def test_an_unknown_field_suggests_the_closest_known_one(doc: dict[str, Any], path: str, meant: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(doc)
    assert f"{path}: unknown field (not supported); did you mean {meant!r}?" in caught.value.message


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(SpecError) as caught:
        parse(isvc({**SKLEARN, "zzzz": 1}))
    assert caught.value.message == "spec.predictor.zzzz: unknown field (not supported)"


def test_a_yaml_syntax_error_names_the_file_the_document_and_the_line() -> None:
    text = (
        HEAD
        + "metadata: {name: a}\nspec: {predictor: {sklearn: {storageUri: /m}}}\n---\n"
        + HEAD
        + "metadata:\n  name: b: c\n"
    )
    with pytest.raises(SpecError) as caught:
        load_documents(text, "isvc.yaml")
    message = caught.value.message
    assert message.startswith("isvc.yaml: document 2 is not valid YAML: mapping values are not allowed here")
    assert "'isvc.yaml', line 9, column 10" in message and "<unicode string>" not in message


def test_a_field_error_names_the_file_and_document() -> None:
    text = (
        HEAD
        + "metadata: {name: a}\nspec: {predictor: {sklearn: {storageUri: /m}}}\n---\n"
        + HEAD
        + "metadata: {name: b}\nspec: {predictor: {sklearn: {storageUri: /m}, minReplica: 1}}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_documents(text, "isvc.yaml")
    assert caught.value.message.startswith("isvc.yaml: document 2: spec.predictor.minReplica: unknown field")


@pytest.mark.parametrize("block", ["logger", "batcher"])
def test_a_component_block_written_on_spec_says_where_it_belongs(block: str) -> None:
    doc = isvc(SKLEARN)
    doc["spec"][block] = {}
    with pytest.raises(SpecError) as caught:
        parse(doc)
    assert caught.value.message == (
        f"spec.{block}: belongs on a component: spec.predictor.{block} (or spec.transformer.{block}), where KServe "
        "reads it"
    )


def test_kserves_collocated_transformer_is_refused_saying_what_to_write() -> None:
    doc = isvc(
        {
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "/m"},
            "containers": [{"name": "transformer-container", "image": "kserve/image-transformer:latest"}],
        }
    )
    with pytest.raises(SpecError) as caught:
        parse(doc)
    assert caught.value.message.startswith(
        "spec.predictor.containers[0]: KServe's collocated transformer (transformer-container beside a model"
    )
    assert "serving.dev/placement: in-process" in caught.value.message


def test_an_own_runtime_class_serves_any_format_name_others_are_refused_naming_both_ways() -> None:
    """`runtime: module:Class` selects no runtime: the format is its author's to name (audit newuser7 L6)."""

    def doc(model: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "odd"},
            "spec": {"predictor": {"model": {"storageUri": "/m", **model}}},
        }

    own = parse(doc({"modelFormat": {"name": "Custom", "version": "2"}, "runtime": "pkg.mod:Cls"}))
    model = own.spec.predictor.normalised_model()
    assert (model.model_format.name, model.model_format.version, model.runtime) == (
        "custom",
        "2",
        "pkg.mod:Cls",
    )
    with pytest.raises(SpecError) as refused:
        parse(doc({"modelFormat": {"name": "custom"}, "runtime": "kserve-sklearnserver"}))
    said = str(refused.value)
    assert "spec.predictor.model.modelFormat.name: model format 'custom' is not supported" in said
    assert "runtime: module:Class" in said
    assert (
        parse(doc({"modelFormat": {"name": "scikit-learn"}})).spec.predictor.model.model_format.name
        == "sklearn"
    )


def test_grpc_v1_is_refused_saying_which_protocols_are_served() -> None:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "a"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": "/m",
                    "protocolVersion": "grpc-v1",
                }
            }
        },
    }
    with pytest.raises(
        SpecError, match=r"protocolVersion: 'grpc-v1' \(V1 over gRPC\) is not served here; use v1"
    ):
        parse(doc)
