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

`apply_defaults` adds what the API server would default before a pod is
stored (requests copied from limits), for pod templates seen at admission.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from quotalang.quantity import Quantity, QuantityError, parse_quantity

ResourceList = dict[str, Quantity]

_POD_LEVEL = ("cpu", "memory")
_NATIVE_WITH_REQUEST_KEYS = ("cpu", "memory", "ephemeral-storage")
_EMPTY: Mapping[str, Any] = {}


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


def _resources(raw: Any, where: str) -> ResourceList:
    """A ResourceList from YAML/JSON: strings or numbers, parsed exactly."""
    out: ResourceList = {}
    for name, value in _mapping(raw).items():
        if isinstance(value, Quantity):
            out[str(name)] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise QuantityError(f"{where}: {name} is {value!r}, not a quantity")
        text = value if isinstance(value, str) else repr(value)
        try:
            out[str(name)] = parse_quantity(text)
        except QuantityError as exc:
            raise QuantityError(f"{where}: {name}: {exc}") from None
    return out


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
    return _mapping(pod.get("spec"))


def _status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(pod.get("status"))


def _container_statuses(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """findContainerStatus: by name, app container statuses first."""
    status = _status(pod)
    found: dict[str, Mapping[str, Any]] = {}
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in _list(status.get(key)):
            cs = _mapping(cs)
            if isinstance(cs.get("name"), str):
                found.setdefault(cs["name"], cs)
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
    return f"{kind} {name}" if isinstance(name, str) else f"{kind} #{index}"


# A getter returns one container's resource list (None: no list at all), given
# the container, its status (None when there is none) and whether the pod's
# resize is infeasible. These mirror containerSpecRequests, containerActuatedRequests,
# containerAllocatedRequests, containerSpecLimits and containerActuatedLimits.
_Getter = Callable[[Mapping[str, Any], "Mapping[str, Any] | None", bool, str], "ResourceList | None"]


def _spec_list(c: Mapping[str, Any], key: str, where: str) -> ResourceList:
    return _resources(_mapping(c.get("resources")).get(key), where)


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
        return _resources(cs["allocatedResources"], where + " allocatedResources")
    return None if infeasible else _spec_list(c, "requests", where)


def _actuated_requests(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                       where: str) -> ResourceList | None:
    actuated = _status_list(cs, "requests")
    if actuated is not None:
        return _resources(actuated, where + " status resources")
    if cs is not None and cs.get("allocatedResources") is not None:
        return _resources(cs["allocatedResources"], where + " allocatedResources")
    return None if infeasible else _spec_list(c, "requests", where)


def _actuated_limits(c: Mapping[str, Any], cs: Mapping[str, Any] | None, infeasible: bool,
                     where: str) -> ResourceList | None:
    actuated = _status_list(cs, "limits")
    if actuated is not None:
        return _resources(actuated, where + " status resources")
    return None if infeasible else _spec_list(c, "limits", where)


def _aggregate_by(pod: Mapping[str, Any], get: _Getter, statuses: dict[str, Mapping[str, Any]] | None,
                  infeasible: bool) -> ResourceList:
    """aggregateContainerResourcesByFn: Σ app containers and sidecars, at least each init's peak."""
    spec = _spec(pod)
    total: ResourceList = {}
    for index, c in enumerate(_list(spec.get("containers"))):
        c = _mapping(c)
        cs = statuses.get(c.get("name")) if statuses else None  # type: ignore[arg-type]
        own = get(c, cs, infeasible, _name(c, index, "container"))
        if own:
            _add(total, own)
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for index, c in enumerate(_list(spec.get("initContainers"))):
        c = _mapping(c)
        cs = statuses.get(c.get("name")) if statuses else None  # type: ignore[arg-type]
        own = get(c, cs, infeasible, _name(c, index, "init container")) or {}
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


def _uses_status(pod: Mapping[str, Any]) -> tuple[dict[str, Mapping[str, Any]] | None, bool]:
    """(container statuses by name, resize infeasible) — (None, False) when status changes nothing."""
    status = pod.get("status")
    if not status:
        return None, False
    statuses = _container_statuses(pod)
    infeasible = _resize_infeasible(pod)
    if not statuses and not infeasible:
        return None, False  # actuated and allocated both fall back to the spec
    return statuses, infeasible


def aggregate_container_requests(pod: Mapping[str, Any]) -> ResourceList:
    """AggregateContainerRequests with UseStatusResources (InPlacePodVerticalScaling, GA)."""
    statuses, infeasible = _uses_status(pod)
    if statuses is None and not infeasible:
        return _aggregate_by(pod, _spec_requests, None, False)
    actuated = _aggregate_by(pod, _actuated_requests, statuses, infeasible)
    allocated = _aggregate_by(pod, _allocated_requests, statuses, infeasible)
    if infeasible:
        return _max_of(actuated, allocated)
    return _max_of(_aggregate_by(pod, _spec_requests, statuses, infeasible), actuated, allocated)


def aggregate_container_limits(pod: Mapping[str, Any]) -> ResourceList:
    """AggregateContainerLimits with UseStatusResources (InPlacePodVerticalScaling, GA)."""
    statuses, infeasible = _uses_status(pod)
    if statuses is None and not infeasible:
        return _aggregate_by(pod, _spec_limits, None, False)
    actuated = _aggregate_by(pod, _actuated_limits, statuses, infeasible)
    if infeasible:
        return actuated
    return _max_of(_aggregate_by(pod, _spec_limits, statuses, infeasible), actuated)


def _pod_level(pod: Mapping[str, Any], pick: str) -> ResourceList:
    raw = _mapping(_mapping(_spec(pod).get("resources")).get(pick))
    return {k: v for k, v in _resources(raw, f"pod-level {pick}").items() if _is_pod_level(k)}


def _pod_level_set(pod: Mapping[str, Any], picks: Iterable[str]) -> bool:
    resources = _mapping(_spec(pod).get("resources"))
    return any(_is_pod_level(str(k)) for pick in picks for k in _mapping(resources.get(pick)))


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Quantity]:
    """PodRequests: container aggregate, pod-level override, plus overhead."""
    requests = aggregate_container_requests(pod)
    if _pod_level_set(pod, ("requests",)):
        requests.update(_pod_level(pod, "requests"))
    _add(requests, _resources(_spec(pod).get("overhead"), "overhead"))
    return requests


def pod_limits(pod: Mapping[str, Any]) -> dict[str, Quantity]:
    """PodLimits: container aggregate, pod-level override, overhead on set limits."""
    limits = aggregate_container_limits(pod)
    if _pod_level_set(pod, ("requests", "limits")):
        limits.update(_pod_level(pod, "limits"))
    for name, value in _resources(_spec(pod).get("overhead"), "overhead").items():
        have = limits.get(name)
        if have is not None and have.nanos:  # only limits that are set and non-zero
            limits[name] = have + value
    return limits


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
    """PodUsageFunc: the complete usage map the quota evaluator charges."""
    usage: dict[str, Quantity] = {"count/pods": _ONE}
    if not charges_compute(pod, now):
        return usage
    requests = pod_requests(pod)
    limits = pod_limits(pod)
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
            fixed = _default_requests(_mapping(c))
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
