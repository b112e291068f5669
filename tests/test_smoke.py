"""The model server answers V1 and V2 for a real sklearn model over real HTTP."""

from pathlib import Path

from tests.inprocess import serving_inprocess


def test_v1_and_v2_predict(model_repo: Path) -> None:
    with (
        serving_inprocess(["serve", "--model-dir", str(model_repo / "sklearn-iris")]) as server,
        server.client() as c,
    ):
        v1 = c.post(
            "/v1/models/sklearn-iris:predict",
            json={"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]},
        )
        assert v1.status_code == 200, v1.text
        assert v1.json() == {"predictions": [1, 0]}
        v2 = c.post(
            "/v2/models/sklearn-iris/infer",
            json={
                "inputs": [
                    {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == [1]
