"""Running one Locust scenario headless as a subprocess, with a progress line, a summary and a chart.

Locust runs in its own process (its gevent monkey-patching must not touch ours). Its JSON file gives
the totals, its `--csv-full-history` stats history the chart; the exit code reflects the failure ratio.
Ctrl-C or SIGTERM stops Locust early but still writes the whole report, marked stopped early (exit 128+N).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loadtests import chart, chart_png, report, servers
from loadtests.models import model_dir
from serving.durations import parse_duration_s
from serving.errors import ServingError

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "locust.conf"
SCENARIOS = {  # scenario -> (locustfile, user class)
    "v1": ("locustfiles/predict.py", "V1PredictUser"),
    "v2-json": ("locustfiles/predict.py", "V2JsonUser"),
    "v2-binary": ("locustfiles/predict.py", "V2BinaryUser"),
    "transformer": ("locustfiles/transformer.py", "TransformerUser"),
    "canary": ("locustfiles/canary.py", "CanaryUser"),
}
ROUTED = {"canary", "transformer"}  # need `serving up` (the router) when started with --example
# Every file a run writes to `--out` (Locust's, ours, the servers' logs): removed when a run starts, so a
# reused folder never shows the previous run's progress, report or CSVs as this run's.
RUN_FILES = (
    "locust.json",
    "locust.html",
    "locust.log",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
    "locust_totals.json",
    "progress.json",
    "progress.json.tmp",
    "canary.json",
    "generator.json",
    "summary.json",
    "chart.html",
    "chart.png",
    "server.log",
    "router.log",
)


STOP_WAIT_S = 30.0  # for Locust to stop its users (locust.conf's stop-timeout 5s) and write its report


class StopSignal(KeyboardInterrupt):
    """SIGTERM (`kill %1` of a backgrounded run) unwound like Ctrl-C, naming its signal for the report."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


@dataclass
class LocustRun:
    code: int  # Locust's exit code
    stopped_by: int | None = None  # the signal that stopped the run before its duration, if one did


@dataclass
class Plan:
    scenario: str
    url: str
    model: str
    users: int
    spawn_rate: float
    duration_s: int
    shape: str
    rows: int
    payload: str | None
    out: Path
    tag: str | None = None  # x-serving-tag on every request (e.g. `latest`: the canary arm only)
    processes: int = 1  # Locust worker processes (`--processes`; -1: one per core)


def parse_duration(text: str) -> int:
    """'30s', '2m', '1h', '1m30s' or plain seconds -> whole seconds (ValueError otherwise)."""
    return round(parse_duration_s(text))


def locust_command(plan: Plan) -> list[str]:
    locustfile, user_class = SCENARIOS[plan.scenario]
    prefix = str(plan.out / "locust")
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "--config",
        str(CONFIG),
        "-f",
        f"{HERE / locustfile},{HERE / 'shapes' / (plan.shape + '.py')}",
        user_class,
        "--host",
        plan.url,
        "--users",
        str(plan.users),
        "--spawn-rate",
        str(plan.spawn_rate),
        "--run-time",
        f"{plan.duration_s}s",
        "--json-file",
        prefix,
        "--html",
        prefix + ".html",
        "--csv",
        prefix,
        "--csv-full-history",
        "--progress-file",
        str(plan.out / "progress.json"),
        "--totals-file",
        str(plan.out / "locust_totals.json"),
        "--model-name",
        plan.model,
        "--rows",
        str(plan.rows),
    ]
    if plan.payload:
        cmd += ["--payload", plan.payload]
    if plan.tag:
        cmd += ["--serving-tag", plan.tag]
    if plan.scenario == "canary":
        cmd += ["--canary-out", str(plan.out / "canary.json")]
    if plan.processes != 1:
        if plan.scenario == "canary":  # the observed split lives in each process's users: it would be lost
            raise ValueError(
                "--processes is not available for the canary scenario (its split is counted in-process)"
            )
        cmd += ["--processes", str(plan.processes)]
    return cmd


def _progress(plan: Plan) -> str | None:
    try:
        p = json.loads((plan.out / "progress.json").read_text())
    except (OSError, ValueError):
        return None
    return (
        f"[{p['elapsed_s']:>5.0f}/{plan.duration_s}s] users {p['users']:>4}  req/s {p['rps']:>8.1f}  "
        f"p50 {p['p50_ms']:>4g} ms  p95 {p['p95_ms']:>4g} ms  requests {p['requests']}  failures {p['failures']}"
    )


def run_locust(plan: Plan) -> LocustRun:
    """Run Locust to completion, printing a progress line (in place on a terminal, every 5 s otherwise). Ctrl-C
    or SIGTERM (StopSignal) stops it early as Locust's own Ctrl-C does, so it still writes its report; a second
    one while it does stops it at once."""
    plan.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(servers.REPO), os.environ.get("PYTHONPATH", "")])}
    # A coverage tracer inherited from a measured parent (the test suite under `coverage run`) would make
    # Locust, not the server, the limit: the load generator runs untraced.
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    env.pop("COVERAGE_PROCESS_START", None)
    tty = sys.stderr.isatty()
    with (plan.out / "locust.log").open("wb") as log, _sigint_reaches_children():
        process = subprocess.Popen(  # its own group: with --processes its workers are stopped with it
            locust_command(plan),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=servers.REPO,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + plan.duration_s + 120
    last_print = 0.0
    usage = GeneratorUsage(process.pid)
    stopped_by = None
    try:
        try:
            while process.poll() is None:
                usage.sample()
                if time.monotonic() > deadline:
                    break
                line = _progress(plan)
                if line and (tty or time.monotonic() - last_print >= 5):
                    print(
                        ("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True
                    )
                    last_print = time.monotonic()
                time.sleep(0.5)
        except KeyboardInterrupt as exc:
            stopped_by = exc.signum if isinstance(exc, StopSignal) else signal.SIGINT
            _stop_early(process, stopped_by, tty)
    finally:
        servers.stop_process(process, timeout_s=5)
        # a master stopped while its workers were still connecting exits without them (Locust's own TODO):
        # none of its group may go on loading the target
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    if tty:
        print(file=sys.stderr)
    usage.save(plan.out / "generator.json")
    return LocustRun(process.returncode, stopped_by)


@contextlib.contextmanager
def _sigint_reaches_children() -> Iterator[None]:
    """Run as a background job of a script (`serving loadtest ... &` in `sh`), we start with SIGINT ignored, and
    Locust would inherit that and never stop early with its report. While it starts, SIGINT is caught here (a
    no-op, so still ignored by us), which its exec resets to the default."""
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_early(process: subprocess.Popen[bytes], signum: int, tty: bool) -> None:
    """SIGINT to Locust's master (its own session: a terminal's Ctrl-C reaches only us), which stops its users
    and workers and writes locust.json and locust.html as at the end of a run."""
    name = signal.Signals(signum).name
    print(
        ("\n" if tty else "") + f"{name}: stopping the load test early; writing its report", file=sys.stderr
    )
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_WAIT_S)


class GeneratorUsage:
    """Locust's own CPU, per process, over the run (sampled; its start-up skipped): a process near 100 % of
    a core is the limit, not the server, and the report says so."""

    BUSY = 0.9
    SKIP_S = 2.0  # imports and spawning users are not load generation

    def __init__(self, pid: int) -> None:
        self.pid, self.started = pid, time.monotonic()
        self.seen: set[int] = set()  # every Locust process, start-up included
        self.first: dict[int, tuple[float, float]] = {}  # pid -> (when, CPU seconds) at its first sample
        self.last: dict[int, tuple[float, float]] = {}

    def sample(self) -> None:
        import psutil

        now = time.monotonic()
        try:
            root = psutil.Process(self.pid)
            processes = (root, *root.children(recursive=True))
            self.seen.update(p.pid for p in processes)
            if now - self.started < self.SKIP_S:
                return
            for process in processes:
                times = process.cpu_times()
                self.last[process.pid] = (now, times.user + times.system)
                self.first.setdefault(process.pid, self.last[process.pid])
        except psutil.Error:
            pass

    def busiest(self) -> float | None:
        """The highest share of one core any Locust process used between its first and last sample; None when
        no process was sampled for a second past its start-up (a run of a few seconds)."""
        shares = [
            (cpu - self.first[pid][1]) / (when - self.first[pid][0])
            for pid, (when, cpu) in self.last.items()
            if when - self.first[pid][0] >= 1.0
        ]
        return max(shares, default=None)

    def save(self, path: Path) -> None:
        busiest = self.busiest()
        limited = busiest is not None and busiest >= self.BUSY
        path.write_text(
            json.dumps(
                {
                    "processes": len(self.seen),
                    "measured": busiest is not None,
                    "busiest_cpu_share": round(busiest or 0.0, 3),
                    "generator_limited": limited,
                }
            )
        )
        if limited:
            print(
                f"note: the load generator was the limit (a Locust process used {busiest or 0:.0%} of a core); "
                "add --processes to measure the server",
                file=sys.stderr,
            )


@contextlib.contextmanager
def target(args: argparse.Namespace, scenario: str, out: Path) -> Iterator[str]:
    """The URL to load: `--url` as given, or an example started here (and stopped afterwards)."""
    if args.url:
        url = args.url.rstrip("/")
        _check_answers(url)
        yield url
        return
    name = args.example
    if not (args.router or scenario in ROUTED):
        try:
            folder = model_dir(name)
        except ServingError as exc:
            routed = ", ".join(servers.example_names())
            raise ServingError(
                f"{exc.message} (a model folder, served alone; with --router, or in the transformer and canary "
                f"scenarios, an examples/ InferenceService YAML instead: {routed})"
            ) from None
        with servers.serving_serve(folder, out / "server.log") as server:
            yield server.url
        return
    from serving.demo_models import ensure_example_models

    ensure_example_models()
    yaml_file = servers.example_yaml(name)
    with (
        tempfile.TemporaryDirectory(prefix="loadtest-state-") as state,
        servers.serving_up([yaml_file], [name], Path(state), out / "router.log") as router,
    ):
        if scenario == "canary":
            canary = sorted(servers.EXAMPLES.glob(f"{name}-*canary*.yaml"))
            if not canary:
                raise ValueError(f"no canary YAML examples/{name}-*canary*.yaml for example {name!r}")
            servers.apply_canary(router, canary[0], name)
        yield router.url


def _check_answers(url: str) -> None:
    """Something must listen at `--url`: otherwise every request fails to connect for the whole run, and the
    report blames the server for what was a typo or a server never started."""
    import httpx

    try:
        httpx.get(url + "/v2/health/live", timeout=10)
    except httpx.TransportError as exc:
        raise ServingError(
            f"nothing answers at {url} ({type(exc).__name__}: {exc}); start it first "
            "(`serving up`, `serving serve`), or let the load test start an example: --example sklearn-iris"
        ) from None


def clear_previous_run(out: Path) -> None:
    """Remove what an earlier run left in `out` (only the files a run writes; anything else stays)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def run_from_args(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (args.out or servers.RESULTS / f"{args.scenario}-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    clear_previous_run(out)
    duration_s = parse_duration(args.duration)
    with target(args, args.scenario, out) as url:
        plan = Plan(
            args.scenario,
            url,
            args.model or args.example or "sklearn-iris",
            args.users,
            args.spawn_rate or float(args.users),
            duration_s,
            args.shape,
            args.rows,
            args.payload,
            out,
            getattr(args, "tag", None),
            getattr(args, "processes", 1),
        )
        print(
            f"loadtest {plan.scenario} ({plan.shape}, {plan.users} users, {duration_s}s) -> {url}",
            file=sys.stderr,
        )
        run = run_locust(plan)
    code = finish(plan, run, args.max_failure_ratio)
    # stopped early: 128 + the signal, as a shell reports a process it stopped (130 Ctrl-C, 143 SIGTERM), after
    # the report; never 0, as a run cut short passed nothing
    return 128 + run.stopped_by if run.stopped_by is not None else code


def finish(plan: Plan, run: LocustRun, max_failure_ratio: float) -> int:
    """Summarise, chart, and turn the failure ratio into the exit code."""
    json_file = plan.out / "locust.json"
    if not json_file.exists():
        tail = (plan.out / "locust.log").read_text(errors="replace")[-3000:]
        print(f"locust exited with {run.code} and wrote no report:\n{tail}", file=sys.stderr)
        return 2
    summary = report.summarise(json_file, plan.out / "canary.json", plan.out / "locust_totals.json")
    summary.planned_duration_s = plan.duration_s
    if run.stopped_by is not None:
        summary.stopped_by = signal.Signals(run.stopped_by).name
    (plan.out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    history = plan.out / "locust_stats_history.csv"
    written = ["locust.json", "locust.html", "summary.json"]
    if history.exists():
        title = f"serving loadtest {plan.scenario} ({plan.shape}) {plan.url}"
        chart.render(history, plan.out / "chart.html", title)
        written.append("chart.html")
        written += _png(history, plan.out / "chart.png", title)
    print(report.format_table(summary))
    if summary.failures:
        print(
            "most frequent failures:\n  " + "\n  ".join(report.top_failures(plan.out / "locust_failures.csv"))
        )
    print(f"report: {plan.out}/ ({', '.join(written)})")
    if summary.requests == 0 or summary.failure_ratio > max_failure_ratio:
        print(
            f"FAILED: failure ratio {summary.failure_ratio:.2%} over {summary.requests} requests "
            f"exceeds {max_failure_ratio:.2%}",
            file=sys.stderr,
        )
        return 1
    return 0


def _png(history: Path, out: Path, title: str) -> list[str]:
    """chart.png when matplotlib is installed (it comes with the `test` extra); a hint otherwise."""
    try:
        chart_png.render_png(history, out, title)
    except ImportError:
        print("no chart.png: matplotlib is not installed (pip install -e '.[test]')", file=sys.stderr)
        return []
    return [out.name]
