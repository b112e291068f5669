"""Driving a real `serving up`: start it, apply YAML through the CLI, wait for status conditions.

`serving up` runs in the test process (tests.inprocess: its own CLI code path, uvicorn on port 0) unless a
test needs the process itself (kill -9, its children's pids): `serving_up(..., process=True)`. CLI commands
(`serving apply/get/rollout/delete`) run in-process through the real parser and control client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.inprocess import CliResult, InProcessServer, run_cli, serving_inprocess
from tests.inprocess_replicas import in_process_replica
from tests.support import ServerProcess, serving_process, wait_until

Server = ServerProcess | InProcessServer

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


def isvc_yaml(
    name: str, uri: Path | str, *, canary: int | None = None, replicas: int | None = None, extra: str = ""
) -> str:
    lines = ""
    if canary is not None:
        lines += f"    canaryTrafficPercent: {canary}\n"
    if replicas is not None:
        lines += f"    minReplicas: {replicas}\n"
    return ISVC.format(name=name, uri=uri, extra=lines + extra)


@contextmanager
def serving_up(
    state_dir: Path,
    *files: Path,
    port: int | None = None,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    process: bool = False,
) -> Iterator[Server]:
    args = ["up", "--state-dir", str(state_dir), *extra]
    for f in files:
        args += ["-f", str(f)]
    if process or port is not None:
        with serving_process(args, port=port, ready_path="/v2/health/live", env=env) as server:
            yield server
    else:
        with serving_inprocess(
            args, ready_path="/v2/health/live", env=env, target=_up_with_replicas_in_process
        ) as up:
            yield up


def _up_with_replicas_in_process(argv: list[str]) -> int:
    """`serving up`'s own main, its model servers and transformers threads of this process."""
    from serving.cli import build_parser
    from serving.commands.up import main

    return main(build_parser(argv).parse_args(argv), replica_factory=in_process_replica)


def cli(server: Server, state_dir: Path, *args: str, check: bool = True) -> CliResult:
    result = run_cli(*args, "--server", server.url, "--state-dir", str(state_dir))
    if check:
        assert result.returncode == 0, f"serving {' '.join(args)} failed: {result.stderr}{result.stdout}"
    return result


def apply_text(server: Server, state_dir: Path, text: str, tmp: Path, name: str = "isvc.yaml") -> None:
    path = tmp / name
    path.write_text(text)
    cli(server, state_dir, "apply", "-f", str(path))


def get_isvc(server: Server, state_dir: Path, name: str) -> dict[str, Any]:
    return json.loads(cli(server, state_dir, "get", name, "-o", "json").stdout)


def traffic(isvc: dict[str, Any]) -> dict[str, int]:
    predictor = isvc["status"]["components"]["predictor"]
    return {t["revisionName"]: t["percent"] for t in predictor.get("traffic", [])}  # none yet: left out


def wait_for_traffic(server: Server, state_dir: Path, name: str, predicate, timeout_s: float = 90) -> dict:
    """Poll status until `predicate(traffic)` holds, via the control API directly (fast)."""
    token = (state_dir / "token").read_text().strip()
    seen: dict[str, Any] = {}

    def check() -> bool:
        r = httpx.get(
            f"{server.url}/api/v1/namespaces/default/inferenceservices/{name}",
            headers={"authorization": f"Bearer {token}"},
            timeout=5,
        )
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
