"""`serving up`'s warm spawner with real processes: a replica forked from it loads a real iris model and answers;
kill -9 of that replica is seen (exit code -9) and a new one is forked; a killed spawner takes no replica with it
and is started again, and the next replica is forked by the new one; with no spawner the next one is exec'd the
ordinary way; and the spawner and its replicas leave when the process that started it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

from serving.control.local.processes import ProcessSpec, Replica, ReplicaState
from serving.control.local.warm_spawn import WarmChild, WarmSpawner, forkable, warm_start_enabled
from tests.support import train_iris_sklearn, wait_until

IRIS_ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


async def _until(check, replica: Replica, timeout_s: float = 60.0) -> None:  # noqa: ANN001 - a predicate
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert replica.state is not ReplicaState.FAILED, replica.error
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_environment_read_at_interpreter_start_is_never_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert forkable({}) and forkable({"STORAGE_URI": "x", "SERVING_ACCESS_LOG_SAMPLE": "0.5"})
    assert not forkable({"PYTHONPATH": "/opt/code"}) and not forkable({"OMP_NUM_THREADS": "1"})
    assert not forkable({"prometheus_multiproc_dir": "/tmp/m"})
    # read by a library at import (the spawner may have imported it) or by the C library: exec, not fork
    assert not forkable({"SKLEARN_ASSUME_FINITE": "1"}) and not forkable({"TZ": "UTC"})
    assert forkable({"TZ_NAME": "x"})
    monkeypatch.delenv("SERVING_WARM_START", raising=False)
    assert warm_start_enabled(flag_off=False) and not warm_start_enabled(flag_off=True)  # --no-warm-start
    monkeypatch.setenv("SERVING_WARM_START", "0")
    assert not warm_start_enabled(flag_off=False)


@pytest.mark.e2e  # real processes: the spawner, forked replicas, kill -9
@pytest.mark.asyncio
async def test_forked_replica_answers_is_replaced_after_kill_9_and_exec_takes_over_without_spawner(
    tmp_path: Path,
) -> None:
    model = tmp_path / "iris"
    train_iris_sklearn(model)
    spawner = WarmSpawner.launch(tmp_path / "logs")
    assert spawner is not None
    spec = ProcessSpec(["serve", "--model-dir", str(model), "--name", "iris"], model_name="iris")
    replica = Replica("iris-0", spec, tmp_path / "logs", spawner=spawner)
    replica.start(lambda: None)
    try:
        await _until(lambda: replica.state is ReplicaState.READY, replica)
        first = replica.process
        assert isinstance(first, WarmChild)
        child = psutil.Process(first.pid)
        assert child.ppid() == spawner.process.pid and os.getpgid(first.pid) == first.pid  # own session
        assert child.cmdline()[1:5] == ["-m", "serving.cli", "serve", "--model-dir"]  # what `ps` shows
        async with httpx.AsyncClient(base_url=replica.url) as client:
            answer = await client.post("/v2/models/iris/infer", json=IRIS_ROW)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [0]

        os.kill(first.pid, signal.SIGKILL)
        await _until(lambda: replica.process is not first and replica.state is ReplicaState.READY, replica)
        assert first.returncode == -signal.SIGKILL and replica.restarts == 1
        second = replica.process
        assert isinstance(second, WarmChild)

        ended = spawner.process
        ended.kill()  # its replica keeps serving; the spawner is started again after a pause
        await _until(lambda: not spawner.usable, replica)
        async with httpx.AsyncClient(base_url=replica.url) as client:
            answer = await client.post("/v2/models/iris/infer", json=IRIS_ROW)
        assert answer.status_code == 200 and replica.process is second and _alive(second.pid)
        await _until(lambda: spawner.usable and spawner.process is not ended, replica)
        os.kill(second.pid, signal.SIGKILL)
        await _until(lambda: replica.process is not second and replica.state is ReplicaState.READY, replica)
        third = replica.process
        assert isinstance(third, WarmChild) and psutil.Process(third.pid).ppid() == spawner.process.pid

        spawner.log_dir = None  # from here on an ended spawner stays ended...
        spawner.process.kill()
        await _until(lambda: not spawner.usable, replica)
        os.kill(third.pid, signal.SIGKILL)  # ... so the next replica is exec'd the ordinary way
        await _until(lambda: replica.process is not third and replica.state is ReplicaState.READY, replica)
        assert not isinstance(replica.process, WarmChild)
        assert psutil.Process(replica.process.pid).ppid() == os.getpid()  # exec'd by this process
    finally:
        await replica.stop()
        spawner.close()
    assert replica.process.returncode is not None and not _alive(third.pid)


SUPERVISOR = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from serving.control.local.warm_spawn import WarmSpawner

    async def main() -> None:
        logs = Path(sys.argv[1])
        spawner = WarmSpawner.launch(logs)
        argv = ["transform", "--predictor-url", "http://127.0.0.1:9", "--model-name", "x", "--port", "0"]
        child = await spawner.spawn(argv, dict(os.environ), logs / "t.log")
        print(spawner.process.pid, child.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


@pytest.mark.e2e  # kill -9 of the process that started the spawner
def test_spawner_and_its_replicas_exit_when_their_supervisor_dies(tmp_path: Path) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        spawner_pid, child_pid = map(int, supervisor.stdout.readline().split())  # type: ignore[union-attr]
        assert _alive(spawner_pid) and _alive(child_pid)
        supervisor.kill()
        supervisor.wait(10)
        wait_until(
            lambda: not _alive(spawner_pid) and not _alive(child_pid), 30, what="spawner and replica exit"
        )
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        supervisor.communicate()
