"""loadtests/raw_transfer.py, the bench's floor for target 6: it must read whole bodies and answer each request,
in order, on one keep-alive connection, or the floor it reports would be for fewer bytes than ours."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from loadtests.servers import started


def _read_answer(conn: socket.socket, pending: bytearray) -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in pending:
        pending += conn.recv(1 << 20)
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length")
    )
    body = bytearray(rest)
    while len(body) < length:
        body += conn.recv(1 << 20)
    pending[:] = body[length:]
    return head, bytes(body[:length])


def test_raw_transfer_reads_whole_bodies_and_answers_each_request(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "loadtests.raw_transfer", "--spin-ms", "0.5", "--answer-bytes", "300000"]
    with started(argv, "/v2/health/ready", tmp_path / "floor.log") as floor:
        port = int(floor.url.rsplit(":", 1)[1])
        body = bytes(range(256)) * 4096  # 1 MiB: many reads
        request = (
            b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(request + request[:1000])  # a second request begins before the first is answered
            pending = bytearray()
            head, answer = _read_answer(conn, pending)
            assert head.startswith(b"HTTP/1.1 200") and len(answer) == 300_000
            conn.sendall(request[1000:])
            head, answer = _read_answer(conn, pending)
            assert head.startswith(b"HTTP/1.1 200") and len(answer) == 300_000
            assert not pending
