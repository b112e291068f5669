"""CI smoke load tests: `serving loadtest` against real servers for a few seconds.

Locust runs as a subprocess (its gevent patching must stay out of pytest). Assertions are on the
JSON report totals and the files written, never on timings.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.inprocess import serving_inprocess
from tests.support import REPO

pytestmark = pytest.mark.e2e  # Locust processes against real servers


def start_loadtest(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "loadtest", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(run: subprocess.Popen, timeout_s: float = 90) -> subprocess.CompletedProcess:
    stdout, stderr = run.communicate(timeout=timeout_s)
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


def loadtest(*args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    return finished(start_loadtest(*args), timeout_s)


@pytest.fixture(scope="module")
def iris_server(model_repo: Path):
    with serving_inprocess(["serve", "--model-dir", str(model_repo / "sklearn-iris")]) as server:
        yield server


RUNS = (
    ("v1", "step", 1),
    ("v2-binary", "spike", 1),
    ("v2-json", "constant", 2),
)  # scenario, shape, --processes


def test_loadtest_against_a_url_has_no_failures_and_writes_reports(iris_server, tmp_path: Path) -> None:
    """Each scenario, shape and process count once; the runs go side by side (each its own Locust and
    report folder), which checks that concurrent runs keep their reports apart, and takes a third of the time."""
    runs = {
        scenario: start_loadtest(
            scenario,
            "--url",
            iris_server.url,
            "--model",
            "sklearn-iris",
            "--users",
            "4",
            "--shape",
            shape,
            "--duration",
            "2s",  # generator.json samples Locust's CPU once a second
            "--rows",
            "3",
            "--out",
            str(tmp_path / scenario),
            "--processes",
            str(processes),
        )
        for scenario, shape, processes in RUNS
    }
    # beside them (one Locust start-up less for the suite): a run whose every request fails exits 1
    failing = start_loadtest(
        *(
            "v2-json",
            "--url",
            iris_server.url,
            "--model",
            "no-such-model",
            "--users",
            "2",
            "--duration",
            "1s",
        ),
        *("--out", str(tmp_path / "failing")),
    )
    _assert_failures_over_the_threshold_exit_1(finished(failing), tmp_path / "failing")
    for scenario, _, processes in RUNS:
        run, out = finished(runs[scenario]), tmp_path / scenario
        assert run.returncode == 0, f"{scenario}: {run.stdout}{run.stderr}"
        generator = json.loads((out / "generator.json").read_text())  # Locust's own CPU: who was the limit
        assert (
            generator["processes"] >= processes
            and 0 <= generator["busiest_cpu_share"]
            and "generator_limited" in generator
        ), (scenario, generator)
        entries = json.loads((out / "locust.json").read_text())
        assert sum(e["num_requests"] for e in entries) > 0, scenario
        assert sum(e["num_failures"] for e in entries) == 0, scenario
        for name in ("locust.html", "chart.html", "summary.json", "locust_stats_history.csv"):
            assert (out / name).stat().st_size > 0, (scenario, name)
        assert "<svg" in (out / "chart.html").read_text()
        assert (out / "chart.png").read_bytes().startswith(b"\x89PNG")
        assert "req/s" in run.stdout and "p99 ms" in run.stdout
        _assert_summary_agrees_with_locusts_report(out)


def _assert_summary_agrees_with_locusts_report(out: Path) -> None:
    """summary.json says what locust.html's Aggregated row says (Locust's page rounds min/max to whole ms)."""
    args = re.search(r"window\.templateArgs = (\{.*\})\s*$", (out / "locust.html").read_text(), re.MULTILINE)
    assert args, "locust.html has no templateArgs"
    row = next(r for r in json.loads(args.group(1))["requests_statistics"] if r["name"] == "Aggregated")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["requests"], summary["failures"]) == (row["num_requests"], row["num_failures"])
    # ... and so does locust_totals.json, written by the master with `--processes` once the workers' final
    # reports are in (at test_stop they were not: it undercounted)
    totals = json.loads((out / "locust_totals.json").read_text())
    assert (totals["requests"], totals["failures"]) == (row["num_requests"], row["num_failures"])
    # Within 0.2 %: with `--processes`, the master's report and its totals are merged from the workers' last
    # reports, which can land a few ms apart (seen once in CI: 780.6 against 781.44 req/s).
    assert summary["rps"] == pytest.approx(row["total_rps"], rel=0.002, abs=0.06)
    assert summary["avg_ms"] == pytest.approx(row["avg_response_time"], abs=0.006)
    assert summary["p50_ms"] == row["median_response_time"]
    assert (summary["p95_ms"], summary["p99_ms"]) == (
        row["response_time_percentile_0.95"],
        row["response_time_percentile_0.99"],
    )
    assert summary["max_ms"] == pytest.approx(row["max_response_time"], abs=0.51)


def test_processes_are_refused_where_they_would_lose_counts(tmp_path: Path) -> None:
    for args, says in ((("canary", "--processes", "2"), "canary"), (("v1", "--processes", "0"), "positive")):
        run = loadtest(args[0], "--url", "http://127.0.0.1:9", *args[1:], "--out", str(tmp_path))
        assert run.returncode != 0 and says in run.stderr, run.stderr
    # nothing listening: said at once, not a full run of connection failures blamed on a server
    run = loadtest(
        "v1", "--url", "http://127.0.0.1:9", "--duration", "60s", "--out", str(tmp_path), timeout_s=30
    )
    assert run.returncode == 2 and "nothing answers at http://127.0.0.1:9 (ConnectError" in run.stderr, (
        run.stderr
    )
    assert not (tmp_path / "locust.json").exists()


def _assert_failures_over_the_threshold_exit_1(run: subprocess.CompletedProcess, out: Path) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == summary["requests"]
    assert "exceeds" in run.stderr
    # its process counted; whether 1 s was sampled past Locust's start-up depends on the machine's load (a
    # short run's `measured: false` is checked with a controlled process in test_loadtest_report.py)
    generator = json.loads((out / "generator.json").read_text())
    assert generator["processes"] >= 1 and (generator["measured"] or generator["busiest_cpu_share"] == 0), (
        generator
    )


def test_canary_split_through_the_router(tmp_path: Path) -> None:
    """`serving up` with the sklearn-iris example, its 20 % canary applied; both revisions answer."""
    run = loadtest(
        "canary",
        "--example",
        "sklearn-iris",
        "--users",
        "4",
        "--duration",
        "2s",
        "--out",
        str(tmp_path),
        timeout_s=150,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    split = json.loads((tmp_path / "canary.json").read_text())
    assert len(split["revisions"]) == 2, split
    canary = min(split["revisions"].values(), key=lambda r: r["percent"])
    assert 5.0 <= canary["percent"] <= 40.0, split  # configured 20 %; plausible, not exact
    assert sum(r["count"] for r in split["revisions"].values()) == split["total"] > 0
    assert "observed canary split" in run.stdout


def test_transformer_scenario_through_serving_up(tmp_path: Path) -> None:
    """examples/transformer/iris-transformer.yaml: records in, labels out, checked by the user class."""
    run = loadtest(
        "transformer",
        "--example",
        "iris-transformer",
        "--users",
        "2",
        "--duration",
        "1s",
        "--out",
        str(tmp_path),
        timeout_s=150,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    entries = json.loads((tmp_path / "locust.json").read_text())
    assert sum(e["num_requests"] for e in entries) > 0
    assert sum(e["num_failures"] for e in entries) == 0


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in router: answers every scenario's request (one row) and counts the x-serving-tag it got."""

    tags: Counter[str] = Counter()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _Recorder.tags[self.headers.get("x-serving-tag", "(none)")] += 1
        if self.path.startswith("/v2/"):
            doc: dict = {"outputs": [{"name": "o", "datatype": "INT64", "shape": [1], "data": [0]}]}
        else:
            doc = {"predictions": ["setosa"]}  # labels: what the transformer scenario checks for
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-serving-revision", "iris-00001")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def recorder() -> Iterator[str]:
    _Recorder.tags.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_scenario_sends_the_tag_with_every_request(recorder: str, tmp_path: Path) -> None:
    """`--tag NAME` pins the router to that arm: every request of every scenario carries it (one tag per
    scenario here, so that one run of the three at once shows which scenario sent what)."""
    scenarios = ("canary", "transformer", "v2-binary")
    runs = {
        scenario: start_loadtest(
            *(scenario, "--url", recorder, "--model", "sklearn-iris", "--users", "1", "--duration", "1s"),
            *("--tag", f"tag-{scenario}", "--out", str(tmp_path / scenario)),
        )
        for scenario in scenarios
    }
    for scenario, run in runs.items():
        done = finished(run)
        assert done.returncode == 0, f"{scenario}: {done.stdout}{done.stderr}"
    assert set(_Recorder.tags) == {f"tag-{s}" for s in scenarios}, _Recorder.tags
    assert all(_Recorder.tags[f"tag-{s}"] > 0 for s in scenarios), _Recorder.tags


def test_sigterm_stops_locust_with_the_run(iris_server, tmp_path: Path) -> None:
    """`kill %1` on a backgrounded `serving loadtest ... &` must not leave Locust loading the server."""
    import signal

    import psutil

    from loadtests.servers import wait_until

    run = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "loadtest", "v1", "--url", iris_server.url]
        + ["--model", "sklearn-iris", "--users", "2", "--processes", "2", "--duration", "5m"]
        + ["--out", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    generators: list[psutil.Process] = []
    try:
        parent = psutil.Process(run.pid)
        wait_until(lambda: len(parent.children(recursive=True)) >= 3, 60, what="locust master and workers")
        generators = parent.children(recursive=True)
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) != 0
        gone, alive = psutil.wait_procs(generators, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for process in [*generators, psutil.Process(run.pid)] if run.poll() is None else generators:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def test_sigterm_or_ctrl_c_stops_the_run_early_with_its_whole_report(iris_server, tmp_path: Path) -> None:
    """`kill %2` on README's backgrounded `serving loadtest ... &` (SIGTERM; a script's background job also
    starts with SIGINT ignored, which Locust inherited) and Ctrl-C (SIGINT) each stop Locust early, leave none of
    its processes loading the server, and still write the whole report, saying it was stopped early (it wrote
    no summary, locust.json, locust.html or chart and exited 130). Two runs side by side: one Locust start-up."""
    import signal

    import psutil

    from loadtests.servers import wait_until

    def start(out: Path, processes: str, ignore_sigint: bool) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "loadtest", "v1", "--url", iris_server.url]
            + ["--model", "sklearn-iris", "--users", "2", "--processes", processes, "--duration", "5m"]
            + ["--out", str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as `sh` starts a background job: SIGINT ignored
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
        )

    def loading(out: Path) -> bool:
        """Locust's progress file counts requests: the run is under way (polled, never a fixed sleep)."""
        try:
            return json.loads((out / "progress.json").read_text())["requests"] > 0
        except (OSError, ValueError):
            return False

    runs = {  # signal -> (run, its --out)
        signal.SIGTERM: (start(tmp_path / "term", "1", ignore_sigint=True), tmp_path / "term"),
        signal.SIGINT: (start(tmp_path / "int", "1", ignore_sigint=False), tmp_path / "int"),
    }
    generators: list[psutil.Process] = []
    try:
        for signum, (run, out) in runs.items():
            wait_until(lambda out=out: loading(out), 60, what=f"{out.name}: Locust under way", process=run)
            generators += psutil.Process(run.pid).children(recursive=True)
            run.send_signal(signum)
        for signum, (run, out) in runs.items():
            done = finished(run, timeout_s=60)
            assert done.returncode == 128 + signum, done.stdout + done.stderr
            assert f"STOPPED EARLY by {signum.name}" in done.stdout and "report:" in done.stdout, done.stdout
            for name in (
                "summary.json",
                "locust.json",
                "locust.html",
                "chart.html",
                "locust_stats_history.csv",
            ):
                assert (out / name).stat().st_size > 0, (signum.name, name)
            assert (out / "chart.png").read_bytes().startswith(b"\x89PNG")
            summary = json.loads((out / "summary.json").read_text())
            assert summary["stopped_early"] is True and summary["stopped_by"] == signum.name, summary
            assert summary["planned_duration_s"] == 300 and 0 < summary["duration_s"] < 60, summary
            assert summary["requests"] > 0 and summary["failures"] == 0, summary
            _assert_summary_agrees_with_locusts_report(out)
        gone, alive = psutil.wait_procs(generators, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        assert len(generators) >= 2, generators
    finally:
        for run, _ in runs.values():
            if run.poll() is None:
                run.kill()
                run.communicate()
        for process in generators:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
