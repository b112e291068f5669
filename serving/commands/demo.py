"""`serving demo`: train the iris example on first use, serve it, and show a V1 and a V2 prediction."""

from __future__ import annotations

import argparse
import threading

import httpx

from serving.demo_models import ensure_example_models
from serving.server import ServerConfig, run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="serve the iris example and answer a prediction")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=main)


def _show_predictions(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(600):
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.05)
        v1 = client.post("/v1/models/sklearn-iris:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
        v2 = client.post(
            "/v2/models/sklearn-iris/infer",
            json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}]},
        )
    print(f"\nV1 {v1.status_code}: {v1.text}\nV2 {v2.status_code}: {v2.text}")
    print(
        f"\nServing sklearn-iris at {base} — try:\n"
        f"  curl -s {base}/v1/models/sklearn-iris:predict -d '{{\"instances\": [[6.8, 2.8, 4.8, 1.4]]}}'\n"
        "Ctrl-C stops it.",
        flush=True,
    )


def main(args: argparse.Namespace) -> int:
    models = ensure_example_models()
    base = f"http://{args.host}:{args.port}"
    threading.Thread(target=_show_predictions, args=(base,), daemon=True).start()
    run(ServerConfig(model_dir=str(models / "sklearn-iris"), host=args.host, port=args.port, log_level="warning"))
    return 0
