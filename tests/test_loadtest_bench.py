"""The benchmark driver end to end, briefly: wrk against the bare ceiling app, results JSON written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

PIN = ["--pin"] if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else []
pytestmark = [
    pytest.mark.skipif(
        shutil.which("wrk") is None, reason="wrk is not installed (install: scripts/install-test-tools)"
    ),
    pytest.mark.e2e,  # wrk and the benchmark driver as processes
]


def test_bench_ceiling_item_measures_and_writes_results(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.bench",
            "--only",
            "1",
            "--duration",
            "1",
            "--no-append",
            "--results",
            str(tmp_path),
            *PIN,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = tmp_path.glob("bench-*.json")
    result = json.loads(path.read_text())
    rows = result["rows"]
    assert {(r["config"], r["conns"]) for r in rows} == {
        (f"bare Starlette {p}", c) for p in ("V1", "V2 JSON") for c in (1, 16, 64)
    }
    assert all(r["rps"] > 0 and r["errors"] == 0 and r["cpu_us"] > 0 and r["load1"] >= 0 for r in rows)
    if PIN:  # server on CPU 0, wrk on CPU 1, and the table says so
        assert (
            result["machine"]["pinned"] == {"server": "0", "load": "1"}
            and "server pinned to CPU 0" in run.stdout
        )
    assert result["machine"]["cores"] >= 1
    assert "bare Starlette V2 JSON" in run.stdout
