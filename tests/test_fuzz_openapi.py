"""`/openapi.json` is a valid OpenAPI document covering every route, and schemathesis fuzzing it against a live
server (three runtimes) finds no 5xx.

The fuzz run is bounded (examples per operation, fixed seed; override with SERVING_FUZZ_EXAMPLES /
SERVING_FUZZ_SEED for a longer hunt). `unload` is left out of the fuzz: unloading a model makes every later
request a correct 503, which would drown the signal; the repository tests cover it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from openapi_spec_validator import validate

from serving.dataplane import DataPlane
from serving.http.app import build_routes
from serving.http.openapi import build_document
from serving.repository import ModelRepository
from tests.inprocess import InProcessServer, serving_inprocess

FUZZ_EXAMPLES = os.environ.get("SERVING_FUZZ_EXAMPLES", "10")
FUZZ_SEED = os.environ.get("SERVING_FUZZ_SEED", "20240607")


@pytest.fixture(scope="module")
def server(model_repo: Path) -> Iterator[InProcessServer]:
    with serving_inprocess(["serve", "--model-dir", str(model_repo)]) as s:
        yield s


def test_the_document_is_valid_openapi() -> None:
    validate(build_document())


def test_every_route_of_the_app_is_documented_with_its_methods() -> None:
    dataplane = DataPlane(ModelRepository([]))
    try:
        routes = build_routes(dataplane)
    finally:
        dataplane.close()
    paths = build_document()["paths"]
    for route in routes:
        assert route.path in paths, f"{route.path} is missing from /openapi.json"
        documented = {m.upper() for m in paths[route.path]}
        assert set(route.methods or ()) - {"HEAD"} <= documented, route.path
    assert len(paths) == len({r.path for r in routes}), "the document lists a path the app does not serve"


def test_the_server_publishes_it(server: InProcessServer) -> None:
    response = httpx.get(server.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_document()


def pin_model_names(document: dict, names: list[str]) -> dict:
    """The served document with `{name}` limited to the served models, so fuzzed bodies reach the codecs and
    runtimes instead of 404s (the coverage phase still sends names outside the enum)."""
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":
                    parameter["schema"] = {"type": "string", "enum": names}
    return document


def test_schemathesis_finds_no_server_error(server: InProcessServer, tmp_path: Path) -> None:
    names = httpx.get(server.url + "/v1/models").json()["models"]
    assert len(names) == 3
    schema_file = tmp_path / "openapi.json"
    schema_file.write_bytes(
        orjson.dumps(pin_model_names(httpx.get(server.url + "/openapi.json").json(), names))
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(schema_file),
        "--url",
        server.url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        FUZZ_EXAMPLES,
        "--seed",
        FUZZ_SEED,
        "--workers",
        "1",
        "--phases",
        "coverage,fuzzing",
        "--generation-database",
        "none",
        "--exclude-path",
        "/v2/repository/models/{name}/unload",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "passed" in output, output[-2000:]
    # The models are still loaded and answering after the fuzzing.
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200
