"""The spec's `logger` block reaches the component's command line; a sink URL we cannot serve is refused."""

from __future__ import annotations

import pytest
import yaml

from serving.control.process_args import predictor_args, transformer_args
from serving.errors import BadRequest
from serving.observability.options import ENV_LOGGER_DEFAULT_URL, ObservabilityOptions
from serving.revision import Revision
from serving.spec import parse

DOC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris, namespace: ml}
spec:
  predictor:
    LOGGER
    sklearn: {storageUri: file:///models/iris}
  transformer:
    logger: {mode: request, url: "file:///var/log/t.jsonl"}
    containers: [{name: t, args: [serving, transform, --transformer, identity]}]
"""


def revision(logger: str) -> Revision:
    return Revision.from_spec(parse(yaml.safe_load(DOC.replace("LOGGER", logger))))


def test_logger_block_becomes_flags_of_each_component() -> None:
    r = revision("logger: {mode: all, url: 'http://sink.ml/'}")
    args = predictor_args(r, "/m")
    assert (
        args[args.index("--logger-url") + 1] == "http://sink.ml/"
        and args[args.index("--logger-mode") + 1] == "all"
    )
    assert args[args.index("--revision") + 1] == r.name and args[args.index("--isvc-namespace") + 1] == "ml"
    t = transformer_args(r, "http://127.0.0.1:1")
    assert t[t.index("--component") + 1] == "transformer" and t[t.index("--logger-mode") + 1] == "request"
    assert "--logger-mode" not in predictor_args(
        revision("minReplicas: 1"), "/m"
    )  # no block: no payload logging


def test_block_without_url_uses_the_default_sink_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    isvc = parse(yaml.safe_load(DOC.replace("LOGGER", "logger: {mode: response}")))
    assert any("spec.predictor.logger: no url" in w for w in isvc.warnings())
    assert ObservabilityOptions(logger_mode="response").payload_logger_url() is None
    monkeypatch.setenv(ENV_LOGGER_DEFAULT_URL, "http://default-broker/")
    assert ObservabilityOptions(logger_mode="response").payload_logger_url() == "http://default-broker/"
    assert ObservabilityOptions().payload_logger_url() is None  # no block, no logging, default or not


def test_unsupported_sink_scheme_is_refused_with_its_path() -> None:
    with pytest.raises(BadRequest, match=r"spec\.predictor\.logger\.url.*s3://bucket"):
        revision("logger: {url: 's3://bucket/logs'}")


def test_choices_of_the_building_process_reach_the_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `serving up` exports (or the chart sets on the operator) lands in every component's flags."""
    for key, value in (
        (ENV_LOGGER_DEFAULT_URL, "http://default-broker/"),
        ("SERVING_OTEL", "1"),
        ("SERVING_LOG_FORMAT", "json"),
        ("SERVING_ACCESS_LOG_SAMPLE", "0.1"),
    ):
        monkeypatch.setenv(key, value)
    args = predictor_args(revision("logger: {mode: response}"), "/m")
    assert args[args.index("--logger-url") + 1] == "http://default-broker/" and "--otel" in args
    assert (
        args[args.index("--log-format") + 1] == "json"
        and args[args.index("--access-log-sample") + 1] == "0.1"
    )
    explicit = predictor_args(revision("logger: {url: 'http://mine/'}"), "/m")
    assert explicit[explicit.index("--logger-url") + 1] == "http://mine/"
