"""Optional API keys on the router, per namespace: 401 without/unknown key, 403 for another namespace."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import train_iris_sklearn
from tests.up_support import apply_text, isvc_yaml, serving_up, wait_for_traffic

ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


def test_api_keys_per_namespace(tmp_path: Path) -> None:
    model = tmp_path / "m"
    train_iris_sklearn(model)
    keys = tmp_path / "keys"
    keys.write_text("# namespace:key\ndefault:default-key\nteam-a:team-key\n")
    state = tmp_path / "state"
    with serving_up(
        state, extra=("--api-keys", str(keys)), env={"SERVING_API_KEYS": "*:admin-key"}
    ) as server:
        apply_text(server, state, isvc_yaml("iris", model), tmp_path)
        team = isvc_yaml("iris", model).replace("name: iris", "name: iris\n  namespace: team-a")
        apply_text(server, state, team, tmp_path, "team.yaml")
        wait_for_traffic(server, state, "iris", lambda t: list(t.values()) == [100])
        url = server.url + "/v1/models/iris:predict"

        r = httpx.post(url, json=ROW)
        assert r.status_code == 401 and "API key" in r.json()["error"]
        r = httpx.post(url, json=ROW, headers={"authorization": "Bearer nope"})
        assert r.status_code == 401 and "not valid" in r.json()["error"]
        r = httpx.post(url, json=ROW, headers={"x-api-key": "team-key"})
        assert r.status_code == 403 and "default" in r.json()["error"]
        r = httpx.post(url, json=ROW, headers={"authorization": "Bearer default-key"})
        assert r.status_code == 200, r.text
        assert len(r.headers.get_list("date")) == len(r.headers.get_list("server")) == 1, r.headers
        r = httpx.post(url, json=ROW, headers={"x-api-key": "admin-key"})
        assert r.status_code == 200, r.text

        team_host = {"host": "iris.team-a.example.com"}
        r = httpx.post(url, json=ROW, headers={**team_host, "x-api-key": "default-key"})
        assert r.status_code == 403
        r = httpx.post(url, json=ROW, headers={**team_host, "x-api-key": "team-key"})
        assert r.status_code in (200, 503), r.text  # authorised; 503 only while team-a's revision starts

        assert httpx.get(server.url + "/v2/health/live").status_code == 200, "health stays public by default"
        assert httpx.get(server.url + "/v1/models").status_code == 401
