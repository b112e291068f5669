"""Just enough of the protobuf wire format to keep large tensors out of protobuf's copies.

A 1M-element request is one 4 MB `raw_input_contents` entry: a full parse copies it into the message, and
reading it back copies it again. Splitting that field off as zero-copy views of the received bytes (and
appending `raw_output_contents` to a serialised response by hand) leaves protobuf only the small fields.
The router reads the model name the same way, without parsing the message at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

_LENGTH_DELIMITED = 2


def _varint(view: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(view) or shift > 63:
            raise ValueError("truncated varint")
        byte = view[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def fields(view: memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its value, end) of each top-level field."""
    offset, end = 0, len(view)
    while offset < end:
        start = offset
        key, offset = _varint(view, offset)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _varint(view, offset)
        elif wire == 1:
            stop = offset + 8
        elif wire == 5:
            stop = offset + 4
        elif wire == _LENGTH_DELIMITED:
            length, offset = _varint(view, offset)
            stop = offset + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if stop > end:
            raise ValueError("truncated message")
        yield number, wire, start, offset, stop
        offset = stop


def last_string(message: bytes, number: int) -> str:
    """The string in field `number` (the last occurrence wins, as in protobuf); '' when absent."""
    view, found = memoryview(message), b""
    for field, wire, _, value, stop in fields(view):
        if field == number and wire == _LENGTH_DELIMITED:
            found = bytes(view[value:stop])
    return found.decode()


def split_bytes_field(message: bytes, number: int) -> tuple[bytes, list[memoryview]]:
    """The message without the repeated bytes field `number`, and that field's entries as views of `message`."""
    view = memoryview(message)
    kept: list[memoryview] = []
    entries: list[memoryview] = []
    resume = 0
    for field, wire, start, value, stop in fields(view):
        if field == number and wire == _LENGTH_DELIMITED:
            kept.append(view[resume:start])
            entries.append(view[value:stop])
            resume = stop
    if not entries:
        return message, entries
    kept.append(view[resume:])
    return b"".join(kept), entries


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def append_bytes_field(serialised: bytes, number: int, entries: Sequence[bytes | memoryview]) -> bytes:
    """`serialised` plus one length-delimited field `number` per entry (protobuf accepts fields in any order)."""
    tag = _varint_bytes(number << 3 | _LENGTH_DELIMITED)
    parts: list[bytes | memoryview] = [serialised]
    for entry in entries:
        parts += [tag, _varint_bytes(len(entry) if isinstance(entry, bytes) else entry.nbytes), entry]
    return b"".join(parts)
