"""Our HTTP/1.1 client (serving.http_client, the router's upstream client) keeps connections alive and recovers from ones the server closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving.http_client import HTTPClient
from tests.inprocess import serving_inprocess
from tests.support import train_iris_sklearn

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'


def test_connections_are_reused_and_stale_ones_replaced(tmp_path: Path) -> None:
    train_iris_sklearn(tmp_path / "iris")
    with serving_inprocess(["serve", "--model-dir", str(tmp_path / "iris")]) as server:

        async def run() -> tuple[int, list[int]]:
            pool = HTTPClient()
            connects = 0
            original = pool._connect

            async def counting(endpoint, deadline):  # noqa: ANN001, ANN202
                nonlocal connects
                connects += 1
                return await original(endpoint, deadline)

            pool._connect = counting  # type: ignore[method-assign]
            path = "/v1/models/iris:predict"
            statuses = [(await pool.request(server.url, "POST", path, [], BODY, 10))[0] for _ in range(20)]
            reused = connects
            for conn in pool._endpoints[server.url].idle:
                conn.transport.close()  # as if the server had dropped its idle keep-alive connection
            statuses.append((await pool.request(server.url, "POST", path, [], BODY, 10))[0])
            pool.close()
            return reused, statuses

        reused, statuses = asyncio.run(run())
    assert statuses == [200] * 21
    assert reused == 1, f"20 sequential requests opened {reused} connections"
