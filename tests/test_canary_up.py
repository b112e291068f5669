"""Metric-gated canaries through `serving up` (its router, control plane and real model servers, in-process):
a good canary walks every step and is promoted, a failing, slow or crashing one is rolled back within
`threshold` intervals, mirroring never changes a user's answer, affinity keeps a user on one arm, a restart
resumes the analysis, and `serving rollout` steers and reports it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from serving.runtimes.sklearn import SKLearnRuntime
from serving.types import TensorDict
from tests.runtimes_for_tests import RELEASE_FILE, FailingRuntime, SlowLoadRuntime
from tests.support import free_port, train_iris_sklearn, wait_until
from tests.up_support import apply_text, cli, get_isvc, isvc_yaml, serving_up, traffic, wait_for_traffic

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
CANARY = """
apiVersion: serving.dev/v1alpha1
kind: Canary
metadata: {{name: iris}}
spec:
  targetRef: {{name: iris}}
  analysis:
    interval: {interval}
    stepWeights: [10, 25, 50]
    threshold: 2
    minRequests: {min_requests}
    metrics:
      - {{name: request-success-rate, thresholdRange: {{min: 99}}}}
      - {{name: request-duration, thresholdRange: {{max: 500}}}}
{extra}"""


def canary_yaml(interval: str = "400ms", min_requests: int = 3, extra: str = "") -> str:
    return CANARY.format(interval=interval, min_requests=min_requests, extra=extra)


class Load:
    """Steady user traffic from a few threads, each paced to at most one request per `pace_s` (~100 req/s each:
    every canary step still sees dozens of requests, and the suite's two cores are left for the servers);
    counts answers by (revision, status)."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, workers: int = 4, pace_s: float = 0.01
    ) -> None:
        self.url, self.headers, self.workers, self.pace_s = url, headers or {}, workers, pace_s
        self.seen: Counter[tuple[str, int]] = Counter()
        self.bodies: Counter[bytes] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30, headers=self.headers) as client:
            while not self._stop.wait(self.pace_s):
                r = client.post("/v1/models/iris:predict", content=BODY)
                self.seen[(r.headers.get("x-serving-revision", "-"), r.status_code)] += 1
                if r.status_code == 200:
                    self.bodies[r.content] += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


@contextmanager
def iris_with_canary(tmp_path: Path, canary: str) -> Iterator[tuple[object, Path, str]]:
    v1 = tmp_path / "v1"
    train_iris_sklearn(v1)
    state = tmp_path / "state"
    with serving_up(state) as server:
        apply_text(server, state, isvc_yaml("iris", v1) + "---" + canary, tmp_path)
        doc = wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        (stable,) = [t["revisionName"] for t in doc["status"]["components"]["predictor"]["traffic"]]
        yield server, state, stable


def status(server, state: Path) -> dict:
    return json.loads(cli(server, state, "rollout", "status", "iris", "-o", "json", check=False).stdout)


def wait_phase(server, state: Path, phases: tuple[str, ...], timeout_s: float = 60) -> dict:
    seen: dict = {}

    def reached() -> bool:
        seen.update(status(server, state))
        return seen.get("phase") in phases

    wait_until(reached, timeout_s, what=f"rollout phase in {phases}")
    return seen


def test_good_canary_walks_each_step_and_is_promoted(tmp_path: Path) -> None:
    with iris_with_canary(tmp_path, canary_yaml()) as (server, state, stable), Load(server.url) as load:
        apply_text(
            server, state, isvc_yaml("iris", tmp_path / "v1", extra="    timeout: 30\n"), tmp_path, "v2.yaml"
        )
        final = wait_phase(server, state, ("Succeeded", "Failed"))
        assert final["phase"] == "Succeeded", final
        history = json.loads(cli(server, state, "rollout", "history", "iris", "-o", "json").stdout)
        weights = [e["canaryWeight"] for e in history["canary"]]
        assert weights[-4:] == [10, 25, 50, 100] or weights[-5:-1] == [10, 25, 50, 100], weights
        canary = final["revision"]
        doc = wait_for_traffic(server, state, "iris", lambda t: t == {canary: 100})
        assert doc["status"]["components"]["predictor"]["latestRolledoutRevision"] == canary
        table = cli(server, state, "rollout", "history", "iris").stdout
        assert "rolled out" in table and "canary succeeded" in table
    assert all(code == 200 for (_, code) in load.seen), load.seen
    assert {rev for rev, _ in load.seen} == {stable, canary}


def test_failing_canary_is_rolled_back_within_threshold_and_users_see_only_its_share(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    failing = isvc_yaml("iris", tmp_path / "broken", extra="").replace(
        "      modelFormat:", "      runtime: tests.runtimes_for_tests:FailingRuntime\n      modelFormat:"
    )
    with (
        iris_with_canary(tmp_path, canary_yaml(min_requests=2)) as (server, state, stable),
        Load(server.url) as load,
    ):
        apply_text(server, state, failing, tmp_path, "v2.yaml")
        final = wait_phase(server, state, ("Succeeded", "Failed"))
        assert final["phase"] == "Failed" and final["canaryWeight"] == 0, final
        assert "request-success-rate" in final["message"] and final["failedChecks"] == 2
        doc = wait_for_traffic(server, state, "iris", lambda t: t.get(stable) == 100)
        assert final["revision"] in {
            t["revisionName"] for t in doc["status"]["components"]["predictor"]["traffic"]
        }
        # Deleting the policy keeps its decision (Flagger never promotes on deletion): the rolled-back
        # revision stays at 0 %, written as canaryTrafficPercent: 0, and the delete says so.
        listed = cli(server, state, "get", "canaries").stdout.splitlines()
        assert listed[0].split() == ["NAME", "TARGET", "PHASE", "WEIGHT", "REVISION"], listed
        assert listed[1].split() == ["iris", "iris", "Failed", "0", final["revision"]], listed
        deleted = cli(server, state, "delete", "canary", "iris")
        assert "canary/iris deleted" in deleted.stdout
        assert "canaryTrafficPercent: 0 written" in deleted.stderr and final["revision"] in deleted.stderr
        isvc = get_isvc(server, state, "iris")
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert traffic(isvc).get(stable) == 100, traffic(isvc)
    errors = sum(n for (rev, code), n in load.seen.items() if code >= 500)
    total = sum(load.seen.values())
    assert errors and all(rev == final["revision"] for (rev, code) in load.seen if code >= 500)
    assert errors / total < 0.2, (errors, total)  # never more than the failed canary's 10 % step, plus noise


class CrashRuntime(SKLearnRuntime):
    """Loads and turns ready, then its process dies on every predict (a real process: `env` is set)."""

    def predict(self, inputs: TensorDict, outputs: tuple[str, ...] | None, parameters: dict) -> TensorDict:
        os._exit(3)


def test_crashing_canary_is_rolled_back_though_its_requests_were_retried_on_stable(tmp_path: Path) -> None:
    crashing = isvc_yaml("iris", tmp_path / "v1").replace(
        "      modelFormat:",
        "      runtime: tests.test_canary_up:CrashRuntime\n      env: [{name: CRASH, value: '1'}]\n"
        "      modelFormat:",
    )
    with (
        iris_with_canary(tmp_path, canary_yaml(min_requests=2)) as (server, state, stable),
        Load(server.url),
    ):
        apply_text(server, state, crashing, tmp_path, "v2.yaml")
        final = wait_phase(server, state, ("Succeeded", "Failed"))
        wait_for_traffic(server, state, "iris", lambda t: t.get(stable) == 100)
    assert final["phase"] == "Failed" and final["failedChecks"] == 2, final
    health = ("restarted", "(crash-looping)", "is not ready", "no request reached the canary")
    assert any(why in final["message"] for why in health) and "request-" not in final["message"], final


def test_slow_canary_is_rolled_back_on_its_p99(tmp_path: Path) -> None:
    (tmp_path / "slow").mkdir()
    slow = isvc_yaml("iris", tmp_path / "slow").replace(
        "      modelFormat:", "      runtime: tests.runtimes_for_tests:SlowPredictRuntime\n      modelFormat:"
    )
    with (
        iris_with_canary(tmp_path, canary_yaml(interval="1s", min_requests=2)) as (server, state, stable),
        Load(server.url, workers=6),
    ):
        apply_text(server, state, slow, tmp_path, "v2.yaml")
        final = wait_phase(server, state, ("Succeeded", "Failed"))
    assert final["phase"] == "Failed" and "request-duration" in final["message"], final
    duration = next(r for r in final["lastResults"] if r["name"] == "request-duration")
    assert duration["value"] > 500 and not duration["passed"]


class HeldFailingRuntime(SlowLoadRuntime):
    """Fails every prediction (FailingRuntime's), and loads only once the test creates RELEASE_FILE in its model
    folder: its Canary stays Waiting for it until the test says."""

    predict = FailingRuntime.predict


def test_watch_prints_every_status_the_rollout_passed_through_once_in_order(tmp_path: Path) -> None:
    """`rollout status --watch` polled snapshots, so a phase shorter than a poll was never printed (a good
    rollout went from `Progressing step 3/3` to `Succeeded` without its `Promoting`, README's first `Waiting`
    was missing, and a watch started after the end printed the verdict alone). It prints the Canary's recorded
    changes since its last poll: a watch started after the promotion prints the whole rollout; one following a
    bad rollout live starts at that rollout (not the previous verdict), prints its candidate's Waiting, each
    check, and exits 1 on Failed; no line twice."""
    (tmp_path / "held").mkdir()
    bad = isvc_yaml("iris", tmp_path / "held").replace(
        "      modelFormat:", "      runtime: tests.test_canary_up:HeldFailingRuntime\n      modelFormat:"
    )
    with iris_with_canary(tmp_path, canary_yaml()) as (server, state, _), Load(server.url):
        apply_text(
            server, state, isvc_yaml("iris", tmp_path / "v1", extra="    timeout: 30\n"), tmp_path, "v2.yaml"
        )
        good = wait_phase(server, state, ("Succeeded", "Failed"))["revision"]
        lines = cli(server, state, "rollout", "status", "iris", "--watch").stdout.splitlines()
        assert len(lines) == len(set(lines)), lines
        assert lines[0] == "Waiting  canary 0%", lines  # the Canary as applied, before this revision
        steps = [tuple(line.split("  ")[1:3]) for line in lines if line.startswith("Progressing")]
        assert list(dict.fromkeys(steps)) == [  # a held step repeats (another message), in its place
            ("step 1/3", "canary 10%"),
            ("step 2/3", "canary 25%"),
            ("step 3/3", "canary 50%"),
        ], lines
        assert lines[-2].startswith("Promoting  step 3/3  canary 100%  request-success-rate=100"), lines
        assert lines[-2].endswith("all 3 steps passed; promoting"), lines
        assert lines[-1].startswith("Succeeded  step 3/3  canary 100%") and lines[-1].endswith("  promoted")
        phases = [line.split()[0] for line in lines]
        assert [p for i, p in enumerate(phases) if phases[i - 1 : i] != [p]] == [
            "Waiting",
            "Progressing",
            "Promoting",
            "Succeeded",
        ], lines

        # a bad rollout followed live, from just after its apply: the previous verdict is not its own
        apply_text(server, state, bad, tmp_path, "bad.yaml")
        watch = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "rollout", "status", "iris", "--watch"]
            + ["--server", server.url, "--state-dir", str(state)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        followed: list[str] = []

        def read() -> None:
            for line in watch.stdout:
                followed.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: any("to be ready" in line for line in followed), 30, what="the Waiting line")
            (tmp_path / "held" / RELEASE_FILE).touch()
            assert watch.wait(60) == 1, (followed, watch.stderr.read())
            reader.join(10)
        finally:
            if watch.poll() is None:
                watch.kill()
        lines = followed
        candidate = status(server, state)["revision"]
        assert candidate != good and len(lines) == len(set(lines)), lines
        assert lines[0].startswith(f"Waiting  canary 0%  waiting for {candidate} to be ready; "), lines
        assert lines[1] == "Progressing  step 1/3  canary 10%  step 1: 10% to the canary", lines
        assert any("check failed (1/2)" in line for line in lines[2:-1]), lines
        assert lines[-1].startswith("Failed  step 1/3  canary 0%  "), lines
        assert "rolled back after 2 failed checks" in lines[-1], lines


def test_idle_service_holds_instead_of_promoting_and_manual_control_wins(tmp_path: Path) -> None:
    with iris_with_canary(tmp_path, canary_yaml(interval="200ms")) as (server, state, stable):
        apply_text(
            server, state, isvc_yaml("iris", tmp_path / "v1", extra="    timeout: 30\n"), tmp_path, "v2.yaml"
        )
        first = wait_phase(server, state, ("Progressing",))
        wait_until(lambda: status(server, state)["iterations"] >= 3, 30, what="three idle intervals")
        held = status(server, state)
        assert (held["phase"], held["canaryWeight"]) == ("Progressing", 10) and "holding" in held["message"]
        assert "PHASE" in cli(server, state, "rollout", "status", "iris").stdout
        assert "paused" in cli(server, state, "rollout", "pause", "iris").stdout
        assert status(server, state)["phase"] == "Paused"
        cli(server, state, "rollout", "resume", "iris")
        out = cli(server, state, "rollout", "promote", "iris").stdout
        assert "promoted" in out
        wait_phase(server, state, ("Succeeded",))
        wait_for_traffic(server, state, "iris", lambda t: t == {first["revision"]: 100})
        # kubectl rollout undo: back to the previous rolled-out revision, even after the promotion.
        undone = cli(server, state, "rollout", "undo", "iris").stdout
        assert f"rolled back to revision {stable} (from {first['revision']})" in undone, undone
        wait_for_traffic(server, state, "iris", lambda t: t == {stable: 100})


def test_mirror_shadows_stable_traffic_without_changing_answers(tmp_path: Path) -> None:
    extra = "    mirror: true\n    mirrorIntervals: 2\n"
    with iris_with_canary(tmp_path, canary_yaml(extra=extra)) as (server, state, stable):
        with Load(server.url) as load:
            apply_text(
                server,
                state,
                isvc_yaml("iris", tmp_path / "v1", extra="    timeout: 30\n"),
                tmp_path,
                "v2.yaml",
            )
            mirroring = wait_phase(server, state, ("Mirroring",))
            wait_phase(server, state, ("Progressing", "Succeeded"))
        metrics = httpx.get(server.url + "/metrics").text
    mirrored = [
        line
        for line in metrics.splitlines()
        if line.startswith("serving_router_requests_total")
        and 'arm="mirror"' in line
        and f'revision="{mirroring["revision"]}"' in line
    ]
    assert mirrored and sum(float(line.rsplit(" ", 1)[1]) for line in mirrored) > 0
    assert len(load.bodies) == 1 and all(code == 200 for (_, code) in load.seen)


def test_session_affinity_keeps_a_user_on_one_arm(tmp_path: Path) -> None:
    extra = "    sessionAffinity: {header: x-user-id}\n"
    with iris_with_canary(tmp_path, canary_yaml(interval="1h", extra=extra)) as (server, state, stable):
        apply_text(
            server, state, isvc_yaml("iris", tmp_path / "v1", extra="    timeout: 30\n"), tmp_path, "v2.yaml"
        )
        wait_phase(server, state, ("Progressing",))
        wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [10, 90])
        arms: dict[str, set[str]] = {}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(3):
                for user in range(40):
                    r = client.post(
                        "/v1/models/iris:predict", content=BODY, headers={"x-user-id": f"user-{user}"}
                    )
                    arms.setdefault(f"user-{user}", set()).add(r.headers["x-serving-revision"])
    assert all(len(seen) == 1 for seen in arms.values())
    assert len({next(iter(seen)) for seen in arms.values()}) == 2  # both arms serve some users


def test_restart_resumes_the_analysis_at_its_step(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    train_iris_sklearn(v1)
    state = tmp_path / "state"
    with serving_up(state) as server:
        apply_text(server, state, isvc_yaml("iris", v1) + "---" + canary_yaml(interval="1h"), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        apply_text(server, state, isvc_yaml("iris", v1, extra="    timeout: 30\n"), tmp_path, "v2.yaml")
        before = wait_phase(server, state, ("Progressing",))
    with serving_up(state) as server:
        wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [10, 90])
        after = status(server, state)
        assert (after["phase"], after["step"], after["revision"]) == ("Progressing", 0, before["revision"])


@pytest.mark.e2e
def test_load_test_gates_the_first_step_and_its_report_is_kept(tmp_path: Path) -> None:
    extra = "    loadTest: {users: 2, duration: 2s}\n"
    with iris_with_canary(tmp_path, canary_yaml(interval="1h", extra=extra)) as (server, state, stable):
        apply_text(
            server, state, isvc_yaml("iris", tmp_path / "v1", extra="    timeout: 30\n"), tmp_path, "v2.yaml"
        )
        wait_phase(server, state, ("LoadTesting",))
        after = wait_phase(server, state, ("Progressing", "Failed"), timeout_s=120)
        assert after["phase"] == "Progressing" and after["canaryWeight"] == 10, after
        assert "load test passed" in after["message"]
        report = Path(after["loadTestReport"])
        summary = json.loads((report / "summary.json").read_text())
        assert summary["requests"] > 0 and summary["failures"] == 0


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed (install: scripts/install-test-tools)",
)
@pytest.mark.e2e  # a real Prometheus scraping serving up, queried by the canary controller
def test_promql_metric_is_templated_and_read_from_a_real_prometheus(tmp_path: Path) -> None:
    from tests.test_prometheus import prometheus

    v1 = tmp_path / "v1"
    train_iris_sklearn(v1)
    state, port = tmp_path / "state", free_port()
    query = (
        "    metrics:\n      - name: canary-series-scraped\n        thresholdRange: {min: 1}\n"
        '        query: count(serving_router_requests_total{namespace="{{ namespace }}",isvc="{{ target }}",'
        'revision="{{ revision }}"})\n'
    )
    canary = canary_yaml(interval="1s", min_requests=1).split("    metrics:")[0] + query.replace(
        "    metrics:\n", ""
    )
    canary = canary.replace("stepWeights: [10, 25, 50]", "stepWeights: [50]").replace(
        "threshold: 2", "threshold: 20"
    )
    canary = canary.replace("    minRequests: 1\n", "    minRequests: 1\n    metrics:\n")
    with serving_up(state, extra=("--prometheus-url", f"http://127.0.0.1:{port}")) as server:
        apply_text(server, state, isvc_yaml("iris", v1) + "---" + canary, tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        with prometheus(server.url.removeprefix("http://"), tmp_path, port), Load(server.url):
            apply_text(server, state, isvc_yaml("iris", v1, extra="    timeout: 30\n"), tmp_path, "v2.yaml")
            final = wait_phase(server, state, ("Succeeded", "Failed"), timeout_s=90)
    assert final["phase"] == "Succeeded", final
    assert any(r["name"] == "canary-series-scraped" and r["value"] >= 1 for r in final["lastResults"]), final


def test_deleting_a_canary_that_waits_for_its_candidate_keeps_it_at_zero(tmp_path: Path) -> None:
    """Deleted while its candidate was still loading, a Canary wrote nothing, and the candidate took 100 %
    unjudged once ready (audit /tmp/audit-canary3 H3). The split it left is 100/0: canaryTrafficPercent: 0 is
    written and said, as for a candidate it had rolled back (Flagger never promotes on deletion)."""
    (tmp_path / "held").mkdir()
    held = isvc_yaml("iris", tmp_path / "held", extra="").replace(
        "      modelFormat:", "      runtime: tests.runtimes_for_tests:SlowLoadRuntime\n      modelFormat:"
    )
    with iris_with_canary(tmp_path, canary_yaml()) as (server, state, stable):
        apply_text(server, state, held, tmp_path, "v2.yaml")
        wait_until(lambda: "to be ready" in status(server, state).get("message", ""), 30, what="Waiting")
        deleted = cli(server, state, "delete", "canary", "iris")
        assert "canaryTrafficPercent: 0 written" in deleted.stderr and "not analysed yet" in deleted.stderr
        (tmp_path / "held" / RELEASE_FILE).touch()
        candidate = get_isvc(server, state, "iris")["status"]["components"]["predictor"][
            "latestCreatedRevision"
        ]
        doc = wait_for_traffic(server, state, "iris", lambda t: candidate in t)  # ready, and in the split
        assert traffic(doc) == {stable: 100, candidate: 0}, traffic(doc)
        assert get_isvc(server, state, "iris")["spec"]["predictor"]["canaryTrafficPercent"] == 0
