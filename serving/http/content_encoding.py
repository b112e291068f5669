"""Compressed request bodies (`Content-Encoding: gzip` or `deflate`), as Triton accepts and tritonclient's
`request_compression_algorithm` sends them. The limit applies to the inflated bytes, so a small bomb
gets the same 413 as a big body; an encoding we cannot read is a 415, never bytes read as if plain."""

from __future__ import annotations

import zlib

from serving.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_GZIP = 16 + zlib.MAX_WBITS
_WBITS = {b"gzip": (_GZIP,), b"x-gzip": (_GZIP,), b"deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}
_PLAIN = (b"", b"identity")


def inflate(body: bytes, encoding: bytes, limit: int) -> bytes:
    """The body as sent before compression; `deflate` is zlib-wrapped (RFC 9110) or, as some clients send
    it, raw."""
    coding = encoding.strip().lower()
    if coding in _PLAIN:
        return body
    tries = _WBITS.get(coding)
    if tries is None:
        raise UnsupportedMediaType(
            f"Content-Encoding {coding.decode('latin-1')!r} is not supported; send gzip, deflate or identity"
        )
    name = coding.decode("latin-1")
    for wbits in tries:
        try:
            return _inflate_all(body, wbits, limit, name)
        except zlib.error as exc:
            failure = exc
    raise BadRequest(f"request body is not valid {name}: {failure}")


def _inflate_all(body: bytes, wbits: int, limit: int, name: str) -> bytes:
    """Every member (RFC 1952 allows several gzip members one after another), within `limit`; bytes after the
    stream that are not another member are refused, as unclaimed bytes of a binary body are."""
    parts: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(wbits)
        plain = inflater.decompress(rest, limit + 1 - size)
        size += len(plain)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"request body inflates to over the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest(f"request body is cut short: not a whole {name} stream")
        parts.append(plain)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if wbits != _GZIP:
            raise BadRequest(f"request body has {len(rest)} bytes after its {name} stream")
        if not rest.startswith(b"\x1f\x8b"):
            raise BadRequest(f"request body has {len(rest)} bytes after its {name} stream that are not gzip")
