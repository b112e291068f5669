"""The HTTP ceiling: a bare Starlette app that reads the request body and returns a fixed reply.

Same routes and reply sizes as the model server for single-row iris requests, served by uvicorn with
the model server's settings (uvloop + httptools, no access log, one worker), so the ratio
model-server / ceiling is what our code costs on top of Starlette and uvicorn.
Run: `python -m loadtests.ceiling_app --port 8081`.
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

V1_REPLY = b'{"predictions":[1]}'
V2_REPLY = (
    b'{"model_name":"sklearn-iris","outputs":[{"name":"output-0","datatype":"INT64","shape":[1],'
    b'"data":[1]}],"model_version":"1"}'
)


async def v1_predict(request: Request) -> Response:
    await request.body()
    return Response(V1_REPLY, media_type="application/json")


async def v2_infer(request: Request) -> Response:
    await request.body()
    return Response(V2_REPLY, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
            Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    uvicorn.run(
        build_app(),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        workers=1,
    )


if __name__ == "__main__":
    main()
