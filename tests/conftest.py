"""Session fixtures. Models are trained once per session (tests.support caches each kind and copies it per
caller), so a test that wants its own folder calls train_iris_*(path) and gets one in milliseconds."""

from __future__ import annotations

import functools
import gc
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate.utils
import pytest

from tests.support import train_iris_onnx, train_iris_sklearn, train_iris_xgboost

# With PYTHONDONTWRITEBYTECODE=1 in the environment (as on some machines and images) each pytest process (3
# xdist workers) compiles serving/ and rewrites every test module again on every run: ~2 s CPU per process.
# The suite writes its bytecode caches (__pycache__/, gitignored) anyway, so the next run starts from them.
sys.dont_write_bytecode = False

# Every httpx.Client (each httpx.get/post, each CLI call of the control client) builds an SSL context; loading a
# CA bundle file (SSL_CERT_FILE or certifi's) into it costs ~35 ms CPU, thousands of times per run (polls).
# The suite talks only to 127.0.0.1 (no test trusts a public CA), so the system's hashed CA directory, which
# OpenSSL reads lazily (~0.1 ms), serves as well: in-process canary/rollout tests use half the CPU.
if Path("/etc/ssl/certs").is_dir():
    os.environ.pop("SSL_CERT_FILE", None)
    os.environ["SSL_CERT_DIR"] = "/etc/ssl/certs"

# Downloaded models and compiled linear models (runtimes/linear_cache.py) go to a cache of this run's own, never
# the user's ~/.cache/serving: a test sees a first load as a first load. Servers the tests start inherit it.
if "SERVING_CACHE_DIR" not in os.environ:
    os.environ["SERVING_CACHE_DIR"] = tempfile.mkdtemp(prefix="serving-test-cache-")

# kubernetes_validate re-reads and re-parses its JSON schema files (the definitions file too) on every
# validate(): ~9 ms a call, hundreds of calls a run. The files do not change during a run: parse each once.
kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A moto S3 server on loopback with the iris model under s3://models/iris (tests/test_storage_s3.py);
    session-wide, since moto keeps its backends and its auth switch per process."""
    from tests.test_storage_s3 import moto_s3

    yield from moto_s3(tmp_path_factory)


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of model folders (sklearn, xgboost, onnx iris), trained at test time, once per session."""
    root = tmp_path_factory.mktemp("models")
    train_iris_sklearn(root / "sklearn-iris")
    train_iris_xgboost(root / "xgboost-iris")
    train_iris_onnx(root / "onnx-iris")
    return root


WHOLE_SUITE_WORKERS = 4  # on 2 cores: the e2e lanes mostly wait on processes; 4 workers keep both cores busy
# (under coverage: 3 workers 132 s, 4 workers 112-118 s, same machine, 3 green runs)
# The longest modules (seconds, in-process) start first, so that none of them is what the last worker is still
# running when the others are done; the rest follow in file order. From `--durations=0`; keep it roughly current.
LONGEST_FIRST = (
    "test_canary_up.py",
    "test_fuzz_openapi.py",
    "test_operator_canary.py",
    "test_codec_properties.py",
    "test_storage_s3.py",
    "test_chart.py",
    "test_spec_effect.py",
    "test_cli_output.py",
    "test_batching.py",
    "test_observability_payloads.py",
)
# End-to-end tests that generate load and measure throughput or latency (shedding p99, autoscaling, Locust
# reports): one after another in their own lane. The other e2e tests form a second lane; both lanes start first.
LOAD_E2E = (
    "test_autoscale_up_e2e.py",
    "test_loadtest_smoke.py",
    "test_loadtest_bench.py",
    "test_soak_bench.py",
    "test_overload.py",
)


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
        config.option.loadscopereorder = False  # our order (below), not xdist's by number of tests


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection built (modules, test functions, parameters: most of a worker's objects) lives until the
    end: moved out of the garbage collector's sight, so every full collection (the repository's after each
    unload, pytest's five at exit) scans a third fewer objects: ~6 % less CPU in the in-process tests."""
    gc.freeze()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist controller) Tell each worker the distribution chosen above: workers parse the command line
    again, which has no `--dist`, so xdist's worker side would not know to honour the groups below."""
    node.workerinput["distribution"] = node.config.option.dist


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns xdist_group marks into work units
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`) the work units are: the two e2e lanes (each drives real processes;
    within a lane they run one after another, so a load test never shares the CPU with another load test),
    then every other test module whole on one worker (its module fixtures: servers, moto, azurite start once,
    not once per worker), the longest modules first so that none of them is the last one still running."""
    if not hasattr(config, "workerinput"):
        return
    if config.workerinput.get("distribution") == "loadgroup":
        config.option.loadgroup = True  # what xdist's worker sets itself when `--dist loadgroup` is typed
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_work_unit(item)))

    def rank(item: pytest.Item) -> int:
        unit = _work_unit(item)
        if unit.startswith("e2e"):
            return 0 if unit == "e2e-load" else 1
        return 2 + (LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: file order within each rank


def _work_unit(item: pytest.Item) -> str:
    if item.get_closest_marker("e2e") is not None:
        return "e2e-load" if item.path.name in LOAD_E2E else "e2e"
    return item.path.name


def pytest_unconfigure(config: pytest.Config) -> None:
    """Under `coverage run` (.ci/coverage), a pytest-xdist worker saves its coverage here, not at interpreter exit.
    At exit, Python first joins the threads some test left busy in an executor; a worker that takes too long
    is killed by xdist, and its coverage went with it (one CI run in several reported ~88 % instead of ~92 %,
    a whole worker's files short)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        import coverage
    except ImportError:
        return
    current = coverage.Coverage.current()
    if current is not None:
        current.stop()
        current.save()
