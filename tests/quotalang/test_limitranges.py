"""LimitRange defaults as the LimitRanger plugin applies them, with every number computed by hand."""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.limitranges import (
    NO_DEFAULTS,
    ContainerDefaults,
    InvalidLimitRange,
    apply_limit_ranges,
    container_defaults,
    defaults_for,
)
from quotalang.pods import apply_defaults, pod_usage
from quotalang.quantity import parse_quantity


def limit_range(*items: dict[str, Any], name: str = "lr") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name}, "spec": {"limits": list(items)}}


def container(name: str = "c", req: dict[str, str] | None = None, lim: dict[str, str] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if req is not None:
        resources["requests"] = req
    if lim is not None:
        resources["limits"] = lim
    return {"name": name, "resources": resources}


def usage_after(ranges: list[dict[str, Any]], containers: list[dict[str, Any]],
                init: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """What the quota evaluator charges once the API server and then the LimitRanger have defaulted the pod."""
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = init
    pod = apply_limit_ranges(apply_defaults({"spec": spec}), container_defaults(ranges))
    return {k: str(v) for k, v in pod_usage(pod).items() if k not in ("pods", "count/pods")}


def test_default_and_default_request_fill_a_container_without_resources() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "250m"}})
    assert usage_after([lr], [container()]) == {"cpu": "250m", "requests.cpu": "250m", "limits.cpu": "500m"}


def test_a_default_without_default_request_defaults_the_request_too() -> None:
    """SetDefaults_LimitRangeItem: defaultRequest takes default where absent (the API server stores it so)."""
    lr = limit_range({"type": "Container", "default": {"memory": "1Gi"}})
    assert usage_after([lr], [container()]) == {"memory": "1Gi", "requests.memory": "1Gi", "limits.memory": "1Gi"}


def test_max_becomes_the_default_limit_and_min_the_default_request() -> None:
    # max cpu 2 -> default cpu 2 -> defaultRequest cpu 2; min memory 64Mi -> defaultRequest memory 64Mi, no limit
    lr = limit_range({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}})
    assert usage_after([lr], [container()]) == {
        "cpu": "2", "requests.cpu": "2", "limits.cpu": "2", "memory": "64Mi", "requests.memory": "64Mi"}


def test_only_what_a_container_does_not_set_is_defaulted() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "1", "memory": "1Gi"},
                      "defaultRequest": {"cpu": "100m", "memory": "256Mi"}})
    # requests.cpu 300m kept; memory request and both limits from the LimitRange
    assert usage_after([lr], [container(req={"cpu": "300m"})]) == {
        "cpu": "300m", "requests.cpu": "300m", "limits.cpu": "1",
        "memory": "256Mi", "requests.memory": "256Mi", "limits.memory": "1Gi"}


def test_the_api_server_copies_limits_into_requests_before_the_limitranger_runs() -> None:
    # limits.cpu 2 and no request: the request becomes 2 first, so defaultRequest 100m does not apply
    lr = limit_range({"type": "Container", "defaultRequest": {"cpu": "100m"}})
    assert usage_after([lr], [container(lim={"cpu": "2"})]) == {"cpu": "2", "requests.cpu": "2", "limits.cpu": "2"}


def test_init_containers_are_defaulted_too() -> None:
    # init container gets cpu 1 (request and limit); app container 500m: requests max(500m, 1) = 1,
    # limits max(default 1 of the app container, 1) = 1
    lr = limit_range({"type": "Container", "default": {"cpu": "1"}})
    assert usage_after([lr], [container(req={"cpu": "500m"})], init=[container("setup")]) == {
        "cpu": "1", "requests.cpu": "1", "limits.cpu": "1"}


def test_several_limit_ranges_the_first_to_give_a_resource_wins() -> None:
    first = limit_range({"type": "Container", "default": {"cpu": "1"}}, name="a")
    second = limit_range({"type": "Container", "default": {"cpu": "2", "memory": "1Gi"}}, name="b")
    assert container_defaults([first, second]) == ContainerDefaults(
        requests=(("cpu", "1"), ("memory", "1Gi")), limits=(("cpu", "1"), ("memory", "1Gi")))
    # two containers × (cpu 1, memory 1Gi)
    assert usage_after([first, second], [container("a"), container("b")]) == {
        "cpu": "2", "requests.cpu": "2", "limits.cpu": "2",
        "memory": "2Gi", "requests.memory": "2Gi", "limits.memory": "2Gi"}


def test_within_one_limit_range_a_later_container_item_overrides_an_earlier_one() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "1"}}, {"type": "Container", "default": {"cpu": "3"}})
    assert container_defaults([lr]).limits == (("cpu", "3"),)


def test_pod_and_claim_items_give_no_container_defaults() -> None:
    lr = limit_range({"type": "Pod", "max": {"cpu": "4"}}, {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}})
    assert container_defaults([lr]) == NO_DEFAULTS
    assert usage_after([lr], [container()]) == {}


def test_nothing_to_fill_returns_the_template_itself() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "1"}})
    template = {"spec": {"containers": [container(req={"cpu": "1"}, lim={"cpu": "1"})]}}
    assert apply_limit_ranges(template, container_defaults([lr])) is template
    assert apply_limit_ranges(template, NO_DEFAULTS) is template


def test_limit_ranges_by_namespace_from_a_mapping_or_a_function() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "1"}})
    assert defaults_for({"team": [lr]}, "team").limits == (("cpu", "1"),)
    assert defaults_for({"team": [lr]}, "other") == NO_DEFAULTS
    assert defaults_for(lambda ns: [lr] if ns == "team" else [], "team").limits == (("cpu", "1"),)
    assert defaults_for(None, "team") == NO_DEFAULTS


@pytest.mark.parametrize(("bad", "field"), [
    (limit_range({"type": "Container", "default": {"cpu": "-1"}}), "LimitRange lr: spec.limits[0].default.cpu"),
    (limit_range({"type": "Container", "defaultRequest": {"memory": "lots"}}),
     "LimitRange lr: spec.limits[0].defaultRequest.memory"),
    (limit_range({"type": "Container", "max": ["cpu"]}), "LimitRange lr: spec.limits[0].max"),
    ({"kind": "LimitRange", "spec": {"limits": "x"}}, "LimitRange #0: spec.limits"),
    ({"kind": "ConfigMap"}, "not LimitRange"),
    ("text", "LimitRange #0"),
])
def test_an_invalid_limit_range_names_the_field(bad: Any, field: str) -> None:
    with pytest.raises(InvalidLimitRange) as caught:
        container_defaults([bad])
    assert field in str(caught.value)


def test_defaults_keep_the_quantities_exact() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "0.1"}})
    got = usage_after([lr], [container()])
    assert parse_quantity(got["limits.cpu"]) == parse_quantity("100m")
