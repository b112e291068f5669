"""End to end through `serving up`: a spec `logger` block without a url sends to `serving up --logger-url`
(KServe's defaultUrl); a canary's events name the canary revision; the router's access log names the arm."""

from __future__ import annotations

from pathlib import Path

from loadtests.event_receiver import receiving
from loadtests.servers import wait_until
from tests.support import train_iris_sklearn
from tests.up_support import apply_text, isvc_yaml, serving_up, traffic, wait_for_traffic

LOGGER = "    logger:\n      mode: all\n"
V1 = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


def test_logger_block_and_default_sink_through_serving_up(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    train_iris_sklearn(v1)
    train_iris_sklearn(v2, c=0.05)
    state = tmp_path / "state"
    with (
        receiving() as (sink, receiver),
        serving_up(state, extra=("--logger-url", sink, "--log-format", "json")) as server,
        server.client() as client,
    ):
        apply_text(server, state, isvc_yaml("iris", v1, extra=LOGGER), tmp_path)
        (stable,) = traffic(wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100]))
        apply_text(server, state, isvc_yaml("iris", v2, canary=50, extra=LOGGER), tmp_path)
        doc = wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [50, 50])
        (canary,) = set(traffic(doc)) - {stable}
        answers = {}
        for pin in ("latest", "prev", "latest"):
            r = client.post("/v1/models/iris:predict", json=V1, headers={"x-serving-tag": pin})
            assert r.status_code == 200, r.text
            answers[r.headers["x-request-id"]] = r.headers["x-serving-revision"]
        wait_until(
            lambda: len(receiver.events) == 6,
            20,
            what=f"6 payload events ({len(receiver.events)}, {receiver.arrivals})",
        )
        log = server.log()
    assert set(answers.values()) == {stable, canary}
    for event in receiver.events:
        assert event["endpoint"] == answers[event["id"]] and event["component"] == "predictor"
        assert event["inferenceservicename"] == "iris" and event["namespace"] == "default"
    assert sorted(e["type"].rsplit(".", 1)[1] for e in receiver.events) == ["request"] * 3 + ["response"] * 3
    for rid, revision in answers.items():
        arm = "canary" if revision == canary else "stable"
        assert f"id={rid} isvc=iris revision={revision} arm={arm}" in log, log[-3000:]
