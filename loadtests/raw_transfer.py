"""The floor of a big tensor request on this machine: the same bytes in and out, a model-long wait, nothing else.

Not a server to use. It reads each request's head and body (by Content-Length) into one reused buffer, spins for
`--spin-ms` (the model call's measured mean, on the loop: one connection, so nothing waits behind it) and writes
a prebuilt answer of `--answer-bytes`. No framework, parser, copy, decode or encode: what is left is the kernel
moving the bytes over loopback and one event loop's wake-ups. `python -m loadtests.bench --only binary` sets
`serving serve`'s 1M FP32 end-to-end time against it, so the row says how far target 6 (≤ 1.5× the model call)
is from what the machine allows.

    python -m loadtests.raw_transfer --port 8095 --spin-ms 2.3 --answer-bytes 2000128
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

_READY = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{"ready":true}'
_LENGTH = b"content-length:"


class _Connection(asyncio.BufferedProtocol):
    """Reads into one buffer per connection; answers each complete request in order."""

    def __init__(self, answer: bytes, spin_s: float) -> None:
        self.answer, self.spin_s = answer, spin_s
        self.buffer = bytearray(16 << 20)
        self.view = memoryview(self.buffer)
        self.have = 0
        self.total: int | None = None  # the current request's head + body size, once its head is in
        self.body_length = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.have :]

    def buffer_updated(self, nbytes: int) -> None:
        self.have += nbytes
        while True:
            if self.total is None:
                end = self.buffer.find(b"\r\n\r\n", 0, self.have)
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                at = head.find(_LENGTH)
                length = 0
                if at >= 0:
                    stop = head.find(b"\r\n", at)
                    length = int(head[at + len(_LENGTH) : stop if stop > 0 else None])
                self.total, self.body_length = end + 4 + length, length
            if self.have < self.total:
                return
            self._respond(self.body_length > 0)
            rest = self.have - self.total
            if rest:
                self.buffer[:rest] = self.buffer[self.total : self.have]
            self.have, self.total = rest, None

    def _respond(self, has_body: bool) -> None:
        assert self.transport is not None
        if not has_body:  # a readiness probe
            self.transport.write(_READY)
            return
        started = time.perf_counter()
        while time.perf_counter() - started < self.spin_s:
            pass
        self.transport.write(self.answer)


def answer_of(size: int) -> bytes:
    """A 200 with a binary body of `size` bytes (headers as a model server's binary answer has)."""
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
        b"inference-header-content-length: 0\r\ncontent-length: %d\r\n\r\n" % size
    )
    return head + bytes(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--spin-ms", type=float, default=0.0, help="busy wait per request (the model call)")
    parser.add_argument("--answer-bytes", type=int, default=2_000_000, help="the answer's body size")
    args = parser.parse_args()
    answer, spin_s = answer_of(args.answer_bytes), args.spin_ms / 1000

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(answer, spin_s), args.host, args.port)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
