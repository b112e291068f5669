"""Triton's classification extension, the pure part: `"value:index"` strings as Triton writes them."""

from __future__ import annotations

import numpy as np
import pytest

from serving.protocol.classification import top_classes


def test_integer_outputs_are_written_as_integers_as_in_tritons_own_example() -> None:
    # extension_classification.md: "[ 1, 5, 10, 4 ] ... the returned tensor will be [ "10:2", "5:1" ]"
    assert top_classes(np.array([1, 5, 10, 4], dtype=np.uint8), 2, "o").tolist() == [b"10:2", b"5:1"]
    assert top_classes(np.array([True, False, True]), 2, "o").tolist() == [b"1:0", b"1:2"]


def test_large_integers_are_ranked_and_written_exactly() -> None:
    """Ranked in their own type: through float64, 2**53 + 1 and 2**53 would tie and print as 2**53."""
    big = np.array([[2**53, 3, 2**53 + 1], [np.iinfo(np.int64).min, 0, -1]], dtype=np.int64)
    assert top_classes(big, 2, "o").tolist() == [
        [b"9007199254740993:2", b"9007199254740992:0"],
        [b"0:1", b"-1:2"],
    ]
    unsigned = np.array([2**64 - 1, 2**64 - 2], dtype=np.uint64)
    assert top_classes(unsigned, 1, "o").tolist() == [b"18446744073709551615:0"]


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_ties_go_to_the_lower_index_and_floats_have_six_decimals(dtype: type) -> None:
    scores = np.array([[5, 7, 7, 1]], dtype=dtype)
    text = top_classes(scores, 3, "o").tolist()[0]
    assert [t.split(b":")[1] for t in text] == [b"1", b"2", b"0"]
    assert text[0] == (b"7.000000:1" if dtype is np.float32 else b"7:1")


def test_a_one_sample_score_vector_is_ranked_as_the_extensions_example_over_http(tmp_path) -> None:  # noqa: ANN001
    """extension_classification.md's own example: a 1-D output of 4 scores, classification 2 -> shape [2]. A 1-D
    input is one sample (no rows), so its 1-D output is scores, not one label per row."""
    import httpx

    from tests.inprocess import serving_inprocess

    (tmp_path / "echo").mkdir()
    argv = [
        "serve",
        "--model-dir",
        str(tmp_path / "echo"),
        "--runtime",
        "tests.runtimes_for_tests:EchoRuntime",
    ]
    request = {
        "inputs": [{"name": "scores", "shape": [4], "datatype": "FP32", "data": [1.1, 3.3, 0.5, 2.4]}],
        "outputs": [{"name": "scores", "parameters": {"classification": 2}}],
    }
    with serving_inprocess(argv) as server:
        answer = httpx.post(f"{server.url}/v2/models/echo/infer", json=request)
        rows = {**request, "inputs": [{**request["inputs"][0], "shape": [4, 1]}]}
        labels = httpx.post(f"{server.url}/v2/models/echo/infer", json=rows)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert (output["shape"], output["data"]) == ([2], ["3.300000:1", "2.400000:3"])
    assert labels.status_code == 200, labels.text  # [4, 1]: each row has one class, ranked within the row
