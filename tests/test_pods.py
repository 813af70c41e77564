"""Kubernetes' own pod-usage tables, transcribed from
`pkg/quota/v1/evaluator/core/pods_test.go` (TestPodEvaluatorUsage and
TestPodEvaluatorUsageResourceResize), with pod-level resources and in-place
resize enabled as in current Kubernetes.

Each case is the Go test's pod as v1 JSON and the usage map it expects. Test
ids are the Go case names.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from quotalang.pods import pod_limits, pod_requests, pod_usage
from quotalang.quantity import parse_quantity

NOW = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
GRACE = 30


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def container(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
              **extra: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "", "resources": resources, **extra}


def pod(containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": containers or []}
    if init:
        body["initContainers"] = init
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": body}


def counts(**usage: str) -> dict[str, str]:
    """Every charged pod also charges `pods` and `count/pods`."""
    return {"pods": "1", "count/pods": "1", **{k.replace("__", "/").replace("_", "."): v for k, v in usage.items()}}


def terminating(deletion: dt.datetime) -> dict[str, Any]:
    p = pod([container({"cpu": "1", "memory": "50M"}, {"cpu": "2", "memory": "100M"})],
            terminationGracePeriodSeconds=GRACE)
    p["metadata"] = {"deletionTimestamp": stamp(deletion), "deletionGracePeriodSeconds": GRACE}
    p["status"] = {"reason": "NodeLost"}
    return p


def resized(spec: dict[str, str], limits: dict[str, str], status: dict[str, str] | None) -> dict[str, Any]:
    p = pod([container(spec, limits)])
    p["status"] = {"containerStatuses": [{"name": "", "resources": {"requests": status}} if status is not None
                                         else {"name": ""}]}
    return p


DONGLE = {"example.com/dongle": "3"}
IMPLICIT = {"deviceclass.resource.kubernetes.io/dongle": "3"}

USAGE: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "init container CPU": (
        pod(init=[container({"cpu": "1m"}, {"cpu": "2m"})]),
        counts(requests_cpu="1m", limits_cpu="2m", cpu="1m"),
    ),
    "init container MEM": (
        pod(init=[container({"memory": "1m"}, {"memory": "2m"})]),
        counts(requests_memory="1m", limits_memory="2m", memory="1m"),
    ),
    "init container local ephemeral storage": (
        pod(init=[container({"ephemeral-storage": "32Mi"}, {"ephemeral-storage": "64Mi"})]),
        {"ephemeral-storage": "32Mi", "requests.ephemeral-storage": "32Mi", "limits.ephemeral-storage": "64Mi",
         "pods": "1", "count/pods": "1"},
    ),
    "init container hugepages": (
        pod(init=[container({"hugepages-2Mi": "100Mi"})]),
        {"hugepages-2Mi": "100Mi", "requests.hugepages-2Mi": "100Mi", "pods": "1", "count/pods": "1"},
    ),
    "init container extended resources": (
        pod(init=[container(DONGLE, DONGLE)]),
        {"requests.example.com/dongle": "3", "pods": "1", "count/pods": "1"},
    ),
    "init container implicit extended resources": (
        pod(init=[container(IMPLICIT, IMPLICIT)]),
        {"requests.deviceclass.resource.kubernetes.io/dongle": "3", "pods": "1", "count/pods": "1"},
    ),
    "container CPU": (
        pod([container({"cpu": "1m"}, {"cpu": "2m"})]),
        counts(requests_cpu="1m", limits_cpu="2m", cpu="1m"),
    ),
    "container MEM": (
        pod([container({"memory": "1m"}, {"memory": "2m"})]),
        counts(requests_memory="1m", limits_memory="2m", memory="1m"),
    ),
    "container local ephemeral storage": (
        pod([container({"ephemeral-storage": "32Mi"}, {"ephemeral-storage": "64Mi"})]),
        {"ephemeral-storage": "32Mi", "requests.ephemeral-storage": "32Mi", "limits.ephemeral-storage": "64Mi",
         "pods": "1", "count/pods": "1"},
    ),
    "container hugepages": (
        pod([container({"hugepages-2Mi": "100Mi"})]),
        {"hugepages-2Mi": "100Mi", "requests.hugepages-2Mi": "100Mi", "pods": "1", "count/pods": "1"},
    ),
    "container extended resources": (
        pod([container(DONGLE, DONGLE)]),
        {"requests.example.com/dongle": "3", "pods": "1", "count/pods": "1"},
    ),
    "container implicit extended resources": (
        pod([container(IMPLICIT, IMPLICIT)]),
        {"requests.deviceclass.resource.kubernetes.io/dongle": "3", "pods": "1", "count/pods": "1"},
    ),
    "terminated generic count still appears": (
        {**pod([container(DONGLE, DONGLE)]), "status": {"phase": "Succeeded"}},
        {"count/pods": "1"},
    ),
    "init container maximums override sum of containers": (
        pod(
            init=[
                container({"cpu": "4", "memory": "100M", "example.com/dongle": "4"},
                          {"cpu": "8", "memory": "200M", "example.com/dongle": "4"}),
                container({"cpu": "1", "memory": "50M", "example.com/dongle": "2"},
                          {"cpu": "2", "memory": "100M", "example.com/dongle": "2"}),
            ],
            containers=[
                container({"cpu": "1", "memory": "50M", "example.com/dongle": "1"},
                          {"cpu": "2", "memory": "100M", "example.com/dongle": "1"}),
                container({"cpu": "2", "memory": "25M", "example.com/dongle": "2"},
                          {"cpu": "5", "memory": "50M", "example.com/dongle": "2"}),
            ],
        ),
        counts(requests_cpu="4", requests_memory="100M", limits_cpu="8", limits_memory="200M", cpu="4",
               memory="100M", **{"requests_example.com__dongle": "4"}),
    ),
    "pod deletion timestamp exceeded": (
        terminating(NOW - dt.timedelta(seconds=2 * GRACE)),
        {"count/pods": "1"},
    ),
    "pod deletion timestamp not exceeded": (
        {**terminating(NOW), "spec": pod([container({"cpu": "1"}, {"cpu": "2"})])["spec"]},
        counts(requests_cpu="1", limits_cpu="2", cpu="1"),
    ),
    "count pod overhead as usage": (
        pod([container({"cpu": "1"}, {"cpu": "2"})], overhead={"cpu": "1"}),
        counts(requests_cpu="2", limits_cpu="3", cpu="2"),
    ),
    "pod-level CPU": (
        pod(resources={"requests": {"cpu": "1m"}, "limits": {"cpu": "2m"}}),
        counts(requests_cpu="1m", limits_cpu="2m", cpu="1m"),
    ),
    "pod-level Memory": (
        pod(resources={"requests": {"memory": "1Mi"}, "limits": {"memory": "2Mi"}}),
        counts(requests_memory="1Mi", limits_memory="2Mi", memory="1Mi"),
    ),
    "pod-level memory with container-level ephemeral storage": (
        pod([container({"ephemeral-storage": "32Mi"}, {"ephemeral-storage": "64Mi"})],
            resources={"requests": {"memory": "1Mi"}, "limits": {"memory": "2Mi"}}),
        {"ephemeral-storage": "32Mi", "requests.ephemeral-storage": "32Mi", "limits.ephemeral-storage": "64Mi",
         "requests.memory": "1Mi", "limits.memory": "2Mi", "memory": "1Mi", "pods": "1", "count/pods": "1"},
    ),
    # TestPodEvaluatorUsageResourceResize
    "verify Max(Container.Spec.Requests, ContainerStatus.Resources) for memory resource": (
        resized({"memory": "200Mi"}, {"memory": "400Mi"}, {"memory": "150Mi"}),
        counts(requests_memory="200Mi", limits_memory="400Mi", memory="200Mi"),
    ),
    "verify Max(Container.Spec.Requests, ContainerStatus.Resources) for CPU resource": (
        resized({"cpu": "100m"}, {"cpu": "200m"}, {"cpu": "150m"}),
        counts(requests_cpu="150m", limits_cpu="200m", cpu="150m"),
    ),
    "verify Max(Container.Spec.Requests, ContainerStatus.Resources) for CPU and memory resource": (
        resized({"cpu": "100m", "memory": "200Mi"}, {"cpu": "200m", "memory": "400Mi"},
                {"cpu": "150m", "memory": "250Mi"}),
        counts(requests_cpu="150m", limits_cpu="200m", requests_memory="250Mi", limits_memory="400Mi",
               cpu="150m", memory="250Mi"),
    ),
    "verify Max(Container.Spec.Requests, ContainerStatus.Resources==nil) for CPU and memory resource": (
        resized({"cpu": "100m", "memory": "200Mi"}, {"cpu": "200m", "memory": "400Mi"}, None),
        counts(requests_cpu="100m", limits_cpu="200m", requests_memory="200Mi", limits_memory="400Mi",
               cpu="100m", memory="200Mi"),
    ),
}


@pytest.mark.parametrize(("case", "pod_body", "expected"), [(k, *v) for k, v in USAGE.items()], ids=list(USAGE))
def test_pod_evaluator_usage(case: str, pod_body: dict[str, Any], expected: dict[str, str]) -> None:
    usage = pod_usage(pod_body, now=NOW)
    assert {k: str(v) for k, v in usage.items()} == {k: str(parse_quantity(v)) for k, v in expected.items()}
    assert all(usage[k] == parse_quantity(v) for k, v in expected.items())


def test_requests_and_limits_are_keyed_by_bare_resource_names() -> None:
    body = USAGE["init container maximums override sum of containers"][0]
    # requests: max(Σ containers (cpu 3, memory 75M, dongle 3), each init (cpu 4 / 100M / 4, cpu 1 / 50M / 2))
    assert {k: str(v) for k, v in pod_requests(body).items()} == {"cpu": "4", "memory": "100M",
                                                                  "example.com/dongle": "4"}
    # limits: max(Σ containers (cpu 7, memory 150M, dongle 3), each init (cpu 8 / 200M / 4))
    assert {k: str(v) for k, v in pod_limits(body).items()} == {"cpu": "8", "memory": "200M",
                                                                "example.com/dongle": "4"}


# ------------------------------------------------------------------ component-helpers/resource/helpers_test.go
def one_container(cpu_request: str = "", cpu_limit: str = "", memory_request: str = "", memory_limit: str = "",
                  cpu_overhead: str = "", memory_overhead: str = "") -> dict[str, Any]:
    """`getPod("foo", podResources{...})`: one container, optional overhead."""
    requests = {k: v for k, v in (("cpu", cpu_request), ("memory", memory_request)) if v}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
    overhead = {k: v for k, v in (("cpu", cpu_overhead), ("memory", memory_overhead)) if v}
    return pod([{"name": "foo", "resources": {"requests": requests, "limits": limits}}],
               **({"overhead": overhead} if overhead else {}))


REQUESTS_AND_LIMITS: dict[str, tuple[dict[str, Any], dict[str, str], dict[str, str]]] = {  # TestPodRequestsAndLimits
    "just-limit-no-overhead": (one_container(cpu_limit="9"), {}, {"cpu": "9"}),
    "just-overhead": (one_container(cpu_overhead="5", memory_overhead="5"), {"cpu": "5", "memory": "5"}, {}),
    "req-and-overhead": (
        one_container(cpu_request="1", memory_request="10", cpu_overhead="5", memory_overhead="5"),
        {"cpu": "6", "memory": "15"}, {},
    ),
    "all-req-lim-and-overhead": (
        one_container("1", "2", "10", "12", "5", "5"), {"cpu": "6", "memory": "15"}, {"cpu": "7", "memory": "17"},
    ),
    "req-some-lim-and-overhead": (
        one_container(cpu_request="1", cpu_limit="2", memory_request="10", cpu_overhead="5", memory_overhead="5"),
        {"cpu": "6", "memory": "15"}, {"cpu": "7"},
    ),
}


@pytest.mark.parametrize(
    ("body", "requests", "limits"), list(REQUESTS_AND_LIMITS.values()), ids=list(REQUESTS_AND_LIMITS)
)
def test_pod_requests_and_limits(body: dict[str, Any], requests: dict[str, str], limits: dict[str, str]) -> None:
    assert {k: str(v) for k, v in pod_requests(body).items()} == requests
    assert {k: str(v) for k, v in pod_limits(body).items()} == limits


def cpu(value: str, name: str = "") -> dict[str, Any]:
    return {"name": name, "resources": {"requests": {"cpu": value}}}


def with_status(body: dict[str, Any], statuses: list[dict[str, Any]], infeasible: bool = False) -> dict[str, Any]:
    body["status"] = {"containerStatuses": statuses}
    if infeasible:
        body["status"]["conditions"] = [{"type": "PodResizePending", "status": "True", "reason": "Infeasible"}]
    return body


RESOURCE_REQUESTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {  # TestPodResourceRequests
    "nil options, larger init container": (pod([cpu("1")], init=[cpu("4")]), {"cpu": "4"}),
    "nil options, larger containers": (pod([cpu("2"), cpu("3")], init=[cpu("2")]), {"cpu": "5"}),
    "pod overhead included": (
        pod([cpu("2"), cpu("3")], init=[{"name": "", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}],
            overhead={"cpu": "1", "memory": "1Gi"}),
        {"cpu": "6", "memory": "1Gi"},
    ),
    "resized, infeasible": (
        with_status(pod([cpu("4", "container-1")]),
                    [{"name": "container-1", "resources": {"requests": {"cpu": "2"}}}], infeasible=True),
        {"cpu": "2"},
    ),
    "resized, infeasible & in-progress": (
        with_status(pod([cpu("6", "container-1")]),
                    [{"name": "container-1", "allocatedResources": {"cpu": "4"},
                      "resources": {"requests": {"cpu": "2"}}}], infeasible=True),
        {"cpu": "4"},
    ),
    "resized, no resize status": (
        with_status(pod([cpu("4", "container-1")]),
                    [{"name": "container-1", "resources": {"requests": {"cpu": "2"}}}]),
        {"cpu": "4"},
    ),
}


@pytest.mark.parametrize(("body", "requests"), list(RESOURCE_REQUESTS.values()), ids=list(RESOURCE_REQUESTS))
def test_pod_resource_requests(body: dict[str, Any], requests: dict[str, str]) -> None:
    """With UseStatusResources, as the quota evaluator calls it when in-place resize is on."""
    assert {k: str(v) for k, v in pod_requests(body).items()} == requests
