"""The KPA rule and its knobs, driven with a synthetic clock (pure: no servers needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from serving.autoscale.knobs import (
    AutoscaleSpecError,
    Knobs,
    knobs_from,
    parse_duration_s,
    unknown_annotations,
)
from serving.autoscale.kpa import KPA, Sample


def component(**fields):
    base = dict(
        min_replicas=None,
        max_replicas=None,
        scale_metric=None,
        scale_target=None,
        container_concurrency=None,
        auto_scaling=None,
    )
    return SimpleNamespace(**(base | fields))


def steady(value: float, start: float, end: float, step: float = 1.0) -> list[Sample]:
    out, t = [], start
    while t <= end:
        out.append(Sample(t, value))
        t += step
    return out


def test_stable_rule_is_ceil_of_observed_over_target_times_utilization():
    kpa = KPA(Knobs(target=2, utilization=0.7, min_replicas=1, max_replicas=10, stable_window_s=60))
    decision = kpa.decide(steady(5.0, 0, 60), ready=4, now_s=60)
    assert decision.desired == 4  # ceil(5 / 1.4)
    assert not decision.panic


def test_bounded_by_max_and_min():
    kpa = KPA(Knobs(target=1, utilization=1.0, min_replicas=2, max_replicas=3))
    assert kpa.decide(steady(50, 0, 60), ready=3, now_s=60).desired == 3
    assert (
        KPA(Knobs(target=1, utilization=1.0, min_replicas=2, max_replicas=3)).decide([], 2, 60).desired == 2
    )


def test_panic_on_burst_and_no_scale_down_while_panicking():
    knobs = Knobs(target=1, utilization=1.0, min_replicas=1, max_replicas=20, stable_window_s=60)
    kpa = KPA(knobs)
    samples = steady(1, 0, 54) + steady(10, 55, 60)  # burst in the last 6 s (the panic window)
    decision = kpa.decide(samples, ready=1, now_s=60)
    assert decision.panic and decision.desired == 10
    calm = samples + steady(0, 61, 70)
    assert kpa.decide(calm, ready=10, now_s=70).desired == 10  # panicking: hold, never shrink
    later = kpa.decide(steady(1, 71, 140), ready=10, now_s=140)
    assert not later.panic and later.desired < 10


def test_scale_up_rate_limits_one_step():
    kpa = KPA(Knobs(target=1, utilization=1.0, max_replicas=100, max_scale_up_rate=2.0))
    assert kpa.decide(steady(40, 0, 60), ready=2, now_s=60).desired == 4


def test_scale_down_delay_keeps_the_recent_maximum():
    kpa = KPA(Knobs(target=1, utilization=1.0, max_replicas=10, scale_down_delay_s=30, stable_window_s=10))
    assert kpa.decide(steady(4, 0, 10), ready=4, now_s=10).desired == 4
    assert kpa.decide(steady(1, 11, 20), ready=4, now_s=20).desired == 4  # within the delay
    assert kpa.decide(steady(1, 31, 45), ready=4, now_s=45).desired == 2  # ready/2 floor per step


def test_scale_to_zero_only_after_idle_window_and_retention():
    knobs = Knobs(
        target=1,
        utilization=1.0,
        min_replicas=0,
        max_replicas=3,
        stable_window_s=10,
        scale_to_zero_retention_s=5,
    )
    kpa = KPA(knobs, last_traffic_s=0.0)
    traffic = steady(1, 0, 10)
    assert kpa.decide(traffic, ready=1, now_s=10).desired == 1
    assert kpa.decide(traffic, ready=1, now_s=19).desired == 1  # window still holds traffic
    assert kpa.decide(traffic, ready=1, now_s=22).desired == 1  # idle, but within retention
    assert kpa.decide(traffic, ready=1, now_s=26).desired == 0


def test_knobs_from_fields_and_annotations():
    knobs = knobs_from(
        component(min_replicas=0, max_replicas=4, scale_metric="rps", scale_target=5),
        {
            "autoscaling.knative.dev/window": "30s",
            "autoscaling.knative.dev/scale-down-delay": "1m30s",
            "autoscaling.knative.dev/target-utilization-percentage": "50",
        },
    )
    assert (knobs.metric, knobs.target, knobs.min_replicas, knobs.max_replicas) == ("rps", 5.0, 0, 4)
    assert (knobs.stable_window_s, knobs.scale_down_delay_s, knobs.utilization) == (30.0, 90.0, 0.5)
    assert knobs.panic_window_s == 3.0


def test_container_concurrency_is_the_default_target_and_kserve_metrics_form_maps():
    assert knobs_from(component(container_concurrency=4), {}).target == 4.0
    cpu = {
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
            }
        ]
    }
    assert (
        knobs_from(component(auto_scaling=cpu), {}).metric,
        knobs_from(component(auto_scaling=cpu), {}).target,
    ) == ("cpu", 50.0)


@pytest.mark.parametrize(
    "fields, annotations, path",
    [
        (dict(min_replicas=3, max_replicas=2), {}, "spec.predictor.maxReplicas"),
        (dict(scale_metric="gpu"), {}, "spec.predictor.scaleMetric"),
        (dict(scale_target=-1), {}, "spec.predictor.scaleTarget"),
        (
            {},
            {"autoscaling.knative.dev/window": "ten seconds"},
            "metadata.annotations.autoscaling.knative.dev/window",
        ),
        ({}, {"autoscaling.knative.dev/window": "2s"}, "metadata.annotations.autoscaling.knative.dev/window"),
        (
            {},
            {"autoscaling.knative.dev/initial-scale": "x"},
            "metadata.annotations.autoscaling.knative.dev/initial-scale",
        ),
    ],
)
def test_bad_knobs_name_their_path(fields, annotations, path):
    with pytest.raises(AutoscaleSpecError) as err:
        knobs_from(component(**fields), annotations)
    assert err.value.message.startswith(path)


def test_durations_and_unknown_annotations():
    assert parse_duration_s("500ms", "x") == 0.5
    assert parse_duration_s("1h", "x") == 3600
    assert parse_duration_s("45", "x") == 45
    assert unknown_annotations(
        {"autoscaling.knative.dev/windw": "1s", "autoscaling.knative.dev/window": "9s"}
    ) == [
        "metadata.annotations.autoscaling.knative.dev/windw: unknown Knative autoscaling annotation; ignored"
    ]
