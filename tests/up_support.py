"""Driving a real `serving up`: start it, apply YAML through the CLI, wait for status conditions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO, ServerProcess, serving_process, wait_until

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
{extra}    model:
      modelFormat:
        name: sklearn
      storageUri: {uri}
"""


def isvc_yaml(name: str, uri: Path | str, *, canary: int | None = None, replicas: int | None = None, extra: str = "") -> str:
    lines = ""
    if canary is not None:
        lines += f"    canaryTrafficPercent: {canary}\n"
    if replicas is not None:
        lines += f"    minReplicas: {replicas}\n"
    return ISVC.format(name=name, uri=uri, extra=lines + extra)


@contextmanager
def serving_up(
    state_dir: Path, *files: Path, port: int | None = None, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    args = ["up", "--state-dir", str(state_dir), *extra]
    for f in files:
        args += ["-f", str(f)]
    with serving_process(args, port=port, ready_path="/v2/health/live", env=env) as server:
        yield server


def cli(server: ServerProcess, state_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "serving.cli", *args, "--server", server.url, "--state-dir", str(state_dir)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=60,
    )
    if check:
        assert result.returncode == 0, f"serving {' '.join(args)} failed: {result.stderr}{result.stdout}"
    return result


def apply_text(server: ServerProcess, state_dir: Path, text: str, tmp: Path, name: str = "isvc.yaml") -> None:
    path = tmp / name
    path.write_text(text)
    cli(server, state_dir, "apply", "-f", str(path))


def get_isvc(server: ServerProcess, state_dir: Path, name: str) -> dict[str, Any]:
    return json.loads(cli(server, state_dir, "get", name, "-o", "json").stdout)


def traffic(isvc: dict[str, Any]) -> dict[str, int]:
    return {t["revisionName"]: t["percent"] for t in isvc["status"]["components"]["predictor"]["traffic"]}


def wait_for_traffic(server: ServerProcess, state_dir: Path, name: str, predicate, timeout_s: float = 90) -> dict:
    """Poll status until `predicate(traffic)` holds, via the control API directly (fast)."""
    token = (state_dir / "token").read_text().strip()
    seen: dict[str, Any] = {}

    def check() -> bool:
        r = httpx.get(f"{server.url}/api/v1/namespaces/default/inferenceservices/{name}",
                      headers={"authorization": f"Bearer {token}"}, timeout=5)
        seen["doc"] = r.json()
        if r.status_code == 200 and predicate(traffic(seen["doc"])):
            return True
        failure = seen["doc"].get("status", {}).get("modelStatus", {}).get("lastFailureInfo")
        if failure:  # fail fast: the revision we wait for will not become ready
            raise AssertionError(f"{name}: revision failed: {failure['message']}")
        return False

    wait_until(check, timeout_s, what=f"traffic of {name}")
    return seen["doc"]


def predict(client: httpx.Client, name: str, rows: list[list[float]] | None = None) -> httpx.Response:
    return client.post(f"/v1/models/{name}:predict", json={"instances": rows or [[6.8, 2.8, 4.8, 1.4]]})
