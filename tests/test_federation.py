"""The federated /metrics answers within the scraper's own timeout: a model server that accepts and never
answers costs its own samples, not the whole scrape (Prometheus sends its timeout in a header)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from serving.router.federation import ScrapeTarget, federated_exposition, scrape_budget

EXPOSITION = b"# HELP serving_requests_total Requests.\n# TYPE serving_requests_total counter\n" + (
    b'serving_requests_total{code="200"} 120.0\n'
)


async def _answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    head = f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {len(EXPOSITION)}\r\n\r\n"
    writer.write(head.encode() + EXPOSITION)
    await writer.drain()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts, reads, never answers: a replica stuck in a long call


async def _scrape(timeout_s: float) -> tuple[bytes, float]:
    good = await asyncio.start_server(_answering, "127.0.0.1", 0)
    stuck = await asyncio.start_server(_silent, "127.0.0.1", 0)
    targets = [
        ScrapeTarget(f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}", {"replica": str(i)})
        for i, s in enumerate((good, stuck))
    ]
    try:
        started = time.monotonic()
        text = await federated_exposition(targets, timeout_s=timeout_s)
        return text, time.monotonic() - started
    finally:
        for server in (good, stuck):
            server.close()


def test_a_stuck_replica_costs_its_own_samples_not_the_scrape() -> None:
    text, took = asyncio.run(_scrape(scrape_budget("0.5")))
    assert took < 0.5, took  # inside the scraper's timeout
    (family,) = text_string_to_metric_families(text.decode())
    assert [(s.labels, s.value) for s in family.samples] == [({"code": "200", "replica": "0"}, 120.0)]


def test_the_budget_stays_under_the_scrapers_timeout() -> None:
    assert scrape_budget("1") == 0.75  # Prometheus at a 1 s interval: its timeout is 1 s
    assert scrape_budget("10") == 2.0  # never longer than our own cap
    assert scrape_budget(None) == 2.0 and scrape_budget("soon") == 2.0  # other scrapers
    assert scrape_budget("0.1") == 0.05
