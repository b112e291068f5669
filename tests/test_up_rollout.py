"""`serving up` end to end: apply, canary split measured, promote, rollback, tags, restart restores state."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from tests.support import train_iris_sklearn
from tests.up_support import (
    apply_text,
    cli,
    get_isvc,
    isvc_yaml,
    predict,
    serving_up,
    traffic,
    wait_for_traffic,
)


def _split(url: str, name: str, total: int, concurrency: int = 32) -> Counter:
    async def run() -> Counter:
        counts: Counter = Counter()
        body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
        queue = iter(range(total))
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def worker() -> None:
                for _ in queue:
                    r = await client.post(f"/v1/models/{name}:predict", content=body)
                    assert r.status_code == 200, r.text
                    counts[r.headers["x-serving-revision"]] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return counts

    return asyncio.run(run())


def test_canary_walkthrough(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    train_iris_sklearn(v1)
    train_iris_sklearn(v2, c=0.05)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("iris", v1), tmp_path)
        doc = wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        (r1,) = traffic(doc)
        assert r1.startswith("iris-")
        response = predict(client, "iris")
        assert response.status_code == 200 and response.json() == {"predictions": [1]}
        assert response.headers["x-serving-revision"] == r1

        # Traffic-only edits create no revision.
        apply_text(server, state, isvc_yaml("iris", v1, canary=50), tmp_path)
        assert traffic(get_isvc(server, state, "iris")) == {r1: 100}

        apply_text(server, state, isvc_yaml("iris", v2, canary=20), tmp_path)
        doc = wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [20, 80])
        split = traffic(doc)
        (r2,) = [r for r, p in split.items() if p == 20]
        # The balancer's split is exact in every window of 100 picks (tests/test_balancer.py); 200 requests
        # through the real router show it holds end to end (a random 20 % pick would miss +-2 % half the time).
        counts = _split(server.url, "iris", 200)
        share = counts[r2] / sum(counts.values())
        assert abs(share - 0.20) <= 0.02, counts
        assert set(counts) == {r1, r2}

        # Tag pinning: latest -> canary, prev -> stable, or a revision name.
        for pin, expected in (("latest", r2), ("prev", r1), (r1, r1)):
            r = client.post(
                "/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]}, headers={"x-serving-tag": pin}
            )
            assert r.headers["x-serving-revision"] == expected, pin

        cli(server, state, "rollout", "rollback", "iris")
        doc = wait_for_traffic(server, state, "iris", lambda t: t.get(r1) == 100)
        assert traffic(doc) == {r1: 100, r2: 0}
        assert {predict(client, "iris").headers["x-serving-revision"] for _ in range(20)} == {r1}
        rolled_back = [
            line
            for line in cli(server, state, "rollout", "history", "iris").stdout.splitlines()
            if "rolled back" in line
        ]
        assert len(rolled_back) == 1 and r2 in rolled_back[0] and "by the user" in rolled_back[0], rolled_back

        cli(server, state, "rollout", "promote", "iris")
        doc = wait_for_traffic(server, state, "iris", lambda t: t == {r2: 100})
        component = doc["status"]["components"]["predictor"]
        assert component["latestRolledoutRevision"] == r2
        assert component["previousRolledoutRevision"] == r1
        assert {predict(client, "iris").headers["x-serving-revision"] for _ in range(20)} == {r2}
        table = cli(server, state, "get").stdout
        assert "iris" in table and "LATESTREADYREVISION" in table and r2 in table
        nothing = cli(server, state, "rollout", "rollback", "iris", check=False)  # no canary in progress
        assert nothing.returncode != 0 and f"has no canary to roll back: {r2} serves" in nothing.stderr
        assert "canaryTrafficPercent" not in str(get_isvc(server, state, "iris")["spec"]), (
            "the spec untouched"
        )

    # Restart: every InferenceService comes back with the same revisions and traffic.
    with serving_up(state) as server, server.client() as client:
        doc = wait_for_traffic(server, state, "iris", lambda t: t == {r2: 100})
        assert doc["status"]["components"]["predictor"]["previousRolledoutRevision"] == r1
        assert predict(client, "iris").headers["x-serving-revision"] == r2

        # A canary rolled back by hand: undo goes back to the revision serving (kubectl's previous revision
        # after a failed rollout), so the spec no longer holds the candidate, and never past it (that would
        # silently downgrade what serves by two versions); --to-revision goes further.
        v3 = tmp_path / "v3"
        train_iris_sklearn(v3, c=0.5)
        apply_text(server, state, isvc_yaml("iris", v3, canary=20), tmp_path)
        wait_for_traffic(server, state, "iris", lambda t: sorted(t.values()) == [20, 80])
        apply_text(server, state, isvc_yaml("iris", v3, canary=0), tmp_path)  # KServe's own rollback
        wait_for_traffic(server, state, "iris", lambda t: t.get(r2) == 100)
        history = cli(server, state, "rollout", "history", "iris").stdout
        assert "rolled back" in history and "canaryTrafficPercent: 0" in history, history
        r3 = get_isvc(server, state, "iris")["status"]["components"]["predictor"]["latestCreatedRevision"]
        undone = cli(server, state, "rollout", "undo", "iris").stdout
        assert f"rolled back to revision {r2} (from {r3})" in undone, undone
        doc = wait_for_traffic(server, state, "iris", lambda t: t == {r2: 100})
        assert "canaryTrafficPercent" not in str(get_isvc(server, state, "iris")["spec"])  # r2's own document
        undone = cli(server, state, "rollout", "undo", "iris", "--to-revision", r1).stdout
        assert f"rolled back to revision {r1}" in undone, undone
        wait_for_traffic(server, state, "iris", lambda t: t == {r1: 100})
        events = cli(server, state, "rollout", "history", "iris").stdout
        assert f"back from {r3} by the user" in events, events


def test_host_routing_and_unknown_service(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    state = tmp_path / "state"
    with serving_up(state) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("flowers", model), tmp_path)
        doc = wait_for_traffic(server, state, "flowers", lambda t: list(t.values()) == [100])
        assert doc["status"]["url"] == "http://flowers.default.example.com"
        r = client.post(
            "/v2/models/flowers/infer",
            headers={"host": "flowers.default.example.com"},
            json={
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}]
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [1]
        missing = predict(client, "nope")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        assert client.get("/v1/models").json() == {"models": ["flowers"]}
        cli(server, state, "delete", "flowers")
        assert predict(client, "flowers").status_code == 404
