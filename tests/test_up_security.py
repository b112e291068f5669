"""`serving up` loads models only from the configured roots and, when asked, refuses pickles."""

from __future__ import annotations

from pathlib import Path

from tests.support import train_iris_sklearn, train_iris_xgboost, wait_until
from tests.up_support import apply_text, get_isvc, isvc_yaml, predict, serving_up, traffic, wait_for_traffic


def _failure(server, state, name: str) -> str:  # noqa: ANN001
    holder: dict[str, str] = {}

    def failed() -> bool:
        info = get_isvc(server, state, name)["status"].get("modelStatus", {}).get("lastFailureInfo")
        holder["message"] = info["message"] if info else ""
        return bool(info)

    wait_until(failed, 60, what=f"{name} to report its failure")
    return holder["message"]


def test_model_roots_and_no_pickle(tmp_path: Path) -> None:
    inside, outside = tmp_path / "models", tmp_path / "elsewhere"
    train_iris_sklearn(outside / "iris")
    train_iris_sklearn(inside / "iris")
    xgb = train_iris_xgboost(inside / "xgb").parent
    state = tmp_path / "state"
    extra = ("--model-root", str(inside), "--no-pickle")
    with serving_up(state, extra=extra) as server, server.client() as client:
        apply_text(server, state, isvc_yaml("escape", outside / "iris"), tmp_path, "a.yaml")
        message = _failure(server, state, "escape")
        assert "outside" in message or "not allowed" in message or "refused" in message.lower(), message
        assert traffic(get_isvc(server, state, "escape")) == {}
        assert predict(client, "escape").status_code == 503

        traversal = str(inside) + "/../elsewhere/iris"
        apply_text(server, state, isvc_yaml("dots", traversal), tmp_path, "b.yaml")
        assert _failure(server, state, "dots")

        apply_text(server, state, isvc_yaml("pickled", inside / "iris"), tmp_path, "c.yaml")
        assert "pickle" in _failure(server, state, "pickled").lower()

        xgb_yaml = isvc_yaml("safe", xgb).replace("name: sklearn", "name: xgboost")
        apply_text(server, state, xgb_yaml, tmp_path, "d.yaml")
        wait_for_traffic(server, state, "safe", lambda t: list(t.values()) == [100])
        assert predict(client, "safe").status_code == 200
