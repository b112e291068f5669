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


def test_a_new_id_goes_into_the_request_headers_only_for_an_app_that_forwards_them() -> None:
    """The router sends the request's own headers on, so its id must be among them; a model server or a
    transformer reaches the next hop through `request_id.current` and keeps the client's headers as they came."""
    import asyncio

    from serving.observability.access_log import AccessLog
    from serving.observability.asgi import Observed
    from serving.observability.cloudevent import Source

    async def run(forwards: bool) -> tuple[list[tuple[bytes, bytes]], str, bytes]:
        seen: list = []

        async def app(scope, receive, send):  # noqa: ANN001, ANN202
            seen.append((scope["headers"], request_id.current.get()))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        sent: list = []

        async def send(message):  # noqa: ANN001, ANN202
            sent.append(message)

        async def receive():  # noqa: ANN202
            return {"type": "http.request", "body": b"{}", "more_body": False}

        observed = Observed(app, Source(component="x"), AccessLog(0.0), forwards_headers=forwards)
        headers = [(b"x-request-id", b"has space"), (b"content-length", b"2")]
        scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": headers}
        await observed(scope, receive, send)
        (app_headers, current), echoed = seen[0], dict(sent[0]["headers"])[b"x-request-id"]
        return app_headers, current, echoed

    headers, current, echoed = asyncio.run(run(forwards=True))
    assert (b"x-request-id", current.encode()) in headers and (b"x-request-id", b"has space") not in headers
    assert echoed == current.encode() and current != "has space"
    headers, current, echoed = asyncio.run(run(forwards=False))
    assert headers == [(b"x-request-id", b"has space"), (b"content-length", b"2")]  # untouched, not copied
    assert echoed == current.encode() and len(current) == 36
