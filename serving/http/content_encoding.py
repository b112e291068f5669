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
    for wbits in tries:
        inflater = zlib.decompressobj(wbits)
        try:
            plain = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            failure = exc
            continue
        if len(plain) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"request body inflates to over the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest(f"request body is cut short: not a whole {coding.decode('latin-1')} stream")
        return plain
    raise BadRequest(f"request body is not valid {coding.decode('latin-1')}: {failure}")
