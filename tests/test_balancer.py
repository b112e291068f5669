"""The router's choices without a server: weighted split exactness, per-service state, least-outstanding."""

from __future__ import annotations

from collections import Counter

import pytest

from serving.router.balancer import Balancer
from serving.router.table import Arm, RouteTable, ServiceRoute
from serving.router.upstream import Upstreams


def _route(*percents: int, name: str = "iris") -> ServiceRoute:
    arms = tuple(
        Arm(
            f"{name}-r{i}",
            p,
            "stable" if i == 0 else "canary",
            "prev" if i == 0 else "latest",
            (f"http://e{i}",),
        )
        for i, p in enumerate(percents)
    )
    return ServiceRoute(name, "default", arms)


@pytest.mark.parametrize("percents", [(80, 20), (50, 50), (99, 1), (34, 33, 33), (70, 20, 10)])
def test_split_is_exact_over_10000_picks(percents: tuple[int, ...]) -> None:
    balancer, route = Balancer(), _route(*percents)
    counts = Counter(balancer.choose(route).revision for _ in range(10_000))  # type: ignore[union-attr]
    assert counts == {f"iris-r{i}": p * 100 for i, p in enumerate(percents)}


def test_every_window_of_a_hundred_is_exact_and_interleaved() -> None:
    balancer, route = Balancer(), _route(80, 20)
    picks = [balancer.choose(route).revision for _ in range(1_000)]  # type: ignore[union-attr]
    for start in range(0, 1_000, 100):
        assert picks[start : start + 100].count("iris-r1") == 20
    assert max(len(run) for run in "".join("c" if p == "iris-r1" else "s" for p in picks).split("c")) <= 4


def test_zero_percent_and_endpointless_arms_are_never_chosen() -> None:
    arms = (
        Arm("a", 100, "stable", "prev", ("http://a",)),
        Arm("b", 0, "canary", "latest", ("http://b",)),
        Arm("c", 50, "canary", "latest", ()),
    )
    balancer = Balancer()
    assert {balancer.choose(ServiceRoute("s", "default", arms)).revision for _ in range(50)} == {"a"}  # type: ignore[union-attr]
    assert balancer.choose(ServiceRoute("s", "default", (arms[1], arms[2]))) is None


def test_services_keep_their_own_rotation_and_retain_forgets_departed_ones() -> None:
    balancer, one, two = Balancer(), _route(50, 50, name="one"), _route(50, 50, name="two")
    assert [balancer.choose(one).revision for _ in range(2)] == ["one-r0", "one-r1"]  # type: ignore[union-attr]
    assert balancer.choose(two).revision == "two-r0"  # type: ignore[union-attr]
    balancer.retain(RouteTable({("default", "two"): two}))
    assert balancer.choose(one).revision == "one-r0"  # type: ignore[union-attr]  # fresh state for `one`
    assert balancer.choose(two).revision == "two-r1"  # type: ignore[union-attr]  # `two` kept its place


def test_least_outstanding_endpoint_is_picked_and_excluded_or_down_ones_skipped() -> None:
    upstreams = Upstreams()
    endpoints = ("http://a", "http://b", "http://c")
    upstreams.outstanding.update({"http://a": 3, "http://b": 1, "http://c": 2})
    assert upstreams.pick(endpoints, set()) == "http://b"
    assert upstreams.pick(endpoints, {"http://b"}) == "http://c"
    upstreams.down_until["http://c"] = float("inf")
    assert upstreams.pick(endpoints, {"http://b"}) == "http://a"
    assert upstreams.pick(endpoints, set(endpoints)) is None
    assert not upstreams.idle(endpoints) and upstreams.idle(("http://d",))
