"""LimitRange defaults: what the LimitRanger admission plugin fills into a pod's containers.

Native quota charges a pod after the LimitRanger has filled in the
namespace's defaults, so a template without resources is charged what the
LimitRanges give it -- and only then must every container specify cpu and
memory (`pods.pod_constraints`). This module does the same for pod templates
seen at admission, without a cluster.

Semantics, after `plugin/pkg/admission/limitranger/admission.go` and
`pkg/apis/core/v1/defaults.go` of current Kubernetes:

- A LimitRange is first defaulted as the API server stores it
  (SetDefaults_LimitRangeItem, for `type: Container` items): `default` takes
  `max` where absent; `defaultRequest` takes `default`, then `min`, where
  absent. A LimitRange read from the cluster is already defaulted; one read
  from a file is not, and defaulting twice changes nothing.
- Per LimitRange (defaultContainerResourceRequirements), the Container items'
  `defaultRequest` become default requests and `default` default limits, a
  later item overriding an earlier one.
- Each LimitRange of the namespace is applied in turn (mergeContainerResources),
  to every container and init container, setting only what the container
  does not set: so across LimitRanges the first to give a resource wins.
  Pass them in a stable order (the controller: by name).
- Pod-level `spec.resources` and other item types (Pod, PersistentVolumeClaim)
  set no container defaults.

The API server copies limits into missing requests before the LimitRanger
runs (`pods.apply_defaults`); callers apply that first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quotalang.errors import InputError
from quotalang.quantity import Quantity, resource_list

# namespace -> that namespace's LimitRange objects; or a function answering the same.
# The controller keeps the mapping (or answers from its informer); `eval` and
# `quotalang test` pass the same LimitRanges for every namespace.
LimitRanges = Mapping[str, Sequence[Mapping[str, Any]]] | Callable[[str], Sequence[Mapping[str, Any]]]


class InvalidLimitRange(InputError):
    """A LimitRange that the API server would not accept: the message names it and the field."""


@dataclass(frozen=True, slots=True)
class ContainerDefaults:
    """Merged container defaults of a namespace: (resource, quantity text) pairs, sorted.

    Hashable and small: it is part of the usage cache key, so the same
    template under different defaults is computed apart.
    """

    requests: tuple[tuple[str, str], ...] = ()
    limits: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.requests or self.limits)


NO_DEFAULTS = ContainerDefaults()


def _quantities(raw: Any, where: str) -> dict[str, Quantity]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidLimitRange(f"{where} is not a mapping of resource: quantity")
    return resource_list(raw, where, InvalidLimitRange)


def _name_of(limit_range: Mapping[str, Any], index: int) -> str:
    meta = limit_range.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"LimitRange {name}" if isinstance(name, str) and name else f"LimitRange #{index}"


def _one(limit_range: Any, index: int) -> tuple[dict[str, Quantity], dict[str, Quantity]]:
    """defaultContainerResourceRequirements of one LimitRange, after SetDefaults_LimitRangeItem."""
    if not isinstance(limit_range, Mapping):
        raise InvalidLimitRange(f"LimitRange #{index} is not an object")
    kind = limit_range.get("kind")
    if kind is not None and kind != "LimitRange":
        raise InvalidLimitRange(f"{_name_of(limit_range, index)}: kind is {kind!r}, not LimitRange")
    label = _name_of(limit_range, index)
    spec = limit_range.get("spec")
    if spec is None:
        return {}, {}
    if not isinstance(spec, Mapping):
        raise InvalidLimitRange(f"{label}: spec is not a mapping")
    items = spec.get("limits")
    if items is None:
        return {}, {}
    if not isinstance(items, list):
        raise InvalidLimitRange(f"{label}: spec.limits is not a list")
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    for position, item in enumerate(items):
        where = f"{label}: spec.limits[{position}]"
        if not isinstance(item, Mapping):
            raise InvalidLimitRange(f"{where} is not a mapping")
        if item.get("type") != "Container":
            continue
        maximum = _quantities(item.get("max"), f"{where}.max")
        minimum = _quantities(item.get("min"), f"{where}.min")
        default = _quantities(item.get("default"), f"{where}.default")
        default_request = _quantities(item.get("defaultRequest"), f"{where}.defaultRequest")
        for key, value in maximum.items():
            default.setdefault(key, value)
        for key, value in default.items():
            default_request.setdefault(key, value)
        for key, value in minimum.items():
            default_request.setdefault(key, value)
        requests.update(default_request)
        limits.update(default)
    return requests, limits


def container_defaults(limit_ranges: Iterable[Any]) -> ContainerDefaults:
    """The defaults a namespace's LimitRanges give a container, merged in the order given.

    Raises `InvalidLimitRange` naming the LimitRange and field that is wrong.
    """
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    for index, limit_range in enumerate(limit_ranges):
        one_requests, one_limits = _one(limit_range, index)
        for key, value in one_requests.items():
            requests.setdefault(key, value)  # an earlier LimitRange already set it
        for key, value in one_limits.items():
            limits.setdefault(key, value)
    return ContainerDefaults(
        requests=tuple(sorted((k, str(v)) for k, v in requests.items())),
        limits=tuple(sorted((k, str(v)) for k, v in limits.items())),
    )


def limit_range_documents(documents: Iterable[Any], where: str) -> tuple[Mapping[str, Any], ...]:
    """The LimitRanges of YAML/JSON documents (`kind: List` / `LimitRangeList` items flattened), checked.

    For `eval --limit-range` and policy test files: raises `InvalidLimitRange`
    naming `where`, the document and the field.
    """
    found: list[Mapping[str, Any]] = []
    for index, doc in enumerate(documents):
        if isinstance(doc, Mapping) and doc.get("kind") in ("List", "LimitRangeList"):
            items = doc.get("items")
            if not isinstance(items, list):
                raise InvalidLimitRange(f"{where}: document {index}: items is not a list")
            found.extend(items)
        else:
            found.append(doc)
    for index, item in enumerate(found):
        if not isinstance(item, Mapping) or item.get("kind") != "LimitRange":
            kind = item.get("kind") if isinstance(item, Mapping) else None
            raise InvalidLimitRange(f"{where}: LimitRange #{index}: kind is {kind!r}, not LimitRange")
        try:
            _one(item, index)
        except InvalidLimitRange as exc:
            raise InvalidLimitRange(f"{where}: {exc}") from None
    return tuple(found)


def defaults_for(limit_ranges: LimitRanges | None, namespace: str) -> ContainerDefaults:
    """The container defaults of `namespace`, from a mapping or a function; none when not given."""
    if limit_ranges is None:
        return NO_DEFAULTS
    found = limit_ranges(namespace) if callable(limit_ranges) else limit_ranges.get(namespace, ())
    if not found:
        return NO_DEFAULTS
    return container_defaults(found)


def _fill(given: Any, defaults: tuple[tuple[str, str], ...]) -> Mapping[str, Any] | None:
    """`given` plus each default it lacks; None when it lacks none."""
    have: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    lacking = [(k, v) for k, v in defaults if k not in have]
    if not lacking:
        return None
    return {**have, **dict(lacking)}


def _container(container: Any, defaults: ContainerDefaults) -> Any:
    if not isinstance(container, Mapping):
        return container  # reported when the pod is read
    resources = container.get("resources")
    if resources is not None and not isinstance(resources, Mapping):
        return container
    resources = resources or {}
    requests, limits = resources.get("requests"), resources.get("limits")
    if (requests is not None and not isinstance(requests, Mapping)) or (
        limits is not None and not isinstance(limits, Mapping)
    ):
        return container  # a bad list stays as it is, for the reader to report
    new_requests = _fill(requests, defaults.requests)
    new_limits = _fill(limits, defaults.limits)
    if new_requests is None and new_limits is None:
        return container
    fixed = dict(resources)
    if new_requests is not None:
        fixed["requests"] = new_requests
    if new_limits is not None:
        fixed["limits"] = new_limits
    out = dict(container)
    out["resources"] = fixed
    return out


def apply_limit_ranges(template: Mapping[str, Any], defaults: ContainerDefaults) -> Mapping[str, Any]:
    """`template` with the LimitRanger's container defaults filled in (mergePodResourceRequirements).

    Returns `template` itself when nothing changes.
    """
    if not defaults:
        return template
    spec = template.get("spec")
    if not isinstance(spec, Mapping):
        return template
    new_spec = dict(spec)
    changed = False
    for key in ("containers", "initContainers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        fixed = [_container(c, defaults) for c in containers]
        if any(a is not b for a, b in zip(fixed, containers, strict=True)):
            new_spec[key] = fixed
            changed = True
    if not changed:
        return template
    out = dict(template)
    out["spec"] = new_spec
    return out


__all__ = [
    "NO_DEFAULTS",
    "ContainerDefaults",
    "InvalidLimitRange",
    "LimitRanges",
    "apply_limit_ranges",
    "container_defaults",
    "defaults_for",
    "limit_range_documents",
]
