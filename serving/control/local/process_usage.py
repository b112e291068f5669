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

    def _alive(self, pids: Iterable[int]) -> list[psutil.Process]:
        out = []
        for pid in pids:
            process = self._processes.get(pid)
            if process is None:
                try:
                    process = self._processes[pid] = psutil.Process(pid)
                    process.cpu_percent(None)  # the first reading only starts the interval
                except psutil.Error:
                    continue
            out.append(process)
        return out

    def cpu_percent(self, pids: Iterable[int]) -> float:
        total = 0.0
        for process in self._alive(pids):
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
