"""CPU and memory of replica processes (psutil), as the cpu/memory scale metrics read them.

CPU: percent of one core summed over the pids since the previous reading (psutil keeps that per Process
object, so they are cached). Memory: RSS summed, as a percent of this machine's memory. In-process test
replicas have no pid: they read as zero.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil


class ProcessUsage:
    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}

    def _alive(self, pids: Iterable[int], started: list[int] | None = None) -> list[psutil.Process]:
        """The processes of `pids` still running; those seen for the first time are added to `started`."""
        out = []
        for pid in pids:
            process = self._processes.get(pid)
            if process is None:
                try:
                    process = self._processes[pid] = psutil.Process(pid)
                    process.cpu_percent(None)  # the first reading only starts the interval
                except psutil.Error:
                    continue
                if started is not None:
                    started.append(pid)
            out.append(process)
        return out

    def cpu_percent(self, pids: Iterable[int]) -> float:
        """A process seen for the first time counts 0 in this reading: read again microseconds after its
        interval started, one clock tick of CPU would read as thousands of percent."""
        total = 0.0
        started: list[int] = []
        for process in self._alive(pids, started):
            if process.pid in started:
                continue
            try:
                total += process.cpu_percent(None)
            except psutil.Error:
                self._processes.pop(process.pid, None)
        return total

    def memory_percent(self, pids: Iterable[int]) -> float:
        rss = 0
        for process in self._alive(pids):
            try:
                rss += process.memory_info().rss
            except psutil.Error:
                self._processes.pop(process.pid, None)
        total: int = psutil.virtual_memory().total
        return 100.0 * rss / total
