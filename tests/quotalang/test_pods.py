"""Kubernetes' own pod-usage tables, transcribed.

- `pkg/quota/v1/evaluator/core/pods_test.go`: TestPodEvaluatorUsage,
  TestPodEvaluatorUsageResourceResize and TestPodEvaluatorUsageStats.
- `staging/src/k8s.io/component-helpers/resource/helpers_test.go`: every
  PodRequests / PodLimits / AggregateContainer* table (see REQUESTS_AND_LIMITS).

Each case is the Go test's pod as v1 JSON and the map it expects. Test ids are
`<Go test>/<Go case name>`.

The quota evaluator calls PodRequests / PodLimits with the options of current
Kubernetes' default feature gates: UseStatusResources (InPlacePodVerticalScaling,
GA) and pod-level resources (PodLevelResources, beta, on);
InPlacePodLevelResourcesVerticalScaling and DRA node-allocatable claim status
are alpha (off), so pod-level status and `nodeAllocatableResourceClaimStatuses`
are ignored, overhead is never excluded and NonMissingContainerRequests is never
set. Where a helpers_test.go case runs PodRequests / PodLimits with other
options, the case is kept and its expectation translated to what those quota
options give; the comment `# Go (<options>): <Go's expectation>` records the
original next to it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from quotalang.pods import InvalidPod, pod_constraints, pod_limits, pod_requests, pod_usage
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


def sum_usage(usages: list[dict[str, Any]]) -> dict[str, str]:
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            total[key] = total[key] + value if key in total else value
    return {k: str(v) for k, v in total.items()}


def make_pod(name: str, priority_class: str, resources: dict[str, str] | None, phase: str) -> dict[str, Any]:
    """pods_test.go makePod: one container whose requests and limits are both `resources`."""
    body = pod([container(resources, resources)], priorityClassName=priority_class)
    body["metadata"] = {"name": name}
    body["status"] = {"phase": phase}
    return body


def best_effort(body: dict[str, Any]) -> bool:
    """qos BestEffort: no container sets a request or a limit."""
    spec = body["spec"]
    return not any(c.get("resources", {}).get(k) for c in spec.get("containers", []) + spec.get("initContainers", [])
                   for k in ("requests", "limits"))


CPU1 = {"cpu": "1"}
HIGH = {"high-priority"}
# TestPodEvaluatorUsageStats: (pods, priority classes the scope selector admits or None, BestEffort scope, used).
# Scope matching is the evaluator's business, not pod usage: the test filters the pods the way the Go
# scopes do (PriorityClass In [...], BestEffort) and sums pod_usage over those that match.
USAGE_STATS: dict[str, tuple[list[dict[str, Any]], set[str] | None, bool, dict[str, str]]] = {
    "nil case": ([], None, False, {}),
    "all pods in running state": (
        [make_pod("p1", "", CPU1, "Running"), make_pod("p2", "", CPU1, "Running")], None, False,
        {"pods": "2", "count/pods": "2", "cpu": "2", "requests.cpu": "2", "limits.cpu": "2"},
    ),
    "one pods in terminal state": (
        [make_pod("p1", "", CPU1, "Running"), make_pod("p2", "", CPU1, "Succeeded")], None, False,
        {"pods": "1", "count/pods": "2", "cpu": "1", "requests.cpu": "1", "limits.cpu": "1"},
    ),
    "partial pods matching quotaScopeSelector": (
        [make_pod("p1", "high-priority", CPU1, "Running"), make_pod("p2", "high-priority", CPU1, "Succeeded"),
         make_pod("p3", "low-priority", CPU1, "Running")], HIGH, False,
        {"pods": "1", "count/pods": "2", "cpu": "1", "requests.cpu": "1", "limits.cpu": "1"},
    ),
    "partial pods matching quotaScopeSelector - w/ scopeName specified": (
        [make_pod("p1", "high-priority", CPU1, "Running"), make_pod("p2", "high-priority", CPU1, "Succeeded"),
         make_pod("p3", "low-priority", CPU1, "Running")], HIGH, False,
        {"pods": "1", "count/pods": "2", "cpu": "1", "requests.cpu": "1", "limits.cpu": "1"},
    ),
    "partial pods matching quotaScopeSelector - w/ multiple scopeNames specified": (
        [make_pod("p1", "high-priority", CPU1, "Running"), make_pod("p2", "high-priority", CPU1, "Succeeded"),
         make_pod("p3", "low-priority", CPU1, "Running"), make_pod("p4", "high-priority", None, "Failed")], HIGH, True,
        {"count/pods": "1"},
    ),
}


@pytest.mark.parametrize(("pods", "classes", "only_best_effort", "expected"), list(USAGE_STATS.values()),
                         ids=[f"TestPodEvaluatorUsageStats/{k}" for k in USAGE_STATS])
def test_pod_evaluator_usage_stats(pods: list[dict[str, Any]], classes: set[str] | None, only_best_effort: bool,
                                   expected: dict[str, str]) -> None:
    matching = [p for p in pods if (classes is None or p["spec"]["priorityClassName"] in classes)
                and (not only_best_effort or best_effort(p))]
    got = sum_usage([pod_usage(p, now=NOW) for p in matching])
    assert got == {k: str(parse_quantity(v)) for k, v in expected.items()}


def test_requests_and_limits_are_keyed_by_bare_resource_names() -> None:
    body = USAGE["init container maximums override sum of containers"][0]
    # requests: max(Σ containers (cpu 3, memory 75M, dongle 3), each init (cpu 4 / 100M / 4, cpu 1 / 50M / 2))
    assert {k: str(v) for k, v in pod_requests(body).items()} == {"cpu": "4", "memory": "100M",
                                                                  "example.com/dongle": "4"}
    # limits: max(Σ containers (cpu 7, memory 150M, dongle 3), each init (cpu 8 / 200M / 4))
    assert {k: str(v) for k, v in pod_limits(body).items()} == {"cpu": "8", "memory": "200M",
                                                                "example.com/dongle": "4"}


# ------------------------------------------------------------------ component-helpers helpers_test.go
def ctr(name: str = "", req: dict[str, str] | None = None, lim: dict[str, str] | None = None,
        sidecar: bool = False) -> dict[str, Any]:
    """A v1 container; `sidecar` is `restartPolicy: Always` (a restartable init container)."""
    body = container(req, lim, name=name)
    if sidecar:
        body["restartPolicy"] = "Always"
    return body


def cstatus(name: str, req: dict[str, str] | None = None, lim: dict[str, str] | None = None,
            alloc: dict[str, str] | None = None) -> dict[str, Any]:
    """A v1 ContainerStatus: `resources` (actuated) when req or lim is given, `allocatedResources` when alloc is."""
    body: dict[str, Any] = {"name": name}
    if req is not None or lim is not None:
        body["resources"] = {k: v for k, v in (("requests", req), ("limits", lim)) if v is not None}
    if alloc is not None:
        body["allocatedResources"] = alloc
    return body


INFEASIBLE = [{"type": "PodResizePending", "status": "True", "reason": "Infeasible"}]


def mk(containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None, *,
       overhead: dict[str, str] | None = None, resources: dict[str, Any] | None = None,
       statuses: list[dict[str, Any]] | None = None, init_statuses: list[dict[str, Any]] | None = None,
       conditions: list[dict[str, str]] | None = None, status: dict[str, Any] | None = None,
       populate: bool = False) -> dict[str, Any]:
    """A v1 pod; `status` adds pod-level status fields; `populate` is populatePodStatusResourcesForTest."""
    spec: dict[str, Any] = {"containers": containers or []}
    if init:
        spec["initContainers"] = init
    if overhead is not None:
        spec["overhead"] = overhead
    if resources is not None:
        spec["resources"] = resources
    st: dict[str, Any] = dict(status or {})
    if statuses:
        st["containerStatuses"] = statuses
    if init_statuses:
        st["initContainerStatuses"] = init_statuses
    if conditions:
        st["conditions"] = conditions
    if populate and "resources" not in st:
        # populatePodStatusResourcesForTest: pod-level status = Σ container statuses. The quota options ignore
        # pod-level status (InPlacePodLevelResourcesVerticalScaling is alpha); kept to mirror the Go pod.
        requests: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        allocated: dict[str, Any] = {}
        for cs in (statuses or []) + (init_statuses or []):
            for into, got in ((requests, cs.get("resources", {}).get("requests")),
                              (limits, cs.get("resources", {}).get("limits")),
                              (allocated, cs.get("allocatedResources"))):
                for k, v in (got or {}).items():
                    into[k] = str(parse_quantity(into[k]) + parse_quantity(v)) if k in into else v
        st["resources"] = {"requests": requests, "limits": limits}
        st["allocatedResources"] = allocated
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}
    if st:
        body["status"] = st
    return body


def get_pod(cpu_request: str = "", cpu_limit: str = "", memory_request: str = "", memory_limit: str = "",
            cpu_overhead: str = "", memory_overhead: str = "") -> dict[str, Any]:
    """helpers_test.go getPod("foo", podResources{...}): one container and one init container, same resources."""
    def pick(**kv: str) -> dict[str, str]:
        return {k: v for k, v in kv.items() if v}
    req, lim = pick(cpu=cpu_request, memory=memory_request), pick(cpu=cpu_limit, memory=memory_limit)
    return mk([ctr("foo", req, lim)], [ctr("init-foo", req, lim)],
              overhead=pick(cpu=cpu_overhead, memory=memory_overhead))


def plr(pod_resources: dict[str, Any] | None = None, overhead: dict[str, str] | None = None,
        containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        status: dict[str, Any] | None = None) -> dict[str, Any]:
    """helpers_test.go getPodLevelResourcesPod (+ status.resources / status.allocatedResources when given)."""
    return mk(containers, init, resources=pod_resources or {}, overhead=overhead, status=status)


HP2 = "hugepages-2Mi"
HP1G = "hugepages-1Gi"
R = dict[str, str]
# id -> (pod, expected PodRequests or None when Go does not check it, expected PodLimits or None)
REQUESTS_AND_LIMITS: dict[str, tuple[dict[str, Any], R | None, R | None]] = {
    # ---- TestPodRequestsAndLimits (PodResourcesOptions{}: no status in these pods, same as the quota options)
    "TestPodRequestsAndLimits/just-limit-no-overhead": (get_pod(cpu_limit="9"), {}, {"cpu": "9"}),
    "TestPodRequestsAndLimits/just-overhead": (
        get_pod(cpu_overhead="5", memory_overhead="5"), {"cpu": "5", "memory": "5"}, {}),
    "TestPodRequestsAndLimits/req-and-overhead": (
        get_pod(cpu_request="1", memory_request="10", cpu_overhead="5", memory_overhead="5"),
        {"cpu": "6", "memory": "15"}, {}),
    "TestPodRequestsAndLimits/all-req-lim-and-overhead": (
        get_pod(cpu_request="1", cpu_limit="2", memory_request="10", memory_limit="12", cpu_overhead="5",
                memory_overhead="5"),
        {"cpu": "6", "memory": "15"}, {"cpu": "7", "memory": "17"}),
    "TestPodRequestsAndLimits/req-some-lim-and-overhead": (
        get_pod(cpu_request="1", cpu_limit="2", memory_request="10", cpu_overhead="5", memory_overhead="5"),
        {"cpu": "6", "memory": "15"}, {"cpu": "7"}),
    # ---- TestPodRequestsAndLimitsWithoutOverhead: Go runs it with ExcludeOverhead; quota always adds overhead
    "TestPodRequestsAndLimitsWithoutOverhead/two container no overhead - should just be sum of containers": (
        mk([ctr("foobar", {"cpu": "1", "memory": "5"}, {"cpu": "2", "memory": "10"}),
            ctr("foobar2", {"cpu": "4", "memory": "12"}, {"cpu": "8", "memory": "24"})]),
        {"cpu": "5", "memory": "17"}, {"cpu": "10", "memory": "34"}),
    "TestPodRequestsAndLimitsWithoutOverhead/two container with overhead - shouldn't consider overhead": (
        mk([ctr("foobar", {"cpu": "1", "memory": "5"}, {"cpu": "2", "memory": "10"}),
            ctr("foobar2", {"cpu": "4", "memory": "12"}, {"cpu": "8", "memory": "24"})],
           overhead={"cpu": "3", "memory": "8"}),
        # Go (ExcludeOverhead): requests cpu 5 memory 17, limits cpu 10 memory 34
        {"cpu": "8", "memory": "25"}, {"cpu": "13", "memory": "42"}),
    "TestPodRequestsAndLimitsWithoutOverhead/two container with overhead, massive init - should just be the largest init": (  # noqa: E501
        mk([ctr("foobar", {"cpu": "1", "memory": "5"}, {"cpu": "2", "memory": "10"}),
            ctr("foobar2", {"cpu": "4", "memory": "12"}, {"cpu": "8", "memory": "24"})],
           [ctr("small-init", {"cpu": "1", "memory": "5"}, {"cpu": "1", "memory": "5"}),
            ctr("big-init", {"cpu": "40", "memory": "120"}, {"cpu": "80", "memory": "240"})],
           overhead={"cpu": "3", "memory": "8"}),
        # Go (ExcludeOverhead): requests cpu 40 memory 120, limits cpu 80 memory 240
        {"cpu": "43", "memory": "128"}, {"cpu": "83", "memory": "248"}),
    # ---- TestPodResourceRequests (every pod goes through populatePodStatusResourcesForTest)
    "TestPodResourceRequests/nil options, larger init container": (
        mk([ctr(req={"cpu": "1"})], [ctr(req={"cpu": "4"})], populate=True), {"cpu": "4"}, None),
    "TestPodResourceRequests/nil options, larger containers": (
        mk([ctr(req={"cpu": "2"}), ctr(req={"cpu": "3"})], [ctr(req={"cpu": "2"})], populate=True), {"cpu": "5"}, None),
    "TestPodResourceRequests/pod overhead excluded": (
        mk([ctr(req={"cpu": "2"}), ctr(req={"cpu": "3"})], [ctr(req={"cpu": "2"})], overhead={"cpu": "1"},
           populate=True),
        {"cpu": "6"}, None),  # Go (ExcludeOverhead): cpu 5
    "TestPodResourceRequests/pod overhead included": (
        mk([ctr(req={"cpu": "2"}), ctr(req={"cpu": "3"})], [ctr(req={"cpu": "2"}, lim={"cpu": "2"})],
           overhead={"cpu": "1", "memory": "1Gi"}, populate=True),
        {"cpu": "6", "memory": "1Gi"}, None),
    "TestPodResourceRequests/resized, infeasible": (
        mk([ctr("container-1", {"cpu": "4"})], statuses=[cstatus("container-1", req={"cpu": "2"})],
           conditions=INFEASIBLE, populate=True),
        {"cpu": "2"}, None),
    "TestPodResourceRequests/resized, infeasible & in-progress": (
        mk([ctr("container-1", {"cpu": "6"})], statuses=[cstatus("container-1", req={"cpu": "2"}, alloc={"cpu": "4"})],
           conditions=INFEASIBLE, populate=True),
        {"cpu": "4"}, None),
    "TestPodResourceRequests/resized, no resize status": (
        mk([ctr("container-1", {"cpu": "4"})], statuses=[cstatus("container-1", req={"cpu": "2"})], populate=True),
        {"cpu": "4"}, None),
    "TestPodResourceRequests/resized: per-resource 3-way maximum": (
        mk([ctr("container-1", {"cpu": "30m", "memory": "20M", "ephemeral-storage": "10G"})],
           statuses=[cstatus("container-1", req={"cpu": "10m", "memory": "30M", "ephemeral-storage": "20G"},
                             alloc={"cpu": "20m", "memory": "10M", "ephemeral-storage": "30G"})], populate=True),
        {"cpu": "30m", "memory": "30M", "ephemeral-storage": "30G"}, None),
    "TestPodResourceRequests/resized, infeasible, but don't use status": (
        mk([ctr("container-1", {"cpu": "4"})], statuses=[cstatus("container-1", req={"cpu": "2"})],
           conditions=INFEASIBLE, populate=True),
        {"cpu": "2"}, None),  # Go (UseStatusResources false): cpu 4
    "TestPodResourceRequests/resized, restartable init container, infeasible": (
        mk(init=[ctr("restartable-init-1", {"cpu": "4"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", req={"cpu": "2"})], conditions=INFEASIBLE, populate=True),
        {"cpu": "2"}, None),
    "TestPodResourceRequests/resized, restartable init container, no resize status": (
        mk(init=[ctr("restartable-init-1", {"cpu": "4"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", req={"cpu": "2"})], populate=True),
        {"cpu": "4"}, None),
    "TestPodResourceRequests/resized, restartable init container, infeasible, but don't use status": (
        mk(init=[ctr("restartable-init-1", {"cpu": "4"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", req={"cpu": "2"})], conditions=INFEASIBLE, populate=True),
        {"cpu": "2"}, None),  # Go (UseStatusResources false): cpu 4
    "TestPodResourceRequests/restartable init container": (
        mk([ctr("container-1", {"cpu": "1"})], [ctr("restartable-init-1", {"cpu": "1"}, sidecar=True)], populate=True),
        {"cpu": "2"}, None),
    "TestPodResourceRequests/multiple restartable init containers": (
        mk([ctr("container-1", {"cpu": "1"})],
           [ctr("init-1", {"cpu": "5"}), ctr("restartable-init-1", {"cpu": "1"}, sidecar=True),
            ctr("restartable-init-2", {"cpu": "2"}, sidecar=True),
            ctr("restartable-init-3", {"cpu": "3"}, sidecar=True)],
           populate=True),
        {"cpu": "7"}, None),
    "TestPodResourceRequests/multiple restartable and regular init containers": (
        mk([ctr("container-1", {"cpu": "1"})],
           [ctr("init-1", {"cpu": "5"}), ctr("restartable-init-1", {"cpu": "1"}, sidecar=True),
            ctr("restartable-init-2", {"cpu": "2"}, sidecar=True), ctr("init-2", {"cpu": "5"}),
            ctr("restartable-init-3", {"cpu": "3"}, sidecar=True)], populate=True),
        {"cpu": "8"}, None),
    "TestPodResourceRequests/restartable-init, init and regular": (
        mk([ctr("container-1", {"cpu": "100"})],
           [ctr("restartable-init-1", {"cpu": "10"}, sidecar=True), ctr("init-1", {"cpu": "200"})], populate=True),
        {"cpu": "210"}, None),
    "TestPodResourceRequests/aggregate request resolves max of sums instead of sum of maxes": (
        mk([ctr("c1", {"cpu": "1"}), ctr("c2", {"cpu": "2"})],
           statuses=[cstatus("c1", alloc={"cpu": "2"}), cstatus("c2", alloc={"cpu": "1"})], populate=True),
        {"cpu": "3"}, None),
    # ---- TestPodResourceLimits
    "TestPodResourceLimits/nil options, larger init container": (
        mk([ctr(lim={"cpu": "1"})], [ctr(lim={"cpu": "4"})], populate=True), None, {"cpu": "4"}),
    "TestPodResourceLimits/nil options, larger containers": (
        mk([ctr(lim={"cpu": "2"}), ctr(lim={"cpu": "3"})], [ctr(lim={"cpu": "2"})], populate=True), None, {"cpu": "5"}),
    "TestPodResourceLimits/pod overhead excluded": (
        mk([ctr(lim={"cpu": "2"}), ctr(lim={"cpu": "3"})], [ctr(lim={"cpu": "2"})], overhead={"cpu": "1"},
           populate=True),
        None, {"cpu": "6"}),  # Go (ExcludeOverhead): cpu 5
    "TestPodResourceLimits/pod overhead included": (
        mk([ctr(lim={"cpu": "2"}), ctr(lim={"cpu": "3"})], [ctr(lim={"cpu": "2"})],
           overhead={"cpu": "1", "memory": "1Gi"}, populate=True),
        None, {"cpu": "6"}),  # overhead is only added to non-zero limits: no memory limit
    "TestPodResourceLimits/no limited containers should result in no limits for the pod": (
        mk([{"name": ""}], populate=True), None, {}),
    "TestPodResourceLimits/one limited and one unlimited container should result in the limited container's limits for the pod": (  # noqa: E501
        mk([ctr(lim={"cpu": "2", "memory": "2Gi"}), {"name": ""}], populate=True), None, {"cpu": "2", "memory": "2Gi"}),
    "TestPodResourceLimits/one limited and one unlimited init container should result in the limited init container's limits for the pod": (  # noqa: E501
        mk([ctr(lim={"cpu": "1", "memory": "1Gi"})], [ctr(lim={"cpu": "2", "memory": "2Gi"}), {"name": ""}],
           populate=True),
        None, {"cpu": "2", "memory": "2Gi"}),
    "TestPodResourceLimits/restartable init container": (
        mk([ctr("container-1", lim={"cpu": "1"})], [ctr("restartable-init-1", lim={"cpu": "1"}, sidecar=True)],
           populate=True),
        None, {"cpu": "2"}),
    "TestPodResourceLimits/multiple restartable init containers": (
        mk([ctr("container-1", lim={"cpu": "1"})],
           [ctr("init-1", lim={"cpu": "5"}), ctr("restartable-init-1", lim={"cpu": "1"}, sidecar=True),
            ctr("restartable-init-2", lim={"cpu": "2"}, sidecar=True),
            ctr("restartable-init-3", lim={"cpu": "3"}, sidecar=True)], populate=True),
        None, {"cpu": "7"}),
    "TestPodResourceLimits/multiple restartable and regular init containers": (
        mk([ctr("container-1", lim={"cpu": "1"})],
           [ctr("init-1", lim={"cpu": "5"}), ctr("restartable-init-1", lim={"cpu": "1"}, sidecar=True),
            ctr("restartable-init-2", lim={"cpu": "2"}, sidecar=True), ctr("init-2", lim={"cpu": "5"}),
            ctr("restartable-init-3", lim={"cpu": "3"}, sidecar=True)], populate=True),
        None, {"cpu": "8"}),
    "TestPodResourceLimits/restartable-init, init and regular": (
        mk([ctr("container-1", lim={"cpu": "100"})],
           [ctr("restartable-init-1", lim={"cpu": "10"}, sidecar=True), ctr("init-1", lim={"cpu": "200"})],
           populate=True),
        None, {"cpu": "210"}),
    "TestPodResourceLimits/pod scaled up": (
        mk([ctr("container-1", lim={"memory": "2Gi"})], statuses=[cstatus("container-1", lim={"memory": "1Gi"})],
           populate=True),
        None, {"memory": "2Gi"}),
    "TestPodResourceLimits/pod scaled down": (
        mk([ctr("container-1", lim={"memory": "1Gi"})], statuses=[cstatus("container-1", lim={"memory": "2Gi"})],
           populate=True),
        None, {"memory": "2Gi"}),
    "TestPodResourceLimits/pod scaled down, don't use status": (
        mk([ctr("container-1", lim={"memory": "1Gi"})], statuses=[cstatus("container-1", lim={"memory": "2Gi"})],
           populate=True),
        None, {"memory": "2Gi"}),  # Go (UseStatusResources false): memory 1Gi
    "TestPodResourceLimits/pod scaled up with restartable init containers": (
        mk(init=[ctr("restartable-init-1", lim={"memory": "2Gi"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", lim={"memory": "1Gi"})], populate=True),
        None, {"memory": "2Gi"}),
    "TestPodResourceLimits/pod scaled down with restartable init containers": (
        mk(init=[ctr("restartable-init-1", lim={"memory": "1Gi"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", lim={"memory": "2Gi"})], populate=True),
        None, {"memory": "2Gi"}),
    "TestPodResourceLimits/pod scaled down with restartable init containers, don't use status": (
        mk(init=[ctr("restartable-init-1", lim={"memory": "1Gi"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", lim={"memory": "2Gi"})], populate=True),
        None, {"memory": "2Gi"}),  # Go (UseStatusResources false): memory 1Gi
    "TestPodResourceLimits/aggregate limit resolves max of sums instead of sum of maxes": (
        mk([ctr("c1", lim={"cpu": "1"}), ctr("c2", lim={"cpu": "2"})],
           statuses=[cstatus("c1", lim={"cpu": "2"}), cstatus("c2", lim={"cpu": "1"})], populate=True),
        None, {"cpu": "3"}),
    # ---- TestPodLevelResourceRequests (getPodLevelResourcesPod)
    "TestPodLevelResourceRequests/nil": (plr(), {}, None),
    "TestPodLevelResourceRequests/pod level memory resource with SkipPodLevelResources true": (
        plr({"requests": {"memory": "2Mi"}}), {"memory": "2Mi"}, None),  # Go (SkipPodLevelResources): {}
    "TestPodLevelResourceRequests/pod level memory resource with SkipPodLevelResources false": (
        plr({"requests": {"memory": "2Mi"}}), {"memory": "2Mi"}, None),
    "TestPodLevelResourceRequests/pod level memory and container level cpu resources with SkipPodLevelResources false": (  # noqa: E501
        plr({"requests": {"memory": "2Mi"}}, containers=[ctr(req={"cpu": "2m"})]),
        {"memory": "2Mi", "cpu": "2m"}, None),
    "TestPodLevelResourceRequests/pod level unsupported resources set at both pod-level and container-level with SkipPodLevelResources false": (  # noqa: E501
        plr({"requests": {"storage": "2Mi"}}, containers=[ctr(req={"storage": "3Mi"})]), {"storage": "3Mi"}, None),
    "TestPodLevelResourceRequests/pod level unsupported resources set at pod-level with SkipPodLevelResources false": (
        plr({"requests": {"storage": "2Mi"}}, containers=[ctr(req={"memory": "3Mi"})]), {"memory": "3Mi"}, None),
    "TestPodLevelResourceRequests/only container level resources set with SkipPodLevelResources false": (
        plr(containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})]), {"memory": "3Mi", "cpu": "2m"}, None),
    "TestPodLevelResourceRequests/both container-level and pod-level resources set with SkipPodLevelResources false": (
        plr({"requests": {"memory": "6Mi", "cpu": "8m"}}, containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})]),
        {"memory": "6Mi", "cpu": "8m"}, None),
    "TestPodLevelResourceRequests/container-level resources and init container set with SkipPodLevelResources false": (
        plr(containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})], init=[ctr(req={"memory": "5Mi", "cpu": "4m"})]),
        {"memory": "5Mi", "cpu": "4m"}, None),
    # the Go table repeats this name; its second case runs with SkipPodLevelResources true (no pod-level here)
    "TestPodLevelResourceRequests/container-level resources and init container set with SkipPodLevelResources false#01": (  # noqa: E501
        plr(containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})], init=[ctr(req={"memory": "5Mi", "cpu": "4m"})]),
        {"memory": "5Mi", "cpu": "4m"}, None),
    "TestPodLevelResourceRequests/container-level resources and sidecar container set with SkipPodLevelResources false": (  # noqa: E501
        plr(containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})],
            init=[ctr(req={"memory": "5Mi", "cpu": "4m"}, sidecar=True)]),
        {"memory": "8Mi", "cpu": "6m"}, None),
    "TestPodLevelResourceRequests/container-level resources, init and sidecar container set with SkipPodLevelResources false": (  # noqa: E501
        plr(containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})],
            init=[ctr(req={"memory": "5Mi", "cpu": "4m"}, sidecar=True), ctr(req={"memory": "6Mi", "cpu": "8m"})]),
        {"memory": "11Mi", "cpu": "12m"}, None),
    "TestPodLevelResourceRequests/pod-level resources, container-level resources, init and sidecar container set with SkipPodLevelResources false": (  # noqa: E501
        plr({"requests": {"memory": "15Mi", "cpu": "18m"}}, containers=[ctr(req={"memory": "3Mi", "cpu": "2m"})],
            init=[ctr(req={"memory": "5Mi", "cpu": "4m"}, sidecar=True), ctr(req={"memory": "6Mi", "cpu": "8m"})]),
        {"memory": "15Mi", "cpu": "18m"}, None),
    "TestPodLevelResourceRequests/pod-level resources, hugepage request/limit single page size": (
        plr({"limits": {HP2: "2Mi"}, "requests": {"memory": "10Mi", HP2: "2Mi"}}),
        {"memory": "10Mi", HP2: "2Mi"}, None),
    "TestPodLevelResourceRequests/pod-level resources, hugepage request/limit multiple page sizes": (
        plr({"limits": {HP2: "2Mi", HP1G: "1Gi"}, "requests": {"cpu": "1", HP2: "2Mi", HP1G: "1Gi"}}),
        {"cpu": "1", HP2: "2Mi", HP1G: "1Gi"}, None),
    "TestPodLevelResourceRequests/pod-level resources, container-level resources, hugepage request/limit single page size": (  # noqa: E501
        plr({"limits": {HP2: "10Mi"}, "requests": {"cpu": "1", HP2: "10Mi"}},
            containers=[ctr(req={HP2: "6Mi"}, lim={HP2: "6Mi"})]),
        {"cpu": "1", HP2: "10Mi"}, None),
    "TestPodLevelResourceRequests/pod-level resources, container-level resources, hugepage request/limit multiple page sizes": (  # noqa: E501
        plr({"limits": {HP2: "10Mi", HP1G: "2Gi"}, "requests": {"cpu": "1", HP2: "10Mi", HP1G: "2Gi"}},
            containers=[ctr(req={"cpu": "1", HP1G: "2Gi"}, lim={HP1G: "2Gi"})]),
        {"cpu": "1", HP2: "10Mi", HP1G: "2Gi"}, None),
    "TestPodLevelResourceRequests/pod-level resources, container-level resources, hugepage request/limit multiple page sizes between pod-level and container-level": (  # noqa: E501
        plr({"limits": {HP2: "10Mi"}, "requests": {"cpu": "1", HP2: "10Mi"}},
            containers=[ctr(req={"memory": "4Mi", HP1G: "1Gi"}, lim={HP1G: "1Gi"})]),
        {"cpu": "1", "memory": "4Mi", HP2: "10Mi", HP1G: "1Gi"}, None),
    # The next five run with InPlacePodLevelResourcesVerticalScaling (alpha, off for quota): pod-level status is
    # ignored and the pod-level spec plus overhead gives the same 1100m / 110Mi Go expects.
    "TestPodLevelResourceRequests/status resources include overhead for all pod-level resources": (
        plr({"requests": {"cpu": "1", "memory": "100Mi"}}, {"cpu": "100m", "memory": "10Mi"},
            status={"resources": {"requests": {"cpu": "1100m", "memory": "110Mi"}},
                    "allocatedResources": {"cpu": "1100m", "memory": "110Mi"}}),
        {"cpu": "1100m", "memory": "110Mi"}, None),
    "TestPodLevelResourceRequests/status resources include overhead for only one pod-level resource": (
        plr({"requests": {"cpu": "1", "memory": "100Mi"}}, {"cpu": "100m", "memory": "10Mi"},
            status={"resources": {"requests": {"cpu": "1100m"}}, "allocatedResources": {"cpu": "1100m"}}),
        {"cpu": "1100m", "memory": "110Mi"}, None),
    "TestPodLevelResourceRequests/status resources without overhead still receive overhead": (
        plr({"requests": {"cpu": "1", "memory": "100Mi"}}, {"cpu": "100m", "memory": "10Mi"},
            status={"resources": {"requests": {"cpu": "1", "memory": "100Mi"}},
                    "allocatedResources": {"cpu": "1", "memory": "100Mi"}}),
        {"cpu": "1100m", "memory": "110Mi"}, None),
    "TestPodLevelResourceRequests/allocated resources include overhead when status requests do not": (
        plr({"requests": {"cpu": "1", "memory": "100Mi"}}, {"cpu": "100m", "memory": "10Mi"},
            status={"resources": {"requests": {"cpu": "1", "memory": "100Mi"}},
                    "allocatedResources": {"cpu": "1100m", "memory": "110Mi"}}),
        {"cpu": "1100m", "memory": "110Mi"}, None),
    "TestPodLevelResourceRequests/allocated resources include stale overhead during resize": (
        plr({"requests": {"cpu": "1", "memory": "100Mi"}}, {"cpu": "100m", "memory": "10Mi"},
            status={"resources": {"requests": {"cpu": "1", "memory": "100Mi"}},
                    "allocatedResources": {"cpu": "1050m", "memory": "105Mi"}}),
        {"cpu": "1100m", "memory": "110Mi"}, None),
}


def claiming(c: dict[str, Any], *names: str) -> dict[str, Any]:
    c["resources"]["claims"] = [{"name": n} for n in names]
    return c


def na_claim(claim: str, containers: list[str], mapping: R | None = None,
             overhead: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A NodeAllocatableResourceClaimStatus; overhead items are {name, perPod?, perContainer?}."""
    body: dict[str, Any] = {"resourceClaimName": claim, "containers": containers}
    if mapping:
        body["mapping"] = [{"name": k, "quantity": v} for k, v in mapping.items()]
    if overhead:
        body["overhead"] = overhead
    return body


def dra_pod(containers: list[dict[str, Any]], claims: list[dict[str, Any]], refs: R | None = None,
            init: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    """A pod with spec.resourceClaims (`refs`: name -> resourceClaimName) and node-allocatable claim statuses."""
    status = dict(kw.pop("status", None) or {})
    status["nodeAllocatableResourceClaimStatuses"] = claims
    body = mk(containers, init, status=status, **kw)
    if refs:
        body["spec"]["resourceClaims"] = [{"name": k, "resourceClaimName": v} for k, v in refs.items()]
    return body


MEM_PER_CONTAINER_1GI = [{"name": "memory", "perContainer": "1Gi"}]
# TestPodRequestsAndLimitsWithDRA runs with UseDRANodeAllocatableResourceClaimStatus (DRANodeAllocatableResources,
# alpha): the quota evaluator does not set it, so node-allocatable claim statuses add nothing; the pod-level and
# container status parts still apply as the quota options say.
REQUESTS_AND_LIMITS.update({
    "TestPodRequestsAndLimitsWithDRA/No claims": (
        dra_pod([ctr("c1", {"cpu": "100m", "memory": "1Gi"}, {"cpu": "100m", "memory": "1Gi"})], []),
        {"cpu": "100m", "memory": "1Gi"}, {"cpu": "100m", "memory": "1Gi"}),
    "TestPodRequestsAndLimitsWithDRA/Single claim on one container": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m", "memory": "1Gi", HP1G: "2"},
                              {"cpu": "100m", "memory": "1Gi", HP1G: "2"}), "claim-1")],
                [na_claim("node-allocatable-claim-1", ["c1"], {"cpu": "50m", HP1G: "1"})],
                {"claim-1": "node-allocatable-claim-1"}),
        # Go (DRA status): requests and limits cpu 150m memory 1Gi hugepages-1Gi 3
        {"cpu": "100m", "memory": "1Gi", HP1G: "2"}, {"cpu": "100m", "memory": "1Gi", HP1G: "2"}),
    "TestPodRequestsAndLimitsWithDRA/Multiple claims on one container": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m", "memory": "1Gi"}), "claim-1", "claim-2")],
                [na_claim("node-allocatable-claim-1", ["c1"], {"cpu": "50m"}),
                 na_claim("node-allocatable-claim-2", ["c1"], {"cpu": "25m", "memory": "512Mi"})],
                {"claim-1": "node-allocatable-claim-1", "claim-2": "node-allocatable-claim-2"}),
        {"cpu": "100m", "memory": "1Gi"}, None),  # Go (DRA status): cpu 175m memory 1.5Gi
    "TestPodRequestsAndLimitsWithDRA/Same claim referenced in multiple containers": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m"}, {"cpu": "100m"}), "claim-1"),
                 claiming(ctr("c2", {"cpu": "200m"}, {"cpu": "200m"}), "claim-1")],
                [na_claim("node-allocatable-claim-1", ["c1", "c2"], {"cpu": "50m"})],
                {"claim-1": "node-allocatable-claim-1"}),
        {"cpu": "300m"}, {"cpu": "300m"}),  # Go (DRA status): 350m and 350m
    "TestPodRequestsAndLimitsWithDRA/Different claims on multiple containers": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m", HP1G: "1"}), "claim-1"),
                 claiming(ctr("c2", {"cpu": "200m", "memory": "1Gi", HP1G: "2"}), "claim-2")],
                [na_claim("node-allocatable-claim-1", ["c1"], {"cpu": "50m", HP1G: "1"}),
                 na_claim("node-allocatable-claim-2", ["c2"], {"cpu": "25m", "memory": "512Mi", HP1G: "2"})],
                {"claim-1": "node-allocatable-claim-1", "claim-2": "node-allocatable-claim-2"}),
        {"cpu": "300m", "memory": "1Gi", HP1G: "3"}, None),  # Go (DRA status): 375m, 1.5Gi, 6
    "TestPodRequestsAndLimitsWithDRA/Claim on init container": (
        dra_pod([ctr("c1", {"cpu": "50m"})], [na_claim("node-allocatable-claim", ["ic1"], {"cpu": "25m"})],
                {"claim-1": "node-allocatable-claim"}, init=[claiming(ctr("ic1", {"cpu": "100m"}), "claim-1")]),
        {"cpu": "100m"}, None),  # Go (DRA status): 125m
    "TestPodRequestsAndLimitsWithDRA/UseDRANodeAllocatableResourceClaimStatus flag disabled": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m"}, {"cpu": "100m"}), "claim-1")],
                [na_claim("node-allocatable-claim", ["c1"], {"cpu": "50m"})], {"claim-1": "node-allocatable-claim"}),
        {"cpu": "100m"}, {"cpu": "100m"}),
    "TestPodRequestsAndLimitsWithDRA/Pod Level Resources overrides the claim request/limit": (
        dra_pod([ctr("c1", {"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})],
                [na_claim("node-allocatable-claim", ["c1"], {"cpu": "3"})],
                resources={"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}),
        {"cpu": "2", "memory": "1Gi"}, {"cpu": "2", "memory": "1Gi"}),
    "TestPodRequestsAndLimitsWithDRA/Pod with DRA claim specifying Overhead mapping": (
        dra_pod([ctr("c1", {"cpu": "100m", "memory": "1Gi"}, {"memory": "1Gi"}),
                 ctr("c2", {"cpu": "100m", "memory": "1Gi"}, {"memory": "1Gi"})],
                [na_claim("node-allocatable-claim", ["c1", "c2"],
                          overhead=[{"name": "memory", "perPod": "1Gi", "perContainer": "500Mi"}])]),
        # Go (DRA status): requests cpu 200m memory 4072Mi, limits memory 4072Mi
        {"cpu": "200m", "memory": "2Gi"}, {"memory": "2Gi"}),
    "TestPodRequestsAndLimitsWithDRA/Pod with DRA claim specifying both Mapping and Overhead mapping": (
        dra_pod([claiming(ctr("c1", {"memory": "1Gi"}, {"memory": "1Gi"}), "claim-1"),
                 claiming(ctr("c2", {"memory": "1Gi"}, {"memory": "1Gi"}), "claim-1")],
                [na_claim("node-allocatable-claim-1", ["c1", "c2"], {"memory": "2Gi"},
                          [{"name": "memory", "perPod": "1Gi", "perContainer": "500Mi"}])],
                {"claim-1": "node-allocatable-claim-1"}),
        {"memory": "2Gi"}, {"memory": "2Gi"}),  # Go (DRA status): 6120Mi and 6120Mi
    "TestPodRequestsAndLimitsWithDRA/Pod with DRA claim specifying Overhead mapping, PerPod only": (
        dra_pod([ctr("c1", {"memory": "1Gi"}, {"memory": "1Gi"})],
                [na_claim("node-allocatable-claim", ["c1"], overhead=[{"name": "memory", "perPod": "1Gi"}])]),
        {"memory": "1Gi"}, {"memory": "1Gi"}),  # Go (DRA status): 2Gi and 2Gi
    "TestPodRequestsAndLimitsWithDRA/Pod with DRA claim specifying Overhead mapping, PerContainer only": (
        dra_pod([ctr("c1", {"memory": "1Gi"}, {"memory": "1Gi"})],
                [na_claim("node-allocatable-claim", ["c1"], overhead=[{"name": "memory", "perContainer": "500Mi"}])]),
        {"memory": "1Gi"}, {"memory": "1Gi"}),  # Go (DRA status): 1524Mi and 1524Mi
    "TestPodRequestsAndLimitsWithDRA/Pod with unreferenced DRA claim specifying Mapping": (
        dra_pod([ctr("c1", {"memory": "1Gi"}, {"memory": "1Gi"})],
                [na_claim("unref-direct-claim", [], {"memory": "2Gi"})]),
        {"memory": "1Gi"}, {"memory": "1Gi"}),  # Go (DRA status): 3Gi and 3Gi
    "TestPodRequestsAndLimitsWithDRA/Pod with unreferenced DRA claim specifying Overhead mapping": (
        dra_pod([ctr("c1", {"memory": "1Gi"}, {"memory": "1Gi"})],
                [na_claim("unref-overhead-claim", [],
                          overhead=[{"name": "memory", "perPod": "1Gi", "perContainer": "500Mi"}])]),
        {"memory": "1Gi"}, {"memory": "1Gi"}),  # Go (DRA status): 2Gi and 2Gi
    "TestPodRequestsAndLimitsWithDRA/Pod with unreferenced DRA claim specifying Overhead mapping, PerContainer only": (
        dra_pod([ctr("c1", {"memory": "1Gi"}, {"memory": "1Gi"})],
                [na_claim("unref-overhead-percontainer-claim", [],
                          overhead=[{"name": "memory", "perContainer": "500Mi"}])]),
        {"memory": "1Gi"}, {"memory": "1Gi"}),
    "TestPodRequestsAndLimitsWithDRA/shared DRA claim + memory resize (spec != status) + UseStatusResources": (
        dra_pod([claiming(ctr("c1", {"memory": "1Gi"}), "shared-mem-claim-ref"),
                 claiming(ctr("c2", {"memory": "2Gi"}), "shared-mem-claim-ref")],
                [na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-mem-claim-ref": "shared-mem-claim"},
                statuses=[cstatus("c1", req={"memory": "2Gi"}, alloc={"memory": "1Gi"}),
                          cstatus("c2", req={"memory": "2Gi"}, alloc={"memory": "2Gi"})],
                status={"resources": {"requests": {"memory": "6Gi"}}, "allocatedResources": {"memory": "5Gi"}}),
        # max(spec 1Gi+2Gi, actuated 2Gi+2Gi, allocated 1Gi+2Gi) = 4Gi.
        # Go (DRA status, pod-level status): memory 6Gi
        {"memory": "4Gi"}, None),
    "TestPodRequestsAndLimitsWithDRA/Pod Level Resources for CPU + shared DRA claims + UseStatusResources": (
        dra_pod([claiming(ctr("c1", {"memory": "1Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref"),
                 claiming(ctr("c2", {"memory": "2Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref")],
                [na_claim("shared-cpu-claim", ["c1", "c2"], {"cpu": "1"}),
                 na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-cpu-claim-ref": "shared-cpu-claim", "shared-mem-claim-ref": "shared-mem-claim"},
                resources={"requests": {"cpu": "3"}},
                statuses=[cstatus("c1", req={"memory": "1Gi"}, alloc={"memory": "1Gi"}),
                          cstatus("c2", req={"memory": "2Gi"}, alloc={"memory": "2Gi"})],
                status={"resources": {"requests": {"cpu": "3", "memory": "5Gi"}},
                        "allocatedResources": {"cpu": "3", "memory": "5Gi"}}),
        {"cpu": "3", "memory": "3Gi"}, None),  # Go (DRA status, pod-level status): cpu 3 memory 5Gi
    "TestPodRequestsAndLimitsWithDRA/Pod Level Resources + shared DRA claim during resize (spec != status) + UseStatusResources": (  # noqa: E501
        dra_pod([claiming(ctr("c1", {"memory": "1Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref"),
                 claiming(ctr("c2", {"memory": "2Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref")],
                [na_claim("shared-cpu-claim", ["c1", "c2"], {"cpu": "1"}),
                 na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-cpu-claim-ref": "shared-cpu-claim", "shared-mem-claim-ref": "shared-mem-claim"},
                resources={"requests": {"cpu": "4"}},
                statuses=[cstatus("c1", req={"memory": "1Gi"}, alloc={"memory": "1Gi"}),
                          cstatus("c2", req={"memory": "2Gi"}, alloc={"memory": "2Gi"})],
                status={"resources": {"requests": {"cpu": "3", "memory": "5Gi"}},
                        "allocatedResources": {"cpu": "3", "memory": "5Gi"}}),
        {"cpu": "4", "memory": "3Gi"}, None),  # Go (DRA status, pod-level status): cpu 4 memory 5Gi
    "TestPodRequestsAndLimitsWithDRA/Pod Level Resources (CPU limits only) with shared DRA claim and UseStatusResources": (  # noqa: E501
        dra_pod([claiming(ctr("c1", lim={"memory": "1Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref"),
                 claiming(ctr("c2", lim={"memory": "2Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref")],
                [na_claim("shared-cpu-claim", ["c1", "c2"], {"cpu": "1"}),
                 na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-cpu-claim-ref": "shared-cpu-claim", "shared-mem-claim-ref": "shared-mem-claim"},
                resources={"limits": {"cpu": "3"}},
                statuses=[cstatus("c1", lim={"memory": "1Gi"}), cstatus("c2", lim={"memory": "2Gi"})],
                status={"resources": {"limits": {"cpu": "3", "memory": "5Gi"}}}),
        None, {"cpu": "3", "memory": "3Gi"}),  # Go (DRA status, pod-level status): cpu 3 memory 5Gi
    "TestPodRequestsAndLimitsWithDRA/Pod Level Resources (CPU limits only) with shared DRA claim during resize and UseStatusResources": (  # noqa: E501
        dra_pod([claiming(ctr("c1", lim={"memory": "1Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref"),
                 claiming(ctr("c2", lim={"memory": "2Gi"}), "shared-cpu-claim-ref", "shared-mem-claim-ref")],
                [na_claim("shared-cpu-claim", ["c1", "c2"], {"cpu": "1"}),
                 na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-cpu-claim-ref": "shared-cpu-claim", "shared-mem-claim-ref": "shared-mem-claim"},
                resources={"limits": {"cpu": "4"}},
                statuses=[cstatus("c1", lim={"memory": "1Gi"}), cstatus("c2", lim={"memory": "2Gi"})],
                status={"resources": {"limits": {"cpu": "3", "memory": "5Gi"}}}),
        None, {"cpu": "4", "memory": "3Gi"}),  # Go (DRA status, pod-level status): cpu 4 memory 5Gi
    "TestPodRequestsAndLimitsWithDRA/Container Level Resources with shared DRA claim during memory limit resize and UseStatusResources": (  # noqa: E501
        dra_pod([claiming(ctr("c1", lim={"memory": "4Gi"}), "shared-mem-claim-ref"),
                 claiming(ctr("c2", lim={"memory": "2Gi"}), "shared-mem-claim-ref")],
                [na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-mem-claim-ref": "shared-mem-claim"},
                statuses=[cstatus("c1", lim={"memory": "2Gi"}), cstatus("c2", lim={"memory": "2Gi"})]),
        None, {"memory": "6Gi"}),  # Go (DRA status): 8Gi = max(spec 4Gi+2Gi, actuated 2Gi+2Gi) + 2 × 1Gi DRA
    "TestPodRequestsAndLimitsWithDRA/Container Level Resources + shared DRA claim during memory resize + UseStatusResources": (  # noqa: E501
        dra_pod([claiming(ctr("c1", {"memory": "4Gi"}), "shared-mem-claim-ref"),
                 claiming(ctr("c2", {"memory": "2Gi"}), "shared-mem-claim-ref")],
                [na_claim("shared-mem-claim", ["c1", "c2"], overhead=MEM_PER_CONTAINER_1GI)],
                {"shared-mem-claim-ref": "shared-mem-claim"},
                statuses=[cstatus("c1", req={"memory": "2Gi"}, alloc={"memory": "4Gi"}),
                          cstatus("c2", req={"memory": "2Gi"}, alloc={"memory": "2Gi"})]),
        {"memory": "6Gi"}, None),  # Go (DRA status): 8Gi = 6Gi + 2 × 1Gi DRA
    "TestPodRequestsAndLimitsWithDRA/DRA cpu/memory not added to limits when container limits are omitted": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m", "memory": "1Gi"}), "claim-1")],
                [na_claim("node-allocatable-claim-1", ["c1"], {"cpu": "50m", "memory": "512Mi"})],
                {"claim-1": "node-allocatable-claim-1"}),
        {"cpu": "100m", "memory": "1Gi"}, {}),  # Go (DRA status): requests cpu 150m memory 1536Mi, limits {}
    "TestPodRequestsAndLimitsWithDRA/DRA hugepages added to limits even when container limits are omitted": (
        dra_pod([claiming(ctr("c1", {"cpu": "100m"}), "claim-1")],
                [na_claim("node-allocatable-claim-1", ["c1"], {HP1G: "1"})], {"claim-1": "node-allocatable-claim-1"}),
        {"cpu": "100m"}, {}),  # Go (DRA status): requests cpu 100m hugepages-1Gi 1, limits hugepages-1Gi 1
})

# TestAggregateContainerRequestsAndLimits: these pods set no overhead and no spec.resources, so PodRequests /
# PodLimits equal AggregateContainerRequests / AggregateContainerLimits.
REQUESTS_AND_LIMITS.update({
    "TestAggregateContainerRequestsAndLimits/one container with limits": (mk([ctr(lim={"cpu": "9"})]), {}, {"cpu": "9"}),  # noqa: E501
    "TestAggregateContainerRequestsAndLimits/two containers with limits": (
        mk([ctr(lim={"cpu": "9"}), ctr(lim={"cpu": "9"})]), {}, {"cpu": "18"}),
    "TestAggregateContainerRequestsAndLimits/one container with requests": (mk([ctr(req={"cpu": "9"})]), {"cpu": "9"}, {}),  # noqa: E501
    "TestAggregateContainerRequestsAndLimits/two containers with requests": (
        mk([ctr(req={"cpu": "9"}), ctr(req={"cpu": "9"})]), {"cpu": "18"}, {}),
    "TestAggregateContainerRequestsAndLimits/regular and init containers with requests": (
        mk([ctr(req={"cpu": "9"})], [ctr(req={"cpu": "9"})]), {"cpu": "9"}, {}),
    "TestAggregateContainerRequestsAndLimits/regular, init and sidecar containers with requests": (
        mk([ctr(req={"cpu": "9"})], [ctr(req={"cpu": "8"}, sidecar=True), ctr(req={"cpu": "6"})]), {"cpu": "17"}, {}),
    "TestAggregateContainerRequestsAndLimits/regular and init containers with limits": (
        mk([ctr(lim={"cpu": "9"})], [ctr(lim={"cpu": "9"})]), {}, {"cpu": "9"}),
    "TestAggregateContainerRequestsAndLimits/regular, init and sidecar containers with limits": (
        mk([ctr(lim={"cpu": "9"})], [ctr(lim={"cpu": "8"}, sidecar=True), ctr(lim={"cpu": "6"})]), {}, {"cpu": "17"}),
    "TestAggregateContainerRequestsAndLimits/regularcontainers with empty requests, but status with non-empty requests": (  # noqa: E501
        mk([ctr("container-1")], statuses=[cstatus("container-1", req={"cpu": "2"})]), {"cpu": "2"}, {}),
    "TestAggregateContainerRequestsAndLimits/always-restart init containers with empty requests, but status with non-empty requests": (  # noqa: E501
        mk(init=[ctr("container-1", sidecar=True)], init_statuses=[cstatus("container-1", req={"cpu": "2"})]),
        {"cpu": "2"}, {}),
    "TestAggregateContainerRequestsAndLimits/aggregate container request resolves max of sums instead of sum of maxes": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}), ctr("c2", {"cpu": "2"})],
           statuses=[cstatus("c1", alloc={"cpu": "2"}), cstatus("c2", alloc={"cpu": "1"})]),
        {"cpu": "3"}, {}),
    "TestAggregateContainerRequestsAndLimits/aggregate container limit resolves max of sums instead of sum of maxes": (
        mk([ctr("c1", lim={"cpu": "1"}), ctr("c2", lim={"cpu": "2"})],
           statuses=[cstatus("c1", lim={"cpu": "2"}), cstatus("c2", lim={"cpu": "1"})]),
        {}, {"cpu": "3"}),
    "TestAggregateContainerRequestsAndLimits/aggregate container request/limit resolves directly from pod status when PLR vertical scaling enabled": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}, {"cpu": "2"})],
           status={"allocatedResources": {"cpu": "4"},
                   "resources": {"requests": {"cpu": "3"}, "limits": {"cpu": "5"}}}),
        {"cpu": "1"}, {"cpu": "2"}),  # Go (InPlacePodLevelResourcesVerticalScaling): requests cpu 4, limits cpu 5
    "TestAggregateContainerRequestsAndLimits/falls back to container status aggregation when PLR vertical scaling enabled but podAllocatedResources is nil": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}, {"cpu": "2"})],
           statuses=[cstatus("c1", req={"cpu": "5"}, lim={"cpu": "7"}, alloc={"cpu": "6"})],
           status={"resources": {"requests": {"cpu": "3"}, "limits": {"cpu": "7"}}}),
        {"cpu": "6"}, {"cpu": "7"}),
    "TestAggregateContainerRequestsAndLimits/falls back to container status aggregation when PLR vertical scaling enabled but podResources is nil": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}, {"cpu": "2"})],
           statuses=[cstatus("c1", req={"cpu": "5"}, lim={"cpu": "8"}, alloc={"cpu": "6"})],
           status={"allocatedResources": {"cpu": "6"}}),
        {"cpu": "6"}, {"cpu": "8"}),
})


def shared_claim_pod(key: str, c1: str, statuses: bool) -> dict[str, Any]:
    """The pod of TestPodResource{Limits,Requests}WithSharedDRAClaims (`key` is limits or requests)."""
    one = {key: {"memory": c1}}
    two = {key: {"memory": "2Gi"}}
    body = dra_pod([ctr("c1", one.get("requests"), one.get("limits")),
                    ctr("c2", two.get("requests"), two.get("limits"))],
                   [na_claim("shared-claim", ["c1", "c2"], overhead=[{"name": "memory", "perContainer": "3Gi"}])],
                   statuses=[cstatus("c1", lim={"memory": "5Gi"}), cstatus("c2", lim={"memory": "5Gi"})]
                   if statuses else None)
    if key == "requests":
        for c in body["spec"]["containers"]:
            claiming(c, "shared-claim-ref")
        body["spec"]["resourceClaims"] = [{"name": "shared-claim-ref", "resourceClaimName": "shared-claim"}]
    return body


def with_status(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    body["status"].update(status)
    return body


# TestPodResource{Limits,Requests}WithSharedDRAClaims: three sub-checks each, with DRA status (and the later two with
# pod-level status); both alpha, so only the container spec and container statuses count for quota.
REQUESTS_AND_LIMITS.update({
    "TestPodResourceLimitsWithSharedDRAClaims/without UseStatusResources": (
        shared_claim_pod("limits", "2Gi", True), None, {"memory": "10Gi"}),  # max(spec 4Gi, actuated 5Gi+5Gi)
    "TestPodResourceLimitsWithSharedDRAClaims/with UseStatusResources": (
        with_status(shared_claim_pod("limits", "2Gi", True), resources={"limits": {"memory": "10Gi"}}),
        None, {"memory": "10Gi"}),
    "TestPodResourceLimitsWithSharedDRAClaims/concurrent resize": (
        with_status(shared_claim_pod("limits", "3Gi", True), resources={"limits": {"memory": "10Gi"}}),
        None, {"memory": "10Gi"}),  # Go (DRA status): 11Gi = spec 5Gi + 6Gi DRA
    "TestPodResourceRequestsWithSharedDRAClaims/without UseStatusResources": (
        shared_claim_pod("requests", "2Gi", False), {"memory": "4Gi"}, None),  # Go (DRA status): 10Gi
    "TestPodResourceRequestsWithSharedDRAClaims/with UseStatusResources": (
        with_status(shared_claim_pod("requests", "2Gi", False), resources={"requests": {"memory": "10Gi"}},
                    allocatedResources={"memory": "10Gi"}),
        {"memory": "4Gi"}, None),  # Go (DRA status, pod-level status): 10Gi
    "TestPodResourceRequestsWithSharedDRAClaims/concurrent resize": (
        with_status(shared_claim_pod("requests", "3Gi", False), resources={"requests": {"memory": "10Gi"}},
                    allocatedResources={"memory": "10Gi"}),
        {"memory": "5Gi"}, None),  # Go (DRA status, pod-level status): 11Gi
})

# TestPodRequestsAndLimitsVerticalScalingWrappers
REQUESTS_AND_LIMITS.update({
    "TestPodRequestsAndLimitsVerticalScalingWrappers/pod level requests/limits with PLR vertical scaling enabled and status populated": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}, {"cpu": "2"})], resources={"requests": {"cpu": "2"}, "limits": {"cpu": "4"}},
           status={"allocatedResources": {"cpu": "3"},
                   "resources": {"requests": {"cpu": "3.5"}, "limits": {"cpu": "5"}}}),
        {"cpu": "2"}, {"cpu": "4"}),  # Go (InPlacePodLevelResourcesVerticalScaling): requests 3.5, limits 5
    "TestPodRequestsAndLimitsVerticalScalingWrappers/pod level requests/limits with PLR vertical scaling enabled, status.resources nil, status.allocatedResources set": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}, {"cpu": "2"})], resources={"requests": {"cpu": "2"}, "limits": {"cpu": "4"}},
           status={"allocatedResources": {"cpu": "3"}}),
        {"cpu": "2"}, {"cpu": "4"}),  # Go (InPlacePodLevelResourcesVerticalScaling): requests 3, limits 4
    "TestPodRequestsAndLimitsVerticalScalingWrappers/pod level requests/limits with PLR vertical scaling enabled and infeasible resize": (  # noqa: E501
        mk([ctr("c1", {"cpu": "1"}, {"cpu": "2"})], resources={"requests": {"cpu": "10"}, "limits": {"cpu": "20"}},
           conditions=INFEASIBLE,
           status={"allocatedResources": {"cpu": "3"},
                   "resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "8"}}}),
        {"cpu": "10"}, {"cpu": "20"}),  # Go (InPlacePodLevelResourcesVerticalScaling): requests 4, limits 8
    "TestPodRequestsAndLimitsVerticalScalingWrappers/container limits aggregation with infeasible resize": (
        mk([ctr("c1", lim={"cpu": "10"})], statuses=[cstatus("c1", lim={"cpu": "6"})], conditions=INFEASIBLE),
        {}, {"cpu": "6"}),
    "TestPodRequestsAndLimitsVerticalScalingWrappers/non missing container requests applied to init container": (
        # Go (NonMissingContainerRequests memory 100Mi): + memory 100Mi
        mk(init=[ctr("i1", {"cpu": "1"})]), {"cpu": "1"}, {}),
    "TestPodRequestsAndLimitsVerticalScalingWrappers/non missing container requests applied to regular container": (
        mk([ctr("c1", {"cpu": "1"})]), {"cpu": "1"}, {}),  # Go (NonMissingContainerRequests memory 100Mi): + memory
    "TestPodRequestsAndLimitsVerticalScalingWrappers/pod level requests/limits with PLR vertical scaling enabled, overhead set, and status populated": (  # noqa: E501
        mk(overhead={"cpu": "1", "memory": "500Mi"},
           resources={"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}},
           status={"allocatedResources": {"cpu": "3", "memory": "2.5Gi"},
                   "resources": {"requests": {"cpu": "3", "memory": "2.5Gi"},
                                 "limits": {"cpu": "5", "memory": "4.5Gi"}}}),
        # spec + overhead: 2Gi + 500Mi = 2548Mi, 4Gi + 500Mi = 4596Mi.
        # Go (InPlacePodLevelResourcesVerticalScaling): requests cpu 3 memory 2.5Gi, limits cpu 5 memory 4.5Gi
        {"cpu": "3", "memory": "2548Mi"}, {"cpu": "5", "memory": "4596Mi"}),
})


def canonical(resources: R) -> R:
    return {k: str(parse_quantity(v)) for k, v in resources.items()}


@pytest.mark.parametrize(("body", "requests", "limits"), list(REQUESTS_AND_LIMITS.values()),
                         ids=list(REQUESTS_AND_LIMITS))
def test_pod_requests_and_limits(body: dict[str, Any], requests: R | None, limits: R | None) -> None:
    if requests is not None:
        got = pod_requests(body, use_status=True)  # the quota evaluator's options, as the table records them
        assert {k: str(v) for k, v in got.items()} == canonical(requests)
        assert all(got[k] == parse_quantity(v) for k, v in requests.items())
    if limits is not None:
        got = pod_limits(body, use_status=True)
        assert {k: str(v) for k, v in got.items()} == canonical(limits)
        assert all(got[k] == parse_quantity(v) for k, v in limits.items())


def test_extended_resource_names() -> None:
    """Ours, after helper.IsExtendedResourceName: any name holding 'kubernetes.io/' is native, not extended."""
    body = pod([container({"cpu": "1", "example.com/gpu": "2", "notkubernetes.io/x": "1", "foo.kubernetes.io/y": "1",
                           "deviceclass.resource.kubernetes.io/gpu": "1", "hugepages-2Mi": "2Mi"})])
    usage = pod_usage(body, now=NOW)
    assert "requests.example.com/gpu" in usage
    assert "requests.deviceclass.resource.kubernetes.io/gpu" in usage
    assert "requests.notkubernetes.io/x" not in usage and "requests.foo.kubernetes.io/y" not in usage
    assert usage["hugepages-2Mi"] == usage["requests.hugepages-2Mi"] == parse_quantity("2Mi")


# PodRequests / PodLimits with their default options (PodResourcesOptions{}): the spec alone, never the status.
# helpers_test.go cases run without UseStatusResources, with Go's own expectation.
DEFAULT_OPTIONS: dict[str, tuple[dict[str, Any], R | None, R | None]] = {
    "TestPodResourceRequests/resized, infeasible, but don't use status": (
        mk([ctr("container-1", {"cpu": "4"})], statuses=[cstatus("container-1", req={"cpu": "2"})],
           conditions=INFEASIBLE, populate=True),
        {"cpu": "4"}, None),
    "TestPodResourceRequests/resized, restartable init container, infeasible, but don't use status": (
        mk(init=[ctr("restartable-init-1", {"cpu": "4"}, sidecar=True)],
           init_statuses=[cstatus("restartable-init-1", req={"cpu": "2"})], conditions=INFEASIBLE, populate=True),
        {"cpu": "4"}, None),
    "TestPodResourceLimits/pod scaled down, don't use status": (
        mk([ctr("container-1", lim={"memory": "1Gi"})], statuses=[cstatus("container-1", lim={"memory": "2Gi"})],
           populate=True),
        None, {"memory": "1Gi"}),
    "TestAggregateContainerRequestsAndLimits/regularcontainers with empty requests, but status with non-empty requests": (  # noqa: E501
        mk([ctr("container-1")], statuses=[cstatus("container-1", req={"cpu": "2"})]), {}, {}),
}


@pytest.mark.parametrize(("body", "requests", "limits"), list(DEFAULT_OPTIONS.values()), ids=list(DEFAULT_OPTIONS))
def test_pod_requests_and_limits_default_options_read_the_spec_only(
    body: dict[str, Any], requests: R | None, limits: R | None
) -> None:
    if requests is not None:
        assert {k: str(v) for k, v in pod_requests(body).items()} == canonical(requests)
    if limits is not None:
        assert {k: str(v) for k, v in pod_limits(body).items()} == canonical(limits)


def test_container_statuses_match_by_name_also_when_names_are_empty() -> None:
    """findContainerStatus compares Go strings: a container with no name finds the status with no name."""
    body = {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]},
            "status": {"containerStatuses": [{"resources": {"requests": {"cpu": "3"}}}]}}
    assert pod_usage(body, now=NOW)["requests.cpu"] == parse_quantity("3")
    assert pod_requests(body)["cpu"] == parse_quantity("1")  # default options: the spec alone
    named = {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]},
             "status": {"containerStatuses": [{"resources": {"requests": {"cpu": "3"}}}]}}
    assert pod_usage(named, now=NOW)["requests.cpu"] == parse_quantity("1")  # "a" != ""


def _c(name: str | None, req: R | None = None, lim: R | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resources": {}}
    if name is not None:
        body["name"] = name
    if req is not None:
        body["resources"]["requests"] = req
    if lim is not None:
        body["resources"]["limits"] = lim
    return body


CPU_ONLY = ({"cpu": "1m"}, {"cpu": "2m"})

# pods_test.go TestPodConstraintsFunc, and cases in its style for what the Go code does beyond the table.
CONSTRAINTS: dict[str, tuple[dict[str, Any], list[str], str | None]] = {
    "init container resource missing": (
        {"spec": {"initContainers": [_c("dummy", *CPU_ONLY)]}}, ["memory"], "must specify memory for: dummy"),
    "multiple init container resource missing": (
        {"spec": {"initContainers": [_c("foo", *CPU_ONLY), _c("bar", *CPU_ONLY)]}}, ["memory"],
        "must specify memory for: bar,foo"),
    "container resource missing": (
        {"spec": {"containers": [_c("dummy", *CPU_ONLY)]}}, ["memory"], "must specify memory for: dummy"),
    "multiple container resource missing": (
        {"spec": {"containers": [_c("foo", *CPU_ONLY), _c("bar", *CPU_ONLY)]}}, ["memory"],
        "must specify memory for: bar,foo"),
    "container resource missing multiple": (
        {"spec": {"containers": [_c("foo"), _c("bar")]}}, ["memory", "cpu"],
        "must specify cpu for: bar,foo; memory for: bar,foo"),
    "pod-level resource set, container-level required resources missing": (
        {"spec": {"resources": {"requests": {"cpu": "1m"}}, "containers": [_c("foo"), _c("bar")]}},
        ["memory", "cpu"], None),
    # beyond the table: what enforcePodContainerConstraints and the validation set do
    "resources outside the validation set are never required": (
        {"spec": {"containers": [_c("foo")]}}, ["requests.nvidia.com/gpu", "ephemeral-storage", "pods"], None),
    "limits.cpu needs a cpu limit, not a request": (
        {"spec": {"containers": [_c("a", {"cpu": "1"})]}}, ["limits.cpu", "requests.cpu"],
        "must specify limits.cpu for: a"),
    "a zero counts as specified": (
        {"spec": {"containers": [_c("a", {"cpu": "0", "memory": "0"}, {"cpu": "0", "memory": "0"})]}},
        ["cpu", "memory", "limits.cpu", "limits.memory"], None),
    "containers and init containers together, each name once, resources sorted": (
        {"spec": {"containers": [_c("web", {"cpu": "1"}), _c("web", {"cpu": "1"})],
                  "initContainers": [_c("init", {"memory": "1Gi"})]}},
        ["requests.memory", "limits.cpu", "requests.cpu"],
        "must specify limits.cpu for: init,web; requests.cpu for: init; requests.memory for: web"),
    "a container with no name is the empty name": (
        {"spec": {"containers": [_c(None), _c("b")]}}, ["cpu"], "must specify cpu for: ,b"),
    "pod-level limits alone also skip the check": (
        {"spec": {"resources": {"limits": {"memory": "1Gi"}}, "containers": [_c("foo")]}}, ["cpu"], None),
    "pod-level resources of an unsupported name do not": (
        {"spec": {"resources": {"requests": {"example.com/x": "1"}}, "containers": [_c("foo")]}}, ["cpu"],
        "must specify cpu for: foo"),
    "nothing required": ({"spec": {"containers": [_c("foo")]}}, [], None),
}


@pytest.mark.parametrize(("body", "required", "error"), list(CONSTRAINTS.values()), ids=list(CONSTRAINTS))
def test_pod_constraints(body: dict[str, Any], required: list[str], error: str | None) -> None:
    assert pod_constraints(body, required) == error


@pytest.mark.parametrize(("body", "field"), [
    ({"spec": {"containers": [_c("c", {"nvidia.com/gpu": "-8"})]}}, "container c resources.requests.nvidia.com/gpu"),
    ({"spec": {"containers": [_c("c", lim={"cpu": "1.5.5"})]}}, "container c resources.limits.cpu"),
    ({"spec": {"initContainers": [_c("i", {"memory": "-1Gi"})]}}, "init container i resources.requests.memory"),
    ({"spec": {"containers": [_c("c")], "overhead": {"cpu": "-1"}}}, "spec.overhead.cpu"),
    ({"spec": {"containers": [_c("c")], "resources": {"limits": {"cpu": "-2"}}}}, "spec.resources.limits.cpu"),
    ({"spec": {"containers": [{"name": "c", "resources": {"limits": "lots"}}]}}, "container c resources.limits"),
    ({"spec": {"containers": [{"name": "c", "resources": ["cpu"]}]}}, "container c resources"),
    ({"spec": {"containers": [_c("c", {"cpu": True})]}}, "container c resources.requests.cpu"),  # type: ignore[dict-item]
    ({"spec": {"containers": "web"}}, "spec.containers"),
    ({"spec": {"containers": ["web"]}}, "spec.containers[0]"),
])
def test_invalid_pods_raise_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPod) as caught:
        pod_usage(body, now=NOW)
    assert field in str(caught.value)
