"""Driving `wrk` (Debian's) with POST bodies: a Lua script per request kind, results as a dict.

wrk's Lua cannot take a body on the command line, so each request gets a generated script that reads
the body from a file (byte-exact, binary safe) and prints one JSON line from wrk's `done()` hook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARK = "WRKJSON "
CPUS: str | None = None  # `--pin`: the CPU list wrk runs on (taskset), away from the server's
_SCRIPT = """\
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
    .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,'
    .. '"max_us":%d}}\\n', summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""


@dataclass(frozen=True)
class Request:
    """One POST request: path, body and headers (written to files in `workdir` once)."""

    name: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)

    def script(self, workdir: Path) -> Path:
        body_file = workdir / f"{self.name}.body"
        if not body_file.exists():
            body_file.write_bytes(self.body)
        lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in self.headers)
        script = workdir / f"{self.name}.lua"
        script.write_text(_SCRIPT.format(body=body_file, headers=lines, mark=MARK))
        return script


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    request: Request,
    workdir: Path,
    connections: int,
    duration_s: float,
    threads: int = 1,
    timeout_s: int = 30,
) -> dict:
    """Run wrk against `url + request.path`; return its totals plus req/s and error count."""
    pin = ["taskset", "-c", CPUS] if CPUS else []
    cmd = [
        *pin,
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(request.script(workdir)),
        url + request.path,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    result = json.loads(line[len(MARK) :])
    result["errors"] = sum(
        result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    # Goodput: a server that sheds load answers 503s fast, which must not count as throughput.
    result["rps"] = (result["requests"] - result["status_errors"]) / (result["duration_us"] / 1e6)
    return result
