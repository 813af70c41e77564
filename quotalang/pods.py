"""What Kubernetes' quota evaluator charges for one pod.

Mirrors `component-helpers/resource` PodRequests / PodLimits and the quota
`PodUsageFunc` of current Kubernetes, with InPlacePodVerticalScaling (status
resources) and PodLevelResources enabled:

- requests / limits = max(Σ app containers + Σ sidecars, each init container +
  the sidecars started before it); pod-level `spec.resources` replaces the
  container totals for cpu, memory and hugepages; overhead is added to
  requests, and to limits that are set;
- the usage map charges `pods`, `cpu`/`requests.cpu`, `limits.cpu` (same for
  memory and ephemeral-storage), `hugepages-*`/`requests.hugepages-*`,
  `requests.<extended>`, and `count/pods` always; terminal pods and pods past
  their deletion grace period charge only `count/pods`.

`pod_requests` / `pod_limits` take PodRequests / PodLimits' default options
(the spec alone); `pod_usage` takes the quota evaluator's (in-place resize
status too), as `PodUsageFunc` does.

`apply_defaults` adds what the API server would default before a pod is
stored (requests copied from limits), for pod templates seen at admission.
`pod_constraints` is the quota evaluator's `Constraints`: the text of its
"must specify" error, or None.

Reading is strict where a pod's own spec is concerned: a `resources`,
`requests` or `limits` that is not a mapping, or a quantity that is malformed
or negative, raises `InvalidPod` (an `InputError`) naming the field. The API
server rejects such pods, but a custom resource with a loose schema carries
them to the webhook, and reading them leniently would charge less than the
pods will hold (a `-8` GPU Chief "gives back" its Workers' GPUs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from quotalang.errors import InputError
from quotalang.quantity import Quantity, parse_quantity, resource_list

ResourceList = dict[str, Quantity]

_POD_LEVEL = ("cpu", "memory")
_NATIVE_WITH_REQUEST_KEYS = ("cpu", "memory", "ephemeral-storage")
_EMPTY: Mapping[str, Any] = {}

# The resources Kubernetes' quota requires every container to specify when a
# quota limits them (pods.go `validationSet`; "do not add more resources").
VALIDATION_SET: frozenset[str] = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)


class InvalidPod(InputError):
    """A pod (template) that the API server would not accept: the message names the field."""


def _is_pod_level(name: str) -> bool:
    return name in _POD_LEVEL or name.startswith("hugepages-")


IMPLICIT_EXTENDED_PREFIX = "deviceclass.resource.kubernetes.io/"

_QUALIFIED_NAME = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")


def _is_qualified_name(value: str) -> bool:
    """validation.IsQualifiedName: an optional DNS-1123 subdomain prefix, '/', a name of 63 at most."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            return False
    else:
        return False
    return 0 < len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name) is not None


@lru_cache(maxsize=1024)
def _is_extended(name: str) -> bool:
    """schedutil.IsDRAExtendedResourceName: charged as `requests.<name>`.

    IsExtendedResourceName (not native: it has a '/' and no 'kubernetes.io/'
    in it; no `requests.` prefix; `requests.<name>` is a qualified name), or
    the implicit extended resource of a DRA DeviceClass
    (`deviceclass.resource.kubernetes.io/<class>`).
    """
    if name.startswith(IMPLICIT_EXTENDED_PREFIX):
        return True
    if "/" not in name or "kubernetes.io/" in name or name.startswith("requests."):
        return False
    return _is_qualified_name("requests." + name)


def _mapping(node: Any) -> Mapping[str, Any]:
    return node if isinstance(node, Mapping) else _EMPTY


def _list(node: Any) -> list[Any]:
    return node if isinstance(node, list) else []


def _strict_mapping(node: Any, where: str) -> Mapping[str, Any]:
    """A field the pod's own spec holds: absent or null is empty; anything but a mapping is invalid."""
    if node is None:
        return _EMPTY
    if isinstance(node, Mapping):
        return node
    raise InvalidPod(f"{where} is {_short(node)}, not a mapping")


def _strict_list(node: Any, where: str) -> list[Any]:
    if node is None:
        return []
    if isinstance(node, list):
        return node
    raise InvalidPod(f"{where} is {_short(node)}, not a list")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _resources(raw: Any, where: str) -> ResourceList:
    """A ResourceList of the pod's (`where`: `container c resources.limits`); errors name `<where>.<resource>`."""
    return resource_list(_strict_mapping(raw, where), where, InvalidPod)


def _add(into: ResourceList, more: ResourceList) -> None:
    for name, value in more.items():
        have = into.get(name)
        into[name] = value if have is None else have + value


def _max_into(into: ResourceList, more: ResourceList) -> None:
    for name, value in more.items():
        have = into.get(name)
        if have is None or value > have:
            into[name] = value


def _max_of(*lists: ResourceList) -> ResourceList:
    out: ResourceList = {}
    for resources in lists:
        _max_into(out, resources)
    return out


def _spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _strict_mapping(pod.get("spec"), "spec")


def _status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(pod.get("status"))


def _go_name(node: Mapping[str, Any]) -> Any:
    """A container's or status's `name` as Go reads it: absent or null is the empty string."""
    name = node.get("name")
    return "" if name is None else name


def _container_statuses(pod: Mapping[str, Any]) -> dict[Any, Mapping[str, Any]]:
    """findContainerStatus, as a table: by name ("" when absent), app container statuses first.

    Go compares `container.Name` with each status's `Name`, both "" when
    unset, so a container without a name finds the first status without one.
    """
    status = _status(pod)
    found: dict[Any, Mapping[str, Any]] = {}
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in _list(status.get(key)):
            if isinstance(cs, Mapping):
                name = _go_name(cs)
                if isinstance(name, str):
                    found.setdefault(name, cs)
    return found


def _resize_infeasible(pod: Mapping[str, Any]) -> bool:
    """IsPodResizeInfeasible: the first PodResizePending condition has reason Infeasible."""
    for condition in _list(_status(pod).get("conditions")):
        condition = _mapping(condition)
        if condition.get("type") == "PodResizePending":
            return condition.get("reason") == "Infeasible"
    return False


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def _name(container: Mapping[str, Any], index: int, kind: str) -> str:
    name = container.get("name")
    return f"{kind} {name}" if isinstance(name, str) and name else f"{kind} #{index}"


def _containers(pod: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], bool]]:
    """(label for errors, container, is init) for every container, structure checked."""
    spec = _spec(pod)
    out = []
    for key, kind, init in (("containers", "container", False), ("initContainers", "init container", True)):
        for index, c in enumerate(_strict_list(spec.get(key), f"spec.{key}")):
            if not isinstance(c, Mapping):
                raise InvalidPod(f"spec.{key}[{index}] is {_short(c)}, not a container")
            out.append((_name(c, index, kind), c, init))
    return out


def _container_resources(c: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    return _strict_mapping(c.get("resources"), f"{where} resources")


# A getter returns one container's resource list (None: no list at all), given
# the container, its status (None when there is none) and whether the pod's
# resize is infeasible. These mirror containerSpecRequests, containerActuatedRequests,
# containerAllocatedRequests, containerSpecLimits and containerActuatedLimits.
_Getter = Callable[[Mapping[str, Any], "Mapping[str, Any] | None", bool, str], "ResourceList | None"]


def _spec_list(c: Mapping[str, Any], key: str, where: str) -> ResourceList:
    return _resources(_container_resources(c, where).get(key), f"{where} resources.{key}")


def _spec_requests(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                   where: str) -> ResourceList | None:
    return _spec_list(c, "requests", where)


def _spec_limits(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                 where: str) -> ResourceList | None:
    return _spec_list(c, "limits", where)


def _status_list(cs: Mapping[str, Any] | None, key: str) -> Any:
    """cs.Resources.<key> when cs.Resources and that list are non-nil, else None."""
    if cs is None:
        return None
    resources = cs.get("resources")
    if not isinstance(resources, Mapping):
        return None
    return resources.get(key)


def _allocated_requests(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                        where: str) -> ResourceList | None:
    if cs is not None and cs.get("allocatedResources") is not None:
        return _resources(cs["allocatedResources"], f"status of {where} allocatedResources")
    return None if infeasible else _spec_list(c, "requests", where)


def _actuated_requests(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                       where: str) -> ResourceList | None:
    actuated = _status_list(cs, "requests")
    if actuated is not None:
        return _resources(actuated, f"status of {where} resources.requests")
    if cs is not None and cs.get("allocatedResources") is not None:
        return _resources(cs["allocatedResources"], f"status of {where} allocatedResources")
    return None if infeasible else _spec_list(c, "requests", where)


def _actuated_limits(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                     where: str) -> ResourceList | None:
    actuated = _status_list(cs, "limits")
    if actuated is not None:
        return _resources(actuated, f"status of {where} resources.limits")
    return None if infeasible else _spec_list(c, "limits", where)


def _aggregate_by(pod: Mapping[str, Any], get: _Getter, statuses: dict[Any, Mapping[str, Any]] | None,
                  infeasible: bool) -> ResourceList:
    """aggregateContainerResourcesByFn: Σ app containers and sidecars, at least each init's peak."""
    total: ResourceList = {}
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for where, c, init in _containers(pod):
        cs = statuses.get(_go_name(c)) if statuses else None
        own = get(c, cs, infeasible, where) or {}
        if not init:
            _add(total, own)
            continue
        if _is_sidecar(c):
            _add(total, own)
            _add(sidecars, own)
            need = sidecars
        else:
            need = dict(own)
            _add(need, sidecars)
        _max_into(init_peak, need)
    _max_into(total, init_peak)
    return total


def _uses_status(pod: Mapping[str, Any]) -> tuple[dict[Any, Mapping[str, Any]] | None, bool]:
    """(container statuses by name, resize infeasible) — (None, False) when status changes nothing."""
    status = pod.get("status")
    if not status:
        return None, False
    statuses = _container_statuses(pod)
    infeasible = _resize_infeasible(pod)
    if not statuses and not infeasible:
        return None, False  # actuated and allocated both fall back to the spec
    return statuses, infeasible


def aggregate_container_requests(pod: Mapping[str, Any], *, use_status: bool = False) -> ResourceList:
    """AggregateContainerRequests; `use_status` is the option UseStatusResources (in-place resize)."""
    statuses, infeasible = _uses_status(pod) if use_status else (None, False)
    if statuses is None and not infeasible:
        return _aggregate_by(pod, _spec_requests, None, False)
    actuated = _aggregate_by(pod, _actuated_requests, statuses, infeasible)
    allocated = _aggregate_by(pod, _allocated_requests, statuses, infeasible)
    if infeasible:
        return _max_of(actuated, allocated)
    return _max_of(_aggregate_by(pod, _spec_requests, statuses, infeasible), actuated, allocated)


def aggregate_container_limits(pod: Mapping[str, Any], *, use_status: bool = False) -> ResourceList:
    """AggregateContainerLimits; `use_status` is the option UseStatusResources (in-place resize)."""
    statuses, infeasible = _uses_status(pod) if use_status else (None, False)
    if statuses is None and not infeasible:
        return _aggregate_by(pod, _spec_limits, None, False)
    actuated = _aggregate_by(pod, _actuated_limits, statuses, infeasible)
    if infeasible:
        return actuated
    return _max_of(_aggregate_by(pod, _spec_limits, statuses, infeasible), actuated)


def _pod_level_resources(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _strict_mapping(_spec(pod).get("resources"), "spec.resources")


def _pod_level(pod: Mapping[str, Any], pick: str) -> ResourceList:
    raw = _pod_level_resources(pod).get(pick)
    return {k: v for k, v in _resources(raw, f"spec.resources.{pick}").items() if _is_pod_level(k)}


def _pod_level_set(pod: Mapping[str, Any], picks: Iterable[str]) -> bool:
    """IsPodLevelRequestsSet / IsPodLevelResourcesSet: a supported resource (cpu, memory, hugepages-*) is set."""
    resources = _pod_level_resources(pod)
    return any(
        _is_pod_level(str(k))
        for pick in picks
        for k in _strict_mapping(resources.get(pick), f"spec.resources.{pick}")
    )


def _overhead(pod: Mapping[str, Any]) -> ResourceList:
    return _resources(_spec(pod).get("overhead"), "spec.overhead")


def pod_requests(pod: Mapping[str, Any], *, use_status: bool = False) -> dict[str, Quantity]:
    """PodRequests: container aggregate, pod-level override, plus overhead.

    By default with PodRequests' default options: the spec alone, as the
    scheduler and kubectl see a pod. `use_status` adds the in-place resize
    status (UseStatusResources), as the quota evaluator asks for it.
    """
    requests = aggregate_container_requests(pod, use_status=use_status)
    if _pod_level_set(pod, ("requests",)):
        requests.update(_pod_level(pod, "requests"))
    _add(requests, _overhead(pod))
    return requests


def pod_limits(pod: Mapping[str, Any], *, use_status: bool = False) -> dict[str, Quantity]:
    """PodLimits: container aggregate, pod-level override, overhead on set limits (`use_status`: as pod_requests)."""
    limits = aggregate_container_limits(pod, use_status=use_status)
    if _pod_level_set(pod, ("requests", "limits")):
        limits.update(_pod_level(pod, "limits"))
    for name, value in _overhead(pod).items():
        have = limits.get(name)
        if have is not None and have.nanos:  # only limits that are set and non-zero
            limits[name] = have + value
    return limits


def unspecified(pod: Mapping[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """For each resource of `VALIDATION_SET`, the containers that do not specify it.

    Values are (label, Go name) pairs in container order, label being
    `container c` / `init container i`. Empty when pod-level resources are
    set: current Kubernetes then skips the check (PodLevelResources).
    `enforcePodContainerConstraints` runs on each container's own requests
    and limits: `cpu` and `requests.cpu` need a cpu request, `limits.cpu` a
    cpu limit; a zero counts as specified.
    """
    if _pod_level_set(pod, ("requests", "limits")):
        return {}
    missing: dict[str, list[tuple[str, Any]]] = {}
    for where, c, _ in _containers(pod):
        resources = _container_resources(c, where)
        requests = _strict_mapping(resources.get("requests"), f"{where} resources.requests")
        limits = _strict_mapping(resources.get("limits"), f"{where} resources.limits")
        for base in ("cpu", "memory"):
            if base not in requests:
                missing.setdefault(base, []).append((where, _go_name(c)))
                missing.setdefault(f"requests.{base}", []).append((where, _go_name(c)))
            if base not in limits:
                missing.setdefault(f"limits.{base}", []).append((where, _go_name(c)))
    return missing


def pod_constraints(pod: Mapping[str, Any], required: Iterable[str]) -> str | None:
    """The quota evaluator's `Constraints(required, pod)`: None, or its error text exactly.

    `required` is a quota's resource names; only cpu and memory ones (requests
    and limits) are checked. The text is Kubernetes': `must specify ` and, per
    missing resource in sorted order, `<resource> for: <names>`, the sorted,
    distinct container names (init containers too) joined by `,`, resources
    joined by `; `. The pod is read as given: apply the API server's and the
    LimitRanger's defaults first, as the API server does before quota sees it.
    """
    wanted = VALIDATION_SET.intersection(required)
    if not wanted:
        return None
    missing = unspecified(pod)
    messages = []
    for resource in sorted(wanted):
        names = missing.get(resource)
        if names:
            distinct = sorted({str(name) for _, name in names})
            messages.append(f"{resource} for: {','.join(distinct)}")
    return f"must specify {'; '.join(messages)}" if messages else None


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def charges_compute(pod: Mapping[str, Any], now: datetime | None = None) -> bool:
    """QuotaV1Pod: false for terminal pods and pods past their deletion grace."""
    if _status(pod).get("phase") in ("Failed", "Succeeded"):
        return False
    meta = _mapping(pod.get("metadata"))
    deleted = _parse_time(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    if deleted is not None and isinstance(grace, int) and not isinstance(grace, bool):
        moment = now or datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if moment > deleted + timedelta(seconds=grace):
            return False
    return True


_ONE = parse_quantity("1")


def pod_usage(pod: Mapping[str, Any], now: datetime | None = None) -> dict[str, Quantity]:
    """PodUsageFunc: the complete usage map the quota evaluator charges.

    With the quota evaluator's options: in-place resize status counts
    (InPlacePodVerticalScaling, GA), pod-level resources count.
    """
    usage: dict[str, Quantity] = {"count/pods": _ONE}
    if not charges_compute(pod, now):
        return usage
    requests = pod_requests(pod, use_status=True)
    limits = pod_limits(pod, use_status=True)
    usage["pods"] = _ONE
    for name in _NATIVE_WITH_REQUEST_KEYS:
        if name in requests:
            usage[name] = requests[name]
            usage[f"requests.{name}"] = requests[name]
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    for name, value in requests.items():
        if name.startswith("hugepages-"):
            usage[name] = value
            usage[f"requests.{name}"] = value
        if _is_extended(name):
            usage[f"requests.{name}"] = value
    return usage


def apply_defaults(template: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the API server defaults before storing a pod: requests from limits.

    A container (or the pod level) with a limit and no request for a resource
    gets the limit as its request. Returns `template` itself when nothing
    changes, so the common case allocates nothing.
    """
    spec = _spec(template)
    changed = False
    new_spec = dict(spec)
    for key in ("containers", "initContainers"):
        containers = _list(spec.get(key))
        new_list = []
        for c in containers:
            fixed = _default_requests(c) if isinstance(c, Mapping) else c  # a bad one is reported when read
            changed = changed or fixed is not c
            new_list.append(fixed)
        if containers:
            new_spec[key] = new_list
    pod_level = _mapping(spec.get("resources"))
    if pod_level:
        fixed_level = _default_requirements(pod_level)
        if fixed_level is not pod_level:
            new_spec["resources"] = fixed_level
            changed = True
    if not changed:
        return template
    out = dict(template)
    out["spec"] = new_spec
    return out


def _default_requests(container: Mapping[str, Any]) -> Mapping[str, Any]:
    resources = _mapping(container.get("resources"))
    fixed = _default_requirements(resources)
    if fixed is resources:
        return container
    out = dict(container)
    out["resources"] = fixed
    return out


def _default_requirements(resources: Mapping[str, Any]) -> Mapping[str, Any]:
    limits = _mapping(resources.get("limits"))
    requests = _mapping(resources.get("requests"))
    missing = {k: v for k, v in limits.items() if k not in requests}
    if not missing:
        return resources
    out = dict(resources)
    out["requests"] = {**requests, **missing}
    return out
