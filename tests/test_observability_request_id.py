"""Request ids: the client's kept when sane (<= 128 printable ASCII, no spaces), else a fresh UUID-shaped one."""

from __future__ import annotations

from serving.observability import request_id


def test_client_ids_are_kept_only_when_valid() -> None:
    assert request_id.choose(b"abc-1") == ("abc-1", True)
    assert request_id.choose(b"x" * 128) == ("x" * 128, True)
    for bad in (b"x" * 129, b"has space", b"", b"tab\there", b"new\nline", "é".encode()):
        rid, own = request_id.choose(bad)
        assert not own and rid != bad.decode("utf-8", "replace") and len(rid) == 36, bad
    assert request_id.choose(None)[1] is False


def test_new_ids_are_unique_and_uuid_shaped() -> None:
    ids = {request_id.new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 36 and [len(p) for p in i.split("-")] == [8, 4, 4, 4, 12] for i in ids)
