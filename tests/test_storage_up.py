"""End to end: `serving up` serves InferenceServices whose storageUri is an http tarball and a pvc:// path."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from serving.storage import leases
from tests.support import train_iris_sklearn, wait_until
from tests.test_storage_http import ArtifactServer
from tests.up_support import apply_text, cli, isvc_yaml, predict, serving_up, wait_for_traffic


def tarball_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="iris")
    return buf.getvalue()


def held_under(cache: Path) -> list[str]:
    """Cached folders this process (serving up, in-process here) holds a lease on."""
    return [path for path in leases._held if path.startswith(str(cache))]


def test_up_serves_http_tarball_and_pvc(tmp_path: Path) -> None:
    model = train_iris_sklearn(tmp_path / "trained" / "iris").parent
    with ArtifactServer() as artifacts:
        url = artifacts.put("/models/iris.tar.gz", tarball_of(model))
        claim = tmp_path / "pvcs" / "models"
        claim.mkdir(parents=True)
        shutil.copytree(model, claim / "iris")
        state = tmp_path / "state"
        extra = ("--pvc-root", str(tmp_path / "pvcs"), "--cache-dir", str(tmp_path / "cache"))
        with serving_up(state, extra=extra) as server, server.client() as client:
            apply_text(server, state, isvc_yaml("from-http", url), tmp_path, "http.yaml")
            apply_text(
                server, state, isvc_yaml("from-pvc", "pvc://models/iris/model.joblib"), tmp_path, "pvc.yaml"
            )
            for name in ("from-http", "from-pvc"):
                wait_for_traffic(server, state, name, lambda t: sorted(t.values()) == [100])
                response = predict(client, name)
                assert response.status_code == 200, response.text
                assert response.json()["predictions"][0] in (0, 1, 2)
            (downloaded,) = held_under(tmp_path / "cache")  # the revision holds its folder while it lives
            cli(server, state, "delete", "from-http")
            wait_until(lambda: not held_under(tmp_path / "cache"), 30, what="the lease given back")
            # no revision needs the download any more: reclaimed (it stayed for ever, audit-store2 F4)
            wait_until(lambda: not Path(downloaded).exists(), 30, what="the download reclaimed")
        assert artifacts.count("/models/iris.tar.gz", 200) == 1


def test_a_store_that_never_answers_holds_up_nothing_else(tmp_path: Path) -> None:
    """A model behind a URL that accepts and never answers: the other service serves meanwhile, its own status
    says it is still coming, and `serving up` stops and starts again at once with it in its state."""
    import socket
    import time

    from tests.up_support import get_isvc

    model = train_iris_sklearn(tmp_path / "trained" / "iris")
    state = tmp_path / "state"
    with socket.socket() as silent:  # a store that takes the connection and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        stuck = f"http://127.0.0.1:{silent.getsockname()[1]}/models/iris.joblib"
        extra = ("--cache-dir", str(tmp_path / "cache"), "--activator-timeout", "1")
        for round_ in ("applied", "restored"):
            started = time.monotonic()
            with serving_up(state, extra=extra) as server, server.client() as client:
                if round_ == "applied":
                    apply_text(server, state, isvc_yaml("stuck", stuck), tmp_path, "stuck.yaml")
                    apply_text(server, state, isvc_yaml("local", model), tmp_path, "local.yaml")
                wait_for_traffic(server, state, "local", lambda t: sorted(t.values()) == [100], timeout_s=30)
                assert predict(client, "local").status_code == 200
                status = get_isvc(server, state, "stuck")["status"]
                assert status["modelStatus"]["transitionStatus"] == "InProgress", status  # not failed
                ready = next(c for c in status["conditions"] if c["type"] == "Ready")
                assert ready["message"] == f"fetching its model from {stuck}", ready  # not an empty reason
                assert client.get("/v2/models/stuck/ready").status_code == 503  # a probe: answered at once
                held = predict(client, "stuck")  # a prediction waits for it, up to --activator-timeout
                assert held.status_code == 503 and "did not become ready within 1s" in held.text, held.text
                assert "still starting: fetching or loading its model" in held.text, held.text
                stopping = time.monotonic()
            # far below the store's timeout (60 s): nothing waited for it
            assert time.monotonic() - stopping < 10, round_
            assert stopping - started < 30, round_
