"""Load shedding for unbatched models, without a server: queue length and expected wait decide, per model."""

from __future__ import annotations

import pytest

from serving.admission import EWMA_WEIGHT, STALL_FACTOR, Admission
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


def test_calls_frozen_with_the_process_do_not_make_a_sustained_load_look_like_overload() -> None:
    """A replica paused 2 s (SIGSTOP, then SIGCONT) under a load it sustains: its four model threads each end a
    call that took 2 s instead of 0.05. Each counts at most STALL_FACTOR times the estimate, so the nine in
    flight right after are admitted (the estimate went to ~1.2 s, so five queued looked like 1.5 s of queue:
    1-2 % were shed, audit /tmp/audit-fault6 F2); a model that really became 10x slower is believed within a
    dozen calls."""
    admission = Admission(max_queue=100, max_wait_s=1.0, threads=4)
    for _ in range(20):
        admission.enter("m")
        admission.leave("m", 0.05)
    for _ in range(4):
        admission.enter("m")
        admission.leave("m", 2.0)
    for _ in range(9):
        admission.enter("m")  # 4 running, 5 queued: about 5 x 0.1 / 4 s of queue
    assert admission._service_s["m"] < 0.05 * (1 + EWMA_WEIGHT * (STALL_FACTOR - 1)) ** 4 + 1e-9
    slower = Admission(max_queue=100, max_wait_s=1.0, threads=1)
    slower.enter("m")
    slower.leave("m", 0.05)
    for _ in range(12):
        slower.enter("m")
        slower.leave("m", 0.5)
    assert slower._service_s["m"] > 0.4
