"""Every server of ours starts with the same HTTP settings (serving/http/launcher.py): a real uvicorn on port 0
inside the test's loop, built by `http_config`, answers oversized heads with 431 JSON and malformed HTTP
with 400 JSON, and the commands that serve HTTP all go through `run_http_server`."""

from __future__ import annotations

import asyncio
import inspect
import pickle

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving.http.launcher import HTTP_PROTOCOL, http_config


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # the server closes after an error answer
    writer.close()
    return answer


@pytest.mark.asyncio
async def test_http_config_brings_the_header_limit_and_json_errors() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    config = http_config(app, "127.0.0.1", 0, max_header_bytes=1024, lifespan="off")
    protocol = config.http  # our class with its timeouts, a partial that pickles for worker processes
    assert f"{protocol.func.__module__}:{protocol.func.__name__}" == HTTP_PROTOCOL
    assert protocol.keywords == {"header_timeout_s": 30.0, "body_timeout_s": 30.0}
    assert pickle.loads(pickle.dumps(protocol)).func is protocol.func
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)  # polling readiness
        port = server.servers[0].sockets[0].getsockname()[1]
        big = await _raw(port, b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4096 + b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431")
        assert "over the limit of 1024 bytes" in orjson.loads(big.split(b"\r\n\r\n", 1)[1])["error"]
        bad = await _raw(port, b"NOT HTTP AT ALL\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400") and b'"error"' in bad
    finally:
        server.should_exit = True
        await task


def test_every_http_command_starts_through_the_launcher() -> None:
    from serving import server
    from serving.commands import router, up
    from serving.transformers import server as transformer_server

    for module in (server, router, up, transformer_server):
        source = inspect.getsource(module)
        assert "run_http_server(" in source and "uvicorn.run(" not in source, module.__name__
