"""Inference payload events as KServe's logger sends them: CloudEvents 1.0, binary mode over HTTP.

A request and its response share `ce-id` (the request id). Extensions follow KServe's agent:
`inferenceservicename`, `namespace`, `component`, `endpoint` (here the revision that answered, so canary
events name the canary revision), `metadata` (the request headers `logger.metadataHeaders` lists, as JSON
`{name: [values]}`), plus `modelid`, and `inferenceheaderlength` for a binary-extension body. A response event also carries `statuscode`, because
failed inferences are logged too (KServe logs only successes).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
# In a Kubernetes pod the hostname is the pod's name (what KServe's agent sends as `source`)
_POD_NAME = socket.gethostname() if os.environ.get("KUBERNETES_SERVICE_HOST") else ""


@dataclass(frozen=True, slots=True)
class Source:
    """Who emits the events: the same for every event of one process (the router fills in per request)."""

    isvc: str = ""
    namespace: str = "default"
    component: str = "predictor"
    endpoint: str = ""  # the revision
    uri: str = ""  # CloudEvents `source`; empty: `emitter()` names this process
    annotations: str = ""  # JSON of the InferenceService annotations `logger.metadataAnnotations` names

    def emitter(self) -> str:
        """CloudEvents `source`, which with `id` (the request id) must name one event: KServe's agent sends its
        pod's name, and so does a pod of ours (its hostname); elsewhere, the revision and component (a
        transformer and its predictor see the same request id)."""
        if self.uri:
            return self.uri
        if _POD_NAME:
            return _POD_NAME
        return f"{self.endpoint or self.isvc or 'serving'}-{self.component}"


@dataclass(slots=True)
class InferenceEvent:
    """One request or response body, captured as bytes on the request path, sent later."""

    request_id: str
    type: str
    body: bytes
    content_type: str
    source: Source
    model_id: str
    time_s: float  # time.time() when captured; formatted only when sent
    status: int | None = None  # responses only
    json_length: str = ""  # binary tensor extension: the body's `inference-header-content-length`
    metadata: str = ""  # JSON of the request headers `logger.metadataHeaders` names (when it names any)
    encoding: str = ""  # the request's Content-Encoding as sent (gzip, deflate): inflated before delivery

    def attributes(self) -> dict[str, str]:
        """Context attributes and extensions, by their CloudEvents names."""
        attrs = {
            "specversion": SPEC_VERSION,
            "id": self.request_id,
            "type": self.type,
            "source": self.source.emitter(),
            "time": _rfc3339(self.time_s),
            "inferenceservicename": self.source.isvc,
            "namespace": self.source.namespace,
            "component": self.source.component,
            "modelid": self.model_id,
        }
        if self.source.endpoint:  # the revision (`serving serve` without --revision: none, left out, not '')
            attrs["endpoint"] = self.source.endpoint
        if self.status is not None:
            attrs["statuscode"] = str(self.status)
        if self.json_length:  # what a receiver needs to split JSON from raw tensor bytes
            attrs["inferenceheaderlength"] = self.json_length
        if self.metadata:
            attrs["metadata"] = self.metadata
        if self.source.annotations:  # KServe's agent: the matched annotations, JSON, when any matched
            attrs["annotations"] = self.source.annotations
        return attrs

    def binary_headers(self) -> dict[str, str]:
        """HTTP binary mode: every attribute as a `ce-` header, the body as is under its own content type."""
        headers = {"ce-" + key: header_value(value) for key, value in self.attributes().items()}
        headers["content-type"] = self.content_type
        return headers

    def json_line(self) -> bytes:
        """Structured mode (one JSON object), for the file sink: JSON bodies inline, others base64."""
        doc: dict[str, Any] = {**self.attributes(), "datacontenttype": self.content_type}
        data = None
        if "json" in self.content_type:
            try:
                data = orjson.loads(self.body) if self.body else None
                doc["data"] = data
            except orjson.JSONDecodeError:
                data = None
        if "data" not in doc:
            doc["data_base64"] = base64.b64encode(self.body).decode("ascii")
        return orjson.dumps(doc)


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# The HTTP binding (CloudEvents 1.0.2, §3.1.3.2): a receiver percent-decodes `ce-` header values, so a `%` in a
# value (a client's request id, an annotation) is sent as `%25` and what is not ASCII as its UTF-8 escapes
# (raw, it arrived garbled). Space and `"` stay as they are: decoding receivers read them either way, and
# receivers on the classic SDK, which do not decode, keep reading `ce-metadata` as JSON.
_KEPT_AS_IS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_NEEDS_ENCODING = re.compile(r"[^\x20-\x7e]|%")


def header_value(value: str) -> str:
    return urllib.parse.quote(value, safe=_KEPT_AS_IS) if _NEEDS_ENCODING.search(value) else value
