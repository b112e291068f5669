"""`serving demo`: train the example models on first use, run `serving up` with the iris example, and show
a V1 and a V2 prediction through the router. It keeps serving until Ctrl-C, so the README walk-through
(apply a canary, promote, roll back) works against it.

Its state lives in a fresh temporary directory, removed at exit: a demo never brings back services from an
earlier `serving up` nor leaves any behind (`--state-dir DIR` to keep it)."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from serving.cli import build_parser
from serving.commands import up
from serving.control.local.client import DEFAULT_SERVER
from serving.demo_models import default_demo_dir, prepare_demo
from serving.port_check import ensure_port_free

IRIS_ROW = [6.8, 2.8, 4.8, 1.4]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="serve the iris example through `serving up` and answer a prediction"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep the demo's state here (default: a temporary directory removed at exit)",
    )
    p.set_defaults(func=main)


def _show_predictions(base: str, stop: threading.Event, get_hint: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.wait(0.1):
            try:
                if (
                    client.get("/v2/health/ready").status_code == 200
                    and client.get("/v1/models").json()["models"]
                ):
                    break
            except (httpx.TransportError, ValueError, KeyError):
                continue
        else:
            return
        v1 = client.post("/v1/models/sklearn-iris:predict", json={"instances": [IRIS_ROW]})
        v2 = client.post(
            "/v2/models/sklearn-iris/infer",
            json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]},
        )
    print(
        f"\nV1 {v1.status_code} (revision {v1.headers.get('x-serving-revision')}): {v1.text}\n"
        f"V2 {v2.status_code}: {v2.text}\n\n"
        f"sklearn-iris is served at {base}. Try:\n"
        f"  curl -s {base}/v1/models/sklearn-iris:predict -d '{{\"instances\": [[6.8, 2.8, 4.8, 1.4]]}}'\n"
        f"{get_hint}\n"
        "Ctrl-C drains and stops it.",
        flush=True,
    )


@contextlib.contextmanager
def _state_dir(given: Path | None, base: str) -> Iterator[tuple[Path, str]]:
    """The state directory and how another terminal's `serving get` reaches it (the CLI reads the control token
    from the default state directory, which honours XDG_STATE_HOME; a server off the CLI's default address is
    named with --server)."""
    server = "" if base == DEFAULT_SERVER else f" --server {base}"
    if given is not None:
        yield given, f"  serving get --state-dir {given}{server}"
        return
    with tempfile.TemporaryDirectory(prefix="serving-demo-", ignore_cleanup_errors=True) as home:
        yield (
            Path(home) / "serving",
            (
                f"  export XDG_STATE_HOME={home}   # in another terminal: this demo's state "
                f"(removed at exit)\n  serving get{server}"
            ),
        )


def main(args: argparse.Namespace) -> int:
    # before anything answers: predictions shown from another server on a taken port would look like ours
    ensure_port_free(args.host, args.port)
    service_yaml = prepare_demo(default_demo_dir())  # a user cache folder: works from an installed wheel
    stop = threading.Event()
    base = f"http://{args.host}:{args.port}"
    with _state_dir(args.state_dir, base) as (state_dir, get_hint):
        threading.Thread(target=_show_predictions, args=(base, stop, get_hint), daemon=True).start()
        argv = [
            "up",
            "-f",
            str(service_yaml),
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--state-dir",
            str(state_dir),
            "--log-level",
            "warning",
        ]
        up_args = build_parser(argv).parse_args(
            argv
        )  # the CLI's own parser: every flag of `up`, with its defaults
        try:
            return up.main(up_args)
        finally:
            stop.set()
