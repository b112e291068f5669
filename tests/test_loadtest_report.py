"""Load-test pieces without servers: payloads, report totals, chart, command line, wrk parsing."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from loadtests import chart, chart_png, payloads, report, runner
from serving.commands import loadtest as command
from serving.protocol import v2_codec


def test_binary_and_json_payloads_decode_to_the_same_tensor() -> None:
    binary = payloads.v2_binary_body("iris-fp32", 5)
    from_binary = v2_codec.decode_request(binary.body, str(binary.header_length)).inputs["input-0"]
    from_json = v2_codec.decode_request(payloads.v2_json_body("iris-fp32", 5)).inputs["input-0"]
    assert from_binary.dtype == np.float32 and from_binary.shape == (5, 4)
    np.testing.assert_array_equal(from_binary, from_json)
    assert binary.headers()["Inference-Header-Content-Length"] == str(binary.header_length)


def test_payloads_are_deterministic_and_sized_per_model() -> None:
    assert payloads.v1_body("iris", 2) == payloads.v1_body("iris", 2)
    assert payloads.rows("rf32", 3).shape == (3, 32)
    assert payloads.kind_for_model("onnx-iris") == "iris-fp32"
    assert payloads.kind_for_model("rf-200") == "rf32"


def test_response_checks_name_what_is_wrong() -> None:
    assert payloads.check_v1({"predictions": [1, 2]}, 2) is None
    assert "expected 3 predictions" in payloads.check_v1({"predictions": [1]}, 3)
    good = {"outputs": [{"name": "o", "shape": [2], "data": [1, 2]}]}
    assert payloads.check_v2(good, 2) is None
    assert "shape" in payloads.check_v2({"outputs": [{"shape": [1], "data": [1]}]}, 2)
    assert "no 'outputs'" in payloads.check_v2({"error": "x"}, 1)


def _entry(name: str, times: dict[str, int], failures: int, start: float, end: float) -> dict:
    return {
        "name": name,
        "method": "POST",
        "num_requests": sum(times.values()),
        "num_failures": failures,
        "response_times": times,
        "start_time": start,
        "last_request_timestamp": end,
        "max_response_time": 41.5,
    }


def test_summary_totals_and_percentiles_come_from_the_json(tmp_path: Path) -> None:
    path = tmp_path / "locust.json"
    path.write_text(
        json.dumps(
            [
                _entry("/a", {"1": 50, "2": 40}, 0, 100.0, 110.0),
                _entry("/b", {"3": 9, "40": 1}, 2, 101.0, 110.0),
            ]
        )
    )
    canary = tmp_path / "canary.json"
    canary.write_text(json.dumps({"total": 10, "revisions": {"r1": {"count": 8, "percent": 80.0}}}))
    summary = report.summarise(path, canary)
    assert (summary.requests, summary.failures, summary.duration_s, summary.rps) == (100, 2, 10.0, 10.0)
    # Locust's rule (what locust.html prints): at most int(N * p) requests strictly faster than the answer.
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == (2.0, 3.0, 40.0)
    totals = tmp_path / "locust_totals.json"
    totals.write_text(json.dumps({"stats_start_time": 98.0}))
    with_start = report.summarise(
        path, canary, totals
    )  # Locust's rps counts from when its statistics started
    assert (with_start.duration_s, with_start.rps) == (12.0, 8.3)
    assert summary.failure_ratio == pytest.approx(0.02)
    table = report.format_table(summary)
    assert "r1 80.0%" in table and "2 (2.00%)" in table


def test_chart_derives_per_second_throughput_from_cumulative_totals(tmp_path: Path) -> None:
    history = tmp_path / "h.csv"
    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,99%,Total Request Count,Total Failure Count,Total Average Response Time"
    rows = [
        "10,0,,Aggregated,0,0,N/A,N/A,N/A,0,0,0",
        "11,4,POST,/a,0,0,0,0,0,100,0,2.0",
        "11,4,,Aggregated,0,0,0,0,0,100,0,2.0",
        "12,4,,Aggregated,0,0,3,5,7,300,1,3.0",
    ]
    history.write_text("\n".join([header, *rows]) + "\n")
    cols = chart.read_history(history)
    assert cols["t"] == [0.0, 1.0, 2.0]
    assert cols["rps"] == [None, 100.0, 200.0]
    assert cols["mean"][2] == pytest.approx((900 - 200) / 200)
    assert cols["p50"] == [None, None, 3.0]
    html = chart.render(history, tmp_path / "chart.html", "t").read_text()
    assert html.count("<svg") == 3 and "http" not in html.split("</title>")[1].replace(
        "http://www.w3.org", ""
    )
    assert html.count("time since start (s)") == 3 and ">ms</text>" in html and ">req/s</text>" in html
    png = chart_png.render_png(history, tmp_path / "chart.png", "t").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_command_scenarios_match_the_runner_and_the_command_line_is_complete(tmp_path: Path) -> None:
    assert set(command.SCENARIOS) == set(runner.SCENARIOS)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["canary", "--url", "http://h:1", "--shape", "step", "--duration", "1m30s"])
    plan = runner.Plan(
        args.scenario,
        args.url,
        "m",
        8,
        8.0,
        runner.parse_duration(args.duration),
        args.shape,
        1,
        None,
        tmp_path,
    )
    cmd = runner.locust_command(plan)
    assert plan.duration_s == 90 and "CanaryUser" in cmd and "--canary-out" in cmd
    assert any(part.endswith("shapes/step.py") for part in cmd[cmd.index("-f") + 1].split(","))
    with pytest.raises(ValueError):
        runner.parse_duration("soon")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--duration", "abc"], "argument --duration: 'abc' is not a duration"),
        (["--duration", "0"], "argument --duration: '0': a load test runs for at least 1s"),
        (["--users", "0"], "argument --users: '0': must be more than 0"),
        (["--users", "two"], "argument --users: 'two' is not an integer"),
        (["--rows", "0"], "argument --rows: '0': must be more than 0"),
        (["--spawn-rate", "0"], "argument --spawn-rate: '0': must be more than 0"),
        (["--max-failure-ratio", "2"], "argument --max-failure-ratio: '2': a share of requests, from 0 to 1"),
    ],
)
def test_flags_that_ask_for_no_load_are_refused_naming_the_flag(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by argparse (exit 2) before any server starts: 0 users or 0 rows is no load test, and a 0 s
    duration used to run the 30 s default."""
    parser = argparse.ArgumentParser(prog="serving loadtest")
    command.add_arguments(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["v1", "--url", "http://h:1", *flags])
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_an_unknown_example_is_an_error_not_a_traceback() -> None:
    from loadtests.models import model_dir
    from serving.errors import ServingError

    with pytest.raises(ServingError, match="unknown example 'nosuch': expected rf-200 or one of"):
        model_dir("nosuch")


def test_an_unknown_example_names_the_yaml_examples_the_routed_modes_take(tmp_path: Path) -> None:
    """`--example iris-transformer` is a YAML example: the direct mode's error says where it is accepted."""
    import argparse

    from loadtests.runner import target
    from serving.errors import ServingError

    args = argparse.Namespace(url=None, example="nosuch", router=False)
    with pytest.raises(ServingError) as refused, target(args, "v1", tmp_path):
        pass
    said = refused.value.message
    assert "unknown example 'nosuch'" in said and "with --router" in said and "iris-transformer" in said


def test_a_failed_run_names_its_most_frequent_failures(tmp_path: Path) -> None:
    failures = tmp_path / "locust_failures.csv"
    failures.write_text(
        "Method,Name,Error,Occurrences\n"
        "POST,/v1/models/[model]:predict,\"HTTPError('503, busy')\",4\n"
        "POST,/v1/models/[model]:predict,\"CatchResponseError('HTTP 404, model nosuch')\",120\n"
    )
    assert report.top_failures(failures) == [
        "120 x POST /v1/models/[model]:predict: CatchResponseError('HTTP 404, model nosuch')",
        "4 x POST /v1/models/[model]:predict: HTTPError('503, busy')",
    ]
    assert report.top_failures(tmp_path / "absent.csv") == []


def test_bench_ratios_and_targets() -> None:
    from loadtests.bench_table import Row, annotate, format_markdown

    rows = [
        Row("ceiling", "bare Starlette V2 JSON", 16, rps=1000, p50_ms=1.0),
        Row("direct", "server V2 JSON", 16, rps=600, p50_ms=2.0),
        Row("router", "router V2 JSON", 16, rps=300, p50_ms=2.5),
        Row("batching", "RF-200 batching off", 64, rps=10, p99_ms=900),
        Row("batching", "RF-200 batching on", 64, rps=250, p99_ms=120),
        Row("binary", "1M FP32 V2 JSON", 1, rps=2, mean_ms=500),
        Row("binary", "1M FP32 V2 binary", 1, rps=20, mean_ms=40),
        Row("transformer", "transformer + predictor V1", 16, note="x"),
    ]
    annotate(rows)
    direct, router, _, rf_on, _, binary, pending = rows[1:]
    assert direct.ratio == pytest.approx(0.6) and direct.met is True
    assert router.ratio == pytest.approx(0.5) and "+0.50 ms" in router.basis and router.met is False
    assert rf_on.ratio == pytest.approx(25) and rf_on.met is True
    assert binary.ratio == pytest.approx(12.5) and binary.met is True
    assert pending.ratio is None and pending.met is None
    md = format_markdown(
        {
            "date": "d",
            "quick": True,
            "duration_s": 1,
            "rows": [r.to_dict() for r in rows],
            "machine": {"cores": 2, "platform": "p", "python": "3", "loadavg_before": [1, 1, 1]},
        }
    )
    assert "2 cores" in md and md.count("\n|") == 2 + len(rows)


def test_bench_rows_without_throughput_show_their_value_and_target() -> None:
    from loadtests.bench_table import _cells
    from loadtests.startup_bench import _row

    row = _row("coldstart", "serve iris, spawn -> /v2/health/ready", [2.0, 0.5, 0.7], "s", 0.8, "median of 3")
    assert row.value == 0.7 and row.met is True and row.load1 is not None
    cells = _cells(row)
    assert "0.70 s" in cells and "≤ 0.8 s" in cells and cells[2] == "—"
    assert _row("memory", "idle RSS, x", [120.0], "MB", 90, "").met is False


def test_a_run_into_a_used_out_folder_never_reports_the_previous_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first progress line came from the old progress.json, and a run that died left the old locust.json
    to be summarised as its own: what an earlier run wrote is gone when Locust starts; other files stay."""
    previous = {
        "locust.json": [_entry("/a", {"1": 5}, 0, 100.0, 110.0)],
        "locust_totals.json": {"stats_start_time": 99.0},
        "progress.json": {"elapsed_s": 30, "users": 4, "requests": 5, "failures": 0, "rps": 1, "p50_ms": 1},
        "summary.json": {},
        "generator.json": {},
    }
    for name, doc in previous.items():
        (tmp_path / name).write_text(json.dumps(doc))
    for name in ("locust.html", "locust_stats_history.csv", "chart.html", "server.log"):
        (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    seen: list[list[str]] = []

    def locust_that_dies_at_start(plan: runner.Plan) -> runner.LocustRun:
        seen.append(sorted(p.name for p in plan.out.iterdir()))
        (plan.out / "locust.log").write_text("ImportError: no module named locust\n")
        return runner.LocustRun(1)

    monkeypatch.setattr(runner, "run_locust", locust_that_dies_at_start)
    monkeypatch.setattr(runner, "_check_answers", lambda url: None)  # Locust never runs: nothing to load
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(
        ["v1", "--url", "http://127.0.0.1:9", "--duration", "1s", "--out", str(tmp_path)]
    )
    assert runner.run_from_args(args) == 2  # no report of its own: not the previous run's, summarised again
    assert seen == [["notes.txt"]]
    assert "wrote no report" in capsys.readouterr().err


def test_printed_percentiles_share_one_rounding_and_never_decrease(tmp_path: Path) -> None:
    """Under 1 ms Locust's median is clamped to the exact min (0.28) while p95 is a histogram key (0): the table
    printed `p50 0.280556  p95 0  p99 1`. It prints all three at the histogram's resolution, in order."""
    path = tmp_path / "locust.json"
    fast = {**_entry("/a", {"0": 96, "1": 4}, 0, 100.0, 110.0), "min_response_time": 0.280556}
    slow = {
        **_entry("/b", {"150": 100}, 0, 100.0, 110.0),
        "min_response_time": 145.5,
        "max_response_time": 147.0,
    }
    path.write_text(json.dumps([fast]))
    summary = report.summarise(path)
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == (0.280556, 0.0, 1.0)  # = locust.html
    header, values = (
        re.split(r"\s{2,}", line.strip()) for line in report.format_table(summary).splitlines()[:2]
    )
    printed = dict(zip(header, values, strict=True))
    assert (printed["p50 ms"], printed["p95 ms"], printed["p99 ms"]) == ("0", "0", "1")
    # Above 100 ms Locust's keys have 2 significant digits: a median clamped to max 147 prints as its key, 150.
    path.write_text(json.dumps([slow]))
    assert report.summarise(path).p50_ms == 147.0
    assert report.printed_percentiles(report.summarise(path)) == (150.0, 150.0, 150.0)


def test_generator_usage_measures_a_busy_process_and_says_when_a_run_was_too_short(tmp_path: Path) -> None:
    """generator.json: a Locust process near a whole core is measured as such; a run too short to sample past
    start-up says `measured: false` (not a busiest share of 0 that reads as idle), its process still counted."""
    import contextlib
    import subprocess
    import sys

    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5: pass"]
    )
    usage = runner.GeneratorUsage(busy.pid)
    usage.SKIP_S = 0.0  # the child has no start-up to skip
    while busy.poll() is None:
        usage.sample()
        with contextlib.suppress(subprocess.TimeoutExpired):
            busy.wait(0.05)  # the sampling period, not a synchronisation
    usage.save(tmp_path / "generator.json")
    measured = json.loads((tmp_path / "generator.json").read_text())
    assert measured["processes"] == 1 and measured["measured"] is True, measured
    # a share of a core it did use (how much depends on what else the machine runs: 0.3 in a loaded CI run)
    assert measured["busiest_cpu_share"] > 0 and measured["generator_limited"] == (
        measured["busiest_cpu_share"] >= runner.GeneratorUsage.BUSY
    )

    short = runner.GeneratorUsage(busy.pid)
    short.seen.add(busy.pid)  # seen during its start-up only
    short.save(tmp_path / "short.json")
    assert json.loads((tmp_path / "short.json").read_text()) == {
        "processes": 1,
        "measured": False,
        "busiest_cpu_share": 0.0,
        "generator_limited": False,
    }
