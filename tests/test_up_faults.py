"""`serving up` under faults: a broken revision is never served, a killed replica is replaced,
rejected applies leave running services alone, and the control API admits only its token."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from serving import sched
from serving.control.local.processes import listening_port
from tests.support import train_iris_sklearn, wait_until
from tests.up_support import (
    apply_text,
    cli,
    get_isvc,
    isvc_yaml,
    predict,
    serving_up,
    traffic,
    wait_for_traffic,
)


def _predictor_pids(server_pid: int) -> list[int]:
    pids = []
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "--model-dir" in child.cmdline():
                pids.append(child.pid)
        except psutil.Error:
            continue  # exited between listing and reading
    return pids


def _ready_predictor_pids(server_pid: int) -> list[int]:
    """Predictor processes whose own readiness probe says 200 (a process that exists may still be loading)."""
    ready = []
    for pid in _predictor_pids(server_pid):
        try:
            port = listening_port(pid)  # each child binds port 0 itself
            if port and httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                ready.append(pid)
        except (psutil.Error, ValueError, IndexError, httpx.HTTPError):
            continue
    return ready


def _unix_socket(pid: int) -> tuple[str, int]:
    """The replica's Unix socket (serving/http/local_sockets.py) and the connections accepted on it: the
    router's."""
    name = f"/{listening_port(pid)}.sock"
    paths = [c.laddr for c in psutil.Process(pid).net_connections(kind="unix") if str(c.laddr).endswith(name)]
    return (paths[0] if paths else ""), len(paths) - 1  # less the listening socket


def test_broken_revision_never_gets_traffic(tmp_path: Path) -> None:
    good, broken = tmp_path / "good", tmp_path / "broken"
    train_iris_sklearn(good)
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"this is not a pickle")
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", good), tmp_path)
        (r1,) = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        apply_text(server, state, isvc_yaml("iris", broken), tmp_path)

        def failed() -> bool:
            status = get_isvc(server, state, "iris")["status"]
            return "lastFailureInfo" in status.get("modelStatus", {})

        wait_until(failed, 60, what="the broken revision to be reported failed")
        doc = get_isvc(server, state, "iris")
        assert traffic(doc) == {r1: 100}
        message = doc["status"]["modelStatus"]["lastFailureInfo"]["message"]
        assert "pickle" in message.lower() or "load" in message.lower() or "unpickl" in message.lower(), (
            message
        )
        latest = next(c for c in doc["status"]["conditions"] if c["type"] == "LatestDeploymentReady")
        assert latest["status"] == "False"
        assert {predict(client, "iris").headers["x-serving-revision"] for _ in range(10)} == {r1}


@pytest.mark.e2e  # real model-server processes
def test_a_revision_whose_model_cannot_load_leaves_no_process_behind(tmp_path: Path) -> None:
    """Its replicas report the load error, then exit: idle processes (~70 MB each) would serve nothing."""
    good, broken = tmp_path / "good", tmp_path / "broken"
    train_iris_sklearn(good)
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"this is not a pickle")
    state = tmp_path / "state"
    with serving_up(state, process=True) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", good), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        apply_text(server, state, isvc_yaml("broken", broken, replicas=2), tmp_path, "broken.yaml")
        wait_until(
            lambda: "lastFailureInfo" in get_isvc(server, state, "broken")["status"].get("modelStatus", {}),
            60,
            what="the broken service reported failed",
        )
        wait_until(
            lambda: not [p for p in _predictor_pids(server.process.pid) if "broken" in " ".join(_cmd(p))],
            30,
            what="the broken replicas to exit",
        )
        doc = get_isvc(server, state, "broken")
        assert "cannot load model.joblib" in doc["status"]["modelStatus"]["lastFailureInfo"]["message"]
        assert predict(client, "iris").status_code == 200


def _cmd(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


@pytest.mark.e2e  # kill -9 of a model-server process under load
@pytest.mark.parametrize("replicas", [1, 2])
def test_killed_replica_is_replaced_without_losing_requests(tmp_path: Path, replicas: int) -> None:
    """With two, the other serves meanwhile; with one (the examples' default), requests wait in the router
    for its replacement (Knative's activator), instead of a 503 each while it restarts."""
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state, process=True) as server:
        apply_text(server, state, isvc_yaml("iris", model, replicas=replicas), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        wait_until(
            lambda: len(_ready_predictor_pids(server.process.pid)) == replicas, 60, what="ready predictors"
        )
        # `serving up`'s CPU policy (serving/sched.py) is the router's and every replica's
        policy = os.SCHED_BATCH if sched.default_policy() == "batch" else os.SCHED_OTHER
        assert os.sched_getscheduler(server.process.pid) == policy
        assert {os.sched_getscheduler(p) for p in _ready_predictor_pids(server.process.pid)} == {policy}
        counts: Counter = Counter()
        errors: Counter = Counter()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not stop.is_set():
                    response = predict(c, "iris")
                    counts[response.status_code] += 1
                    if response.status_code != 200:
                        errors[response.text[:200]] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: counts[200] > 50, 30, what="steady load")
            victim = _ready_predictor_pids(server.process.pid)[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(
                lambda: (
                    victim not in _predictor_pids(server.process.pid)
                    and len(_ready_predictor_pids(server.process.pid)) == replicas
                ),
                60,
                what="the replica to be restarted",
            )
            before = counts[200]
            wait_until(lambda: counts[200] > before + 50, 30, what="traffic after the restart")
            replacement = [p for p in _ready_predictor_pids(server.process.pid) if p != victim]
            assert {os.sched_getscheduler(p) for p in replacement} == {policy}
            # The router reaches every replica through its Unix socket, the replacement too.
            sockets = [_unix_socket(p) for p in _ready_predictor_pids(server.process.pid)]
            assert all(accepted >= 1 for _, accepted in sockets), sockets
            sockets_dir = os.path.dirname(sockets[0][0])
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        # the requests in flight on the killed replica are sent again, to the other or (one replica) to its
        # replacement once it is ready: none is lost (audit /tmp/audit-fault6 F1: each got a 503 for a while)
        assert set(counts) == {200}, f"{counts} {errors}"
        # none for want of a replica: those wait for the replacement (and none is refused to connect)
        assert not any("no ready revision" in e or "Connection refused" in e for e in errors), errors
    assert not os.path.exists(sockets_dir), "stopped, `serving up` removes its sockets' directory"


def test_rejected_apply_leaves_running_service_alone(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", model), tmp_path)
        before = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        bad = isvc_yaml("iris", model, canary=150)
        (tmp_path / "bad.yaml").write_text(bad)
        result = cli(server, state, "apply", "-f", str(tmp_path / "bad.yaml"), check=False)
        assert result.returncode != 0
        assert "spec.predictor.canaryTrafficPercent" in result.stderr
        assert traffic(get_isvc(server, state, "iris")) == before
        assert predict(client, "iris").status_code == 200


def test_control_api_needs_the_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with serving_up(state) as server:
        r = httpx.get(server.url + "/api/v1/inferenceservices")
        assert r.status_code == 401 and "token" in r.json()["error"]
        r = httpx.get(server.url + "/api/v1/inferenceservices", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        token = (state / "token").read_text().strip()
        assert oct((state / "token").stat().st_mode & 0o777) == "0o600"
        r = httpx.get(server.url + "/api/v1/inferenceservices", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == {"items": []}
        other = tmp_path / "another-state"  # the CLI pointed at another serving up's state: says so, and how
        result = cli(server, other, "get", check=False)
        assert result.returncode == 2
        assert f"no token (no file {other / 'token'})" in result.stderr and "--state-dir" in result.stderr


@pytest.mark.e2e  # SIGSTOP of a model-server process
def test_hung_predictor_times_out_and_is_replaced(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state, process=True) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", model, extra="    timeout: 2\n"), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        (pid,) = _predictor_pids(server.process.pid)
        os.kill(pid, signal.SIGSTOP)  # hangs: accepts nothing, answers nothing
        try:
            r = predict(client, "iris")
            assert r.status_code == 504, r.text
            assert "2s" in r.json()["error"]
            wait_until(
                lambda: pid not in _predictor_pids(server.process.pid),
                60,
                what="the hung replica to be replaced",
            )
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        wait_until(lambda: predict(client, "iris").status_code == 200, 60, what="a fresh replica to answer")


@pytest.mark.e2e  # kill -9 of serving up itself
def test_kill_9_of_serving_up_then_restart_restores_everything(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state, process=True) as server:
        apply_text(server, state, isvc_yaml("iris", model, replicas=2), tmp_path)
        before = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        wait_until(lambda: len(_predictor_pids(server.process.pid)) == 2, 60, what="two replicas")
        children = _predictor_pids(server.process.pid)
        server.process.kill()
        server.process.wait(10)
        wait_until(
            lambda: (
                not any(
                    psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                    for p in children
                )
            ),
            30,
            what="orphaned model servers to exit",
        )
    with serving_up(state) as server, server.client() as client:
        after = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        assert after == before
        assert predict(client, "iris").headers["x-serving-revision"] in before


def test_unwritable_state_dir_is_a_clear_error_and_keeps_last_good_state(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    train_iris_sklearn(v1)
    train_iris_sklearn(v2, c=0.05)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", v1), tmp_path)
        before = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        services = state / "services"
        saved = (services / "default__iris.json").read_bytes()
        services.chmod(0o500)
        try:
            if os.access(services, os.W_OK):  # root ignores permission bits: use a read-only bind instead
                (services / "default__iris.json").chmod(0o400)
                services.chmod(0o700)
                if (
                    subprocess.run(
                        ["mount", "--bind", "-o", "ro", str(services), str(services)], capture_output=True
                    ).returncode
                    != 0
                ):
                    pytest.skip("cannot make the state directory unwritable here (root without mount)")
            (tmp_path / "v2.yaml").write_text(isvc_yaml("iris", v2))
            result = cli(server, state, "apply", "-f", str(tmp_path / "v2.yaml"), check=False)
            assert result.returncode != 0
            assert "cannot write" in result.stderr and "state" in result.stderr, result.stderr
            assert traffic(get_isvc(server, state, "iris")) == before
            assert predict(client, "iris").status_code == 200
        finally:
            subprocess.run(["umount", str(services)], capture_output=True)
            services.chmod(0o700)
        assert (services / "default__iris.json").read_bytes() == saved
