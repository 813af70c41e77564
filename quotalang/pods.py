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

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from quotalang.quantity import Quantity, QuantityError, parse_quantity

ResourceList = dict[str, Quantity]

_POD_LEVEL = ("cpu", "memory")
_NATIVE_WITH_REQUEST_KEYS = ("cpu", "memory", "ephemeral-storage")
_EMPTY: Mapping[str, Any] = {}


def _is_pod_level(name: str) -> bool:
    return name in _POD_LEVEL or name.startswith("hugepages-")


IMPLICIT_EXTENDED_PREFIX = "deviceclass.resource.kubernetes.io/"


def _is_extended(name: str) -> bool:
    """IsExtendedResourceName: a domain that is not kubernetes.io, no requests. prefix.

    `deviceclass.resource.kubernetes.io/<class>` is the implicit extended
    resource of a DRA DeviceClass (DRAExtendedResource): extended too, and
    charged as `requests.<name>` like any other.
    """
    if "/" not in name or name.startswith("requests."):
        return False
    if name.startswith(IMPLICIT_EXTENDED_PREFIX):
        return True
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


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
    status = _status(pod)
    found: dict[str, Mapping[str, Any]] = {}
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in _list(status.get(key)):
            cs = _mapping(cs)
            if isinstance(cs.get("name"), str):
                found[cs["name"]] = cs
    return found


def _resize_infeasible(pod: Mapping[str, Any]) -> bool:
    status = _status(pod)
    if status.get("resize") == "Infeasible":
        return True
    for condition in _list(status.get("conditions")):
        condition = _mapping(condition)
        if (
            condition.get("type") == "PodResizePending"
            and condition.get("status") == "True"
            and condition.get("reason") == "Infeasible"
        ):
            return True
    return False


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def _name(container: Mapping[str, Any], index: int, kind: str) -> str:
    name = container.get("name")
    return f"{kind} {name}" if isinstance(name, str) else f"{kind} #{index}"


def _requests_of(pod: Mapping[str, Any], c: Mapping[str, Any], where: str,
                 statuses: dict[str, Mapping[str, Any]]) -> ResourceList:
    spec_requests = _resources(_mapping(c.get("resources")).get("requests"), where)
    cs = statuses.get(c.get("name")) if statuses else None  # type: ignore[arg-type]
    if cs is None or not isinstance(cs.get("resources"), Mapping):
        return spec_requests
    status_requests = _resources(cs["resources"].get("requests"), where + " status")
    allocated = _resources(cs.get("allocatedResources"), where + " allocatedResources")
    if _resize_infeasible(pod):
        return _max_of(status_requests, allocated)
    return _max_of(spec_requests, status_requests, allocated)


def _limits_of(pod: Mapping[str, Any], c: Mapping[str, Any], where: str,
               statuses: dict[str, Mapping[str, Any]]) -> ResourceList:
    spec_limits = _resources(_mapping(c.get("resources")).get("limits"), where)
    cs = statuses.get(c.get("name")) if statuses else None  # type: ignore[arg-type]
    if cs is None or not isinstance(cs.get("resources"), Mapping):
        return spec_limits
    status_limits = _resources(cs["resources"].get("limits"), where + " status")
    if _resize_infeasible(pod):
        return status_limits
    return _max_of(spec_limits, status_limits)


def _aggregate(pod: Mapping[str, Any], pick: str) -> ResourceList:
    """AggregateContainerRequests / AggregateContainerLimits."""
    spec = _spec(pod)
    statuses = _container_statuses(pod) if pod.get("status") else {}
    of = _requests_of if pick == "requests" else _limits_of
    total: ResourceList = {}
    for index, c in enumerate(_list(spec.get("containers"))):
        c = _mapping(c)
        _add(total, of(pod, c, _name(c, index, "container"), statuses))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for index, c in enumerate(_list(spec.get("initContainers"))):
        c = _mapping(c)
        where = _name(c, index, "init container")
        if _is_sidecar(c):
            own = of(pod, c, where, statuses)
            _add(total, own)
            _add(sidecars, own)
            need = dict(sidecars)
        else:
            no_status: dict[str, Mapping[str, Any]] = {}
            need = of(pod, c, where, no_status)
            _add(need, sidecars)
        _max_into(init_peak, need)
    _max_into(total, init_peak)
    return total


def _pod_level(pod: Mapping[str, Any], pick: str) -> ResourceList:
    raw = _mapping(_mapping(_spec(pod).get("resources")).get(pick))
    return {k: v for k, v in _resources(raw, f"pod-level {pick}").items() if _is_pod_level(k)}


def _pod_level_set(pod: Mapping[str, Any], picks: Iterable[str]) -> bool:
    resources = _mapping(_spec(pod).get("resources"))
    return any(_is_pod_level(str(k)) for pick in picks for k in _mapping(resources.get(pick)))


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Quantity]:
    """PodRequests: container aggregate, pod-level override, plus overhead."""
    requests = _aggregate(pod, "requests")
    if _pod_level_set(pod, ("requests",)):
        requests.update(_pod_level(pod, "requests"))
    _add(requests, _resources(_spec(pod).get("overhead"), "overhead"))
    return requests


def pod_limits(pod: Mapping[str, Any]) -> dict[str, Quantity]:
    """PodLimits: container aggregate, pod-level override, overhead on set limits."""
    limits = _aggregate(pod, "limits")
    if _pod_level_set(pod, ("requests", "limits")):
        limits.update(_pod_level(pod, "limits"))
    for name, value in _resources(_spec(pod).get("overhead"), "overhead").items():
        if name in limits:
            limits[name] = limits[name] + value
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
