"""A replica that misses health checks because it works (its event loop held by a long call, as a very large
body's decode holds it) is not replaced as a hung one is: its request is answered, the process stays; past
its grace it is replaced all the same. A container's `livenessProbe` timings are the supervisor's."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from serving.control.local.processes import Liveness, Silence
from tests.runtimes_for_tests import HOG_FILE
from tests.up_support import apply_text, serving_up, wait_for_traffic

# One missed check (1 s) of an idle replica replaces it: a replica held 3 s would be replaced without the
# CPU rule.
ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: hog}
spec:
  predictor:
    model:
      modelFormat: {name: custom}  # its own class: any format name it chooses
      runtime: tests.runtimes_for_tests:LoopHogRuntime
      storageUri: MODEL
      livenessProbe: {timeoutSeconds: 1, periodSeconds: 1, failureThreshold: 1}
"""


def _pid(client: httpx.Client, hold_s: float = 0.0) -> int:
    """The process id of the replica that answered (after holding its event loop `hold_s` when armed)."""
    response = client.post("/v1/models/hog:predict", json={"instances": [[hold_s]]}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0][0]


@pytest.mark.e2e  # a real replica process whose event loop is held (tests.runtimes_for_tests:LoopHogRuntime)
def test_a_working_replica_is_not_replaced(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    state = tmp_path / "state"
    with serving_up(state, process=True) as server, server.client() as client:
        apply_text(server, state, ISVC.replace("MODEL", str(model)), tmp_path)
        wait_for_traffic(server, state, "hog", lambda t: list(t.values()) == [100])
        before = _pid(client)
        (model / HOG_FILE).touch()
        assert _pid(client, 3.0) == before, "the working replica was replaced"
        assert _pid(client) == before


def test_probe_timings_and_kubernetes_defaults() -> None:
    assert Liveness.of_probe({"timeoutSeconds": 2, "periodSeconds": 5, "failureThreshold": 4}) == Liveness(
        timeout_s=2, period_s=5, failures=4
    )
    assert Liveness.of_probe({"httpGet": {"path": "/healthz"}}) == Liveness(
        timeout_s=1, period_s=10, failures=3
    )
    assert Liveness.of_probe(None) == Liveness()


def test_idle_silence_replaces_after_the_threshold_working_silence_after_the_grace() -> None:
    idle = Silence(Liveness(failures=3, busy_grace_s=30))
    assert [idle.replace(False, t) for t in (0.0, 1.0, 2.0)] == [False, False, True]
    busy = Silence(Liveness(failures=3, busy_grace_s=30))
    assert not any(busy.replace(True, t) for t in (0.0, 10.0, 29.0))
    assert busy.replace(True, 30.0)
    mixed = Silence(Liveness(failures=2, busy_grace_s=30))
    assert not mixed.replace(True, 0.0) and not mixed.replace(False, 1.0)
    assert mixed.replace(False, 2.0)  # two idle misses in the run: stopped or deadlocked
    mixed.answered()
    assert not mixed.replace(False, 3.0)
