"""Load shedding for unbatched models, without a server: queue length and expected wait decide, per model."""

from __future__ import annotations

import pytest

from serving.admission import EWMA_WEIGHT, Admission
from serving.errors import ServiceUnavailable


def test_requests_up_to_the_threads_are_always_admitted() -> None:
    admission = Admission(max_queue=0, max_wait_s=0.0, threads=2)
    admission.enter("m")
    admission.enter("m")  # two threads: nobody queues yet
    with pytest.raises(ServiceUnavailable):
        admission.enter("m")  # the third would queue, and no queue is allowed


def test_queue_length_bound_with_retry_after() -> None:
    admission = Admission(max_queue=2, max_wait_s=100.0, threads=1)
    for _ in range(3):  # one running, two queued
        admission.enter("m")
    with pytest.raises(ServiceUnavailable) as refused:
        admission.enter("m")
    assert refused.value.status_code == 503
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert "'m' is overloaded: 3 requests in flight" in refused.value.message


def test_expected_wait_from_the_running_service_time_estimate() -> None:
    admission = Admission(max_queue=100, max_wait_s=1.0, threads=1)
    admission.enter("m")
    admission.leave("m", 0.4)  # first observation is taken as is
    admission.enter("m")
    admission.enter("m")  # one queued x 0.4 s = 0.4 s: admitted
    admission.enter("m")  # two queued: 0.8 s
    with pytest.raises(ServiceUnavailable) as refused:
        admission.enter("m")  # three queued: 1.2 s > 1 s
    assert refused.value.headers["Retry-After"] == "2"  # ceil(1.2)


def test_service_time_is_a_moving_average_and_leaving_frees_a_place() -> None:
    admission = Admission(max_queue=100, max_wait_s=0.85, threads=1)
    admission.enter("m")
    admission.leave("m", 1.0)
    admission.enter("m")
    admission.leave(
        "m", 0.0
    )  # estimate 1.0 + EWMA_WEIGHT * (0.0 - 1.0) = 0.8: neither the first nor the last
    assert 1.0 + EWMA_WEIGHT * (0.0 - 1.0) == pytest.approx(0.8)
    admission.enter("m")
    admission.enter("m")  # one queued: 0.8 s <= 0.85 s
    with pytest.raises(ServiceUnavailable):
        admission.enter("m")  # two queued: 1.6 s
    admission.leave("m", None)  # a failed call frees its place and leaves no service time
    admission.enter("m")


def test_models_are_counted_apart() -> None:
    admission = Admission(max_queue=0, max_wait_s=0.0, threads=1)
    admission.enter("a")
    admission.enter("b")
    with pytest.raises(ServiceUnavailable, match="'a'"):
        admission.enter("a")
