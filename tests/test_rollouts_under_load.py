"""Rollouts under load: canary, promote, rollback, old revision drained and stopped, replicas changed — while a steady
client load runs. Every request sent is answered, and every answer is a 200 (graceful drain on every stop,
new arms only when ready)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import httpx

from tests.support import train_iris_sklearn, wait_until
from tests.up_support import apply_text, cli, isvc_yaml, serving_up, traffic, wait_for_traffic

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'


class Load:
    """A few hundred requests/s from a background event loop; counts every request and every answer."""

    def __init__(self, url: str, concurrency: int = 8) -> None:
        self.url, self.concurrency = url, concurrency
        self.sent = 0
        self.answers: Counter = Counter()
        self.errors: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:

            async def worker() -> None:
                while not self._stop.is_set():
                    self.sent += 1
                    try:
                        r = await client.post("/v1/models/iris:predict", content=BODY)
                        self.answers[r.status_code] += 1
                    except httpx.HTTPError as exc:
                        self.errors[type(exc).__name__] += 1

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def wait_for_more(self, answers: int, what: str) -> None:
        """Every step of a rollout runs under load: wait until `answers` more requests got a 200."""
        mark = self.answers[200]
        wait_until(lambda: self.answers[200] > mark + answers, 60, what=what)

    def answered(self) -> int:
        return sum(self.answers.values()) + sum(self.errors.values())


def test_rollouts_under_load_lose_nothing(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    train_iris_sklearn(v1)
    train_iris_sklearn(v2, c=0.05)
    state = tmp_path / "state"
    with serving_up(state) as server:
        apply_text(server, state, isvc_yaml("iris", v1), tmp_path)
        (r1,) = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        with Load(server.url) as load:
            wait_until(lambda: load.answers[200] > 100, 30, what="load to start")
            apply_text(server, state, isvc_yaml("iris", v2, canary=30), tmp_path)
            doc = wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [30, 70])
            (r2,) = [r for r, p in traffic(doc).items() if p == 30]
            load.wait_for_more(150, "load on the canary split")
            cli(server, state, "rollout", "rollback", "iris")
            wait_for_traffic(server, state, "iris", lambda t: t == {r1: 100, r2: 0})
            load.wait_for_more(150, "load after the rollback")
            cli(server, state, "rollout", "promote", "iris")
            wait_for_traffic(server, state, "iris", lambda t: t == {r2: 100})  # r1 drained and stopped
            load.wait_for_more(150, "load after the promotion")
            apply_text(server, state, isvc_yaml("iris", v2, replicas=3), tmp_path)
            load.wait_for_more(150, "load on 3 replicas")
            apply_text(server, state, isvc_yaml("iris", v2, replicas=1), tmp_path)
            load.wait_for_more(150, "load after scaling down")
        assert not load.errors, load.errors
        assert load.sent == load.answered(), (load.sent, load.answers, load.errors)
        assert set(load.answers) == {200}, f"non-2xx answers during rollouts: {load.answers}"
        assert load.answers[200] > 800
