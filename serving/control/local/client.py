"""Client of the control API of a running `serving up` (used by apply, get, delete, rollout)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any

import httpx

from serving.control.local.secrets import KEPT_KINDS
from serving.control.local.state import DEFAULT_STATE_DIR, read_server, read_token
from serving.errors import ServingError

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_HELP = (
    f"URL of `serving up` (env SERVING_SERVER; default: where the `serving up` of --state-dir listens, "
    f"else {DEFAULT_SERVER})"
)


class ControlClient:
    def __init__(
        self, server: str | None = None, state_dir: Path | None = None, token: str | None = None
    ) -> None:
        folder = state_dir or DEFAULT_STATE_DIR
        # the URL given, else the one the state directory's running `serving up` wrote; never a guess: the
        # token of this state directory goes with every call
        chosen = server or os.environ.get("SERVING_SERVER") or read_server(folder)
        if chosen is None:
            raise ServingError(
                f"no `serving up` is running with the state directory {folder} (it writes {folder / 'server'} "
                "while it runs): start it, give its --state-dir, or --server URL"
            )
        self.server = chosen.rstrip("/")
        if token:
            self._token_from = "the token given"
        elif os.environ.get("SERVING_TOKEN"):
            token, self._token_from = os.environ["SERVING_TOKEN"], "SERVING_TOKEN"
        else:
            token = read_token(folder)
            self._token_from = f"{folder / 'token'}" if token else f"no token (no file {folder / 'token'})"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server + "/api/v1", headers=headers, timeout=60)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServingError(
                f"cannot reach serving at {self.server} ({exc}); is `serving up` running?"
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            if response.status_code == 401:  # which token was sent, and how to send the right one
                message += (
                    f"; this command used {self._token_from}, but the `serving up` at {self.server} keeps "
                    "its own: pass its --state-dir (or the XDG_STATE_HOME it ran with), or SERVING_TOKEN"
                )
            error = ServingError(message)
            error.status_code = response.status_code
            raise error
        body: Any = response.json()
        return body

    def apply(self, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("POST", "/inferenceservices", json=documents)["items"]
        return items

    def list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", "/inferenceservices")["items"]
        return items

    def get(self, name: str, namespace: str = "default") -> dict[str, Any]:
        item: dict[str, Any] = self._call("GET", f"/namespaces/{namespace}/inferenceservices/{name}")
        return item

    def delete(self, name: str, namespace: str = "default") -> None:
        self._call("DELETE", f"/namespaces/{namespace}/inferenceservices/{name}")

    def delete_runtime(self, kind: str, name: str, namespace: str | None = "default") -> builtins.list[str]:
        """Delete a ServingRuntime (in `namespace`) or a ClusterServingRuntime; returns the server's warnings."""
        if kind == "ClusterServingRuntime":
            path = f"/clusterservingruntimes/{name}"
        else:
            path = f"/namespaces/{namespace or 'default'}/servingruntimes/{name}"
        warnings: builtins.list[str] = self._call("DELETE", path).get("warnings", [])
        return warnings

    def put_object(self, document: dict[str, Any], namespace: str = "default") -> str:
        """Keep a `v1` Secret or ServiceAccount in `serving up`; returns created, configured or unchanged."""
        name = document.get("metadata", {}).get("name", "")
        plural = KEPT_KINDS[document["kind"]]
        outcome: str = self._call("PUT", f"/namespaces/{namespace}/{plural}/{name}", json=document)["outcome"]
        return outcome

    def delete_object(self, kind: str, name: str, namespace: str = "default") -> None:
        self._call("DELETE", f"/namespaces/{namespace}/{KEPT_KINDS[kind]}/{name}")

    def list_objects(self, kind: str = "Secret") -> builtins.list[dict[str, str]]:
        """{namespace, name} of each kept Secret or ServiceAccount (values are never sent back)."""
        items: builtins.list[dict[str, str]] = self._call("GET", f"/{KEPT_KINDS[kind]}")["items"]
        return items

    def delete_canary(self, name: str, namespace: str = "default") -> Any:
        """Delete a Canary; answers the warnings (what split it left was written into its InferenceService)."""
        answer: dict[str, Any] = self._call("DELETE", f"/namespaces/{namespace}/canaries/{name}")
        return answer.get("warnings", [])

    def rollout(
        self, action: str, name: str, namespace: str = "default", body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        item: dict[str, Any] = self._call(
            "POST", f"/namespaces/{namespace}/inferenceservices/{name}/rollout/{action}", json=body or {}
        )
        return item

    def list_runtimes(self) -> builtins.list[dict[str, Any]]:
        """ServingRuntimes and ClusterServingRuntimes (built-in ones carry `builtin: true`)."""
        items: builtins.list[dict[str, Any]] = self._call("GET", "/servingruntimes")["items"]
        return items

    def list_canaries(self) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = self._call("GET", "/canaries")["items"]
        return items

    def rollout_view(
        self, what: str, name: str, namespace: str = "default", since: int | None = None
    ) -> dict[str, Any]:
        """`status` or `history` of a rollout; `since`: a status also lists the Canary's changes after it."""
        view: dict[str, Any] = self._call(
            "GET",
            f"/namespaces/{namespace}/inferenceservices/{name}/rollout/{what}",
            params={} if since is None else {"since": since},
        )
        return view
