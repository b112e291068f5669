"""Session fixtures. Models are trained once per session (tests.support caches each kind and copies it per
caller), so a test that wants its own folder calls train_iris_*(path) and gets one in milliseconds."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import kubernetes_validate.utils
import pytest

from tests.support import train_iris_onnx, train_iris_sklearn, train_iris_xgboost

# Every httpx.Client (each httpx.get/post, each CLI call of the control client) builds an SSL context; loading a
# CA bundle file (SSL_CERT_FILE or certifi's) into it costs ~35 ms CPU, thousands of times per run (polls).
# The suite talks only to 127.0.0.1 (no test trusts a public CA), so the system's hashed CA directory, which
# OpenSSL reads lazily (~0.1 ms), serves as well: in-process canary/rollout tests use half the CPU.
if Path("/etc/ssl/certs").is_dir():
    os.environ.pop("SSL_CERT_FILE", None)
    os.environ["SSL_CERT_DIR"] = "/etc/ssl/certs"

# kubernetes_validate re-reads and re-parses its JSON schema files (the definitions file too) on every
# validate(): ~9 ms a call, hundreds of calls a run. The files do not change during a run: parse each once.
kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of model folders (sklearn, xgboost, onnx iris), trained at test time, once per session."""
    root = tmp_path_factory.mktemp("models")
    train_iris_sklearn(root / "sklearn-iris")
    train_iris_xgboost(root / "xgboost-iris")
    train_iris_onnx(root / "onnx-iris")
    return root


WHOLE_SUITE_WORKERS = 3  # on 2 cores: the e2e tests mostly wait on processes, so a third worker overlaps them


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """`python3 -m pytest tests` (the whole suite, what CI runs) spreads over pytest-xdist workers unless `-n`
    is given; a run of chosen files or tests stays in one process. Every server binds port 0 and every test
    has its own tmp dir, so workers never collide."""
    if os.environ.get("PYTEST_XDIST_WORKER") or getattr(config.option, "numprocesses", "absent") is not None:
        return
    tests_dir = Path(__file__).resolve().parent
    paths = [(config.invocation_params.dir / arg).resolve() for arg in config.args]
    if paths and all(path == tests_dir for path in paths) and not config.option.collectonly:
        config.option.numprocesses = WHOLE_SUITE_WORKERS
        config.option.dist = "loadgroup"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests run one after another on one worker (under `--dist loadgroup`): each drives real
    processes and load, and timing assertions (shedding p99, drain) need the other e2e tests not beside them."""
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group("e2e"))
