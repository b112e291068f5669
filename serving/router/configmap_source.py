"""The in-cluster router's RouteSource: the route table the operator writes into a ConfigMap.

Polls (every `interval_s`, one GET) rather than watches: a watch needs reconnect/relist logic for little
gain at one table per second, and a poll recovers from any API hiccup by itself. `on_table` is called with
each new table (a changed `version`), never twice for the same one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from serving.cluster import ROUTES_KEY, Cluster, ClusterError
from serving.router.table import RouteTable

log = logging.getLogger("serving.router")


class ConfigMapSource:
    def __init__(
        self, namespace: str, name: str, cluster: Cluster | None = None, interval_s: float = 1.0
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.cluster = cluster
        self.interval_s = interval_s
        self._last: str | None = None

    def read(self) -> RouteTable | None:
        """The table now in the ConfigMap, or None when it is absent or unchanged since the last read."""
        cluster = self.cluster = self.cluster or Cluster.from_environment()
        cm = cluster.get("ConfigMap", self.namespace, self.name)
        text = ((cm or {}).get("data") or {}).get(ROUTES_KEY)
        if text is None or text == self._last:
            return None
        table = RouteTable.from_json(json.loads(text))
        self._last = text
        return table

    async def run(self, on_table: Callable[[RouteTable], None]) -> None:
        while True:
            try:
                table = await asyncio.to_thread(self.read)
            except (ClusterError, ValueError, KeyError) as exc:  # keep the last good table
                log.warning("route ConfigMap %s/%s: %s", self.namespace, self.name, exc)
            else:
                if table is not None:
                    log.info("route table version %d: %d services", table.version, len(table.services))
                    on_table(table)
            await asyncio.sleep(self.interval_s)
