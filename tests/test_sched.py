"""`serving up`'s CPU scheduling policy (serving/sched.py): applied to the calling thread, inherited by the
processes it starts, refused cleanly for an unknown name. Each case runs in a child Python so the test
process keeps its own policy. (`tests/test_up_faults.py` checks it on a real router and its replicas.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from serving import sched
from serving.cli import build_parser

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")

CHILD_POLICY = "subprocess.run([sys.executable, '-c', 'import os; print(os.sched_getscheduler(0))'])"


def _run(code: str, env: dict[str, str] | None = None) -> list[str]:
    script = f"import os, subprocess, sys\nfrom serving import sched\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_batch_is_applied_and_inherited_by_the_processes_started_after() -> None:
    out = _run(f"print(sched.apply('batch'), os.sched_getscheduler(0))\n{CHILD_POLICY}")
    assert out == ["True", str(os.SCHED_BATCH), str(os.SCHED_BATCH)]


def test_normal_restores_the_kernels_default() -> None:
    out = _run(
        f"sched.apply('batch')\nprint(sched.apply('normal'), os.sched_getscheduler(0))\n{CHILD_POLICY}"
    )
    assert out == ["True", str(os.SCHED_OTHER), str(os.SCHED_OTHER)]


def test_up_defaults_to_batch_and_the_environment_or_flag_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sched.ENV, raising=False)
    assert build_parser(["up"]).parse_args(["up"]).sched == "batch"
    assert build_parser(["up"]).parse_args(["up", "--sched", "normal"]).sched == "normal"
    assert _run("print(sched.default_policy())", {"SERVING_SCHED": "normal"}) == ["normal"]
    assert _run("print(sched.default_policy())", {"SERVING_SCHED": ""}) == ["batch"]
    warned = subprocess.run(
        [sys.executable, "-c", "from serving import sched; print(sched.default_policy())"],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVING_SCHED": "fifo"},
    )
    assert warned.stdout.split() == ["batch"]  # an unknown value is named, and the default kept
    assert "SERVING_SCHED='fifo' is not one of batch, normal: using batch" in warned.stderr
    with pytest.raises(SystemExit):  # the flag takes only the two names
        build_parser(["up"]).parse_args(["up", "--sched", ""])
    with pytest.raises(ValueError, match="batch, normal"):
        sched.apply("fifo")
