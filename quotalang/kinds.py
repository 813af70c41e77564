"""Compiled kind rules: read the pods a workload will run out of any object.

A rule is compiled once into plain tuples and closures; `pods_of()` then walks
an object with no parsing or allocation beyond the parts it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from quotalang import nodes
from quotalang.errors import InputError

# (object root, current item) -> value
Getter = Callable[[Any, Any], Any]
Counter = Callable[[Any, Any], int]


@dataclass(slots=True)
class PodSet:
    """One part of a workload: `replicas` pods like `template`. Never changed once built (not frozen: a frozen
    dataclass costs five times as much to build, and one is built per part of every decision)."""

    name: str
    replicas: int
    template: Mapping[str, Any] | None
    surge: int  # extra pods a rolling update may add (0 when the kind has none)


def follow(node: Any, segments: tuple[str, ...]) -> Any:
    """The value at `segments` under `node` (map keys, list indexes), None where it is absent."""
    for segment in segments:
        if type(node) is dict or isinstance(node, Mapping):
            node = node.get(segment)
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return None
        if node is None:
            return None
    return node


def compile_getter(path: nodes.Path) -> Getter:
    segments = path.segments
    if path.relative:
        return lambda root, item: follow(item, segments)
    return lambda root, item: follow(root, segments)


def _as_count(value: Any, where: str) -> int:
    """A count read from the object: an integer, never negative (the API server would reject either)."""
    if isinstance(value, bool) or not isinstance(value, int):
        text = repr(value)
        raise InputError(f"{where} is {text if len(text) <= 60 else text[:59] + '…'}, not an integer")
    if value < 0:
        raise InputError(f"{where} is {value}: must be greater than or equal to 0")
    return value


def compile_expr(expr: nodes.Expr) -> Counter:
    """An integer expression; absent paths without a default count 0."""
    if isinstance(expr, nodes.IntLit):
        constant = expr.value
        return lambda root, item: constant
    if isinstance(expr, nodes.PathRef):
        get = compile_getter(expr.path)
        default = expr.default
        where = expr.path.text

        def read(root: Any, item: Any) -> int:
            value = get(root, item)
            if value is None:
                return default if default is not None else 0
            return _as_count(value, where)

        return read
    if isinstance(expr, nodes.Call):
        return _compile_call(expr)
    left, right = compile_expr(expr.left), compile_expr(expr.right)
    if expr.op == "+":
        return lambda root, item: left(root, item) + right(root, item)
    if expr.op == "-":
        return lambda root, item: left(root, item) - right(root, item)
    return lambda root, item: left(root, item) * right(root, item)


def _compile_call(call: nodes.Call) -> Counter:
    """min / max of any number of arguments; `clamp(x, lo, hi)` is `max(min(x, hi), lo)`.

    clamp takes `lo` when the bounds cross (lo > hi): the larger of what the
    operators do then (KubeRay took maxReplicas, later minReplicas, and now
    rejects the cluster), so a crossed spec is never under-charged.
    """
    args = tuple(compile_expr(arg) for arg in call.args)
    if call.func == "min":
        return lambda root, item: min(arg(root, item) for arg in args)
    if call.func == "max":
        return lambda root, item: max(arg(root, item) for arg in args)
    value, low, high = args  # the checker (E307) holds clamp to three arguments
    return lambda root, item: max(min(value(root, item), high(root, item)), low(root, item))


def _iterate(node: Any, segments: tuple[str, ...], label: str) -> Iterator[tuple[str, Any]]:
    """Yield (label, item) for every match of a path with `*` segments."""
    if not segments:
        yield label, node
        return
    head, rest = segments[0], segments[1:]
    if head != "*":
        nxt = follow(node, (head,))
        if nxt is not None:
            yield from _iterate(nxt, rest, label)
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _iterate(value, rest, f"{label}/{key}" if label else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            # List items are named by `name` (JobSet, MPIJob) or `groupName` (Ray worker groups).
            name = (value.get("name") or value.get("groupName")) if isinstance(value, Mapping) else None
            here = str(name) if isinstance(name, str) else str(index)
            yield from _iterate(value, rest, f"{label}/{here}" if label else here)


def surge_pods(value: Any, replicas: int) -> int:
    """maxSurge as Kubernetes resolves it: an int, or a percent rounded up."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            return 0
        return max(math.ceil(replicas * percent / 100), 0)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


@dataclass(frozen=True, slots=True)
class CompiledPart:
    name: str | None
    each: tuple[str, ...] | None
    each_relative: bool
    replicas: Counter
    templates: tuple[Getter, ...]
    replicas_paths: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledKind:
    api_version: str
    kind: str
    parts: tuple[CompiledPart, ...]
    scale_path: tuple[str, ...] | None
    surge: Getter | None
    surge_default: str | None
    source: str  # file:line of the rule, for explanations
    # (API group, kind) of what the kind's controller creates, and (created, via) pairs: see owners.py
    creates: frozenset[tuple[str, str]] = frozenset()
    creates_via: frozenset[tuple[tuple[str, str], tuple[str, str]]] = frozenset()
    # `suspend PATH`: the field set to true to pause the workload (reclaim.py), e.g. ("spec", "suspend")
    suspend_path: tuple[str, ...] | None = None

    def suspended(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj`'s suspend field is true: its operator then runs no pods, so none are charged."""
        return self.suspend_path is not None and follow(obj, self.suspend_path) is True

    def pods_of(self, obj: Mapping[str, Any]) -> list[PodSet]:
        """Every part of `obj` as (name, replicas, template); 0 replicas each while it is suspended.

        A suspended workload charges nothing, as Kueue's queued (suspended)
        Jobs hold no quota: resuming it is an UPDATE charged in full, and
        suspending one the controller reclaims gives its quota back as the
        watch sees the suspend.
        """
        if self.suspended(obj):
            return [replace(pod_set, replicas=0, surge=0) for pod_set in self._pods_of(obj)]
        return self._pods_of(obj)

    def _pods_of(self, obj: Mapping[str, Any]) -> list[PodSet]:
        out: list[PodSet] = []
        for part in self.parts:
            if part.each is None:
                out.append(self._pod_set(part, obj, obj, part.name or "pod"))
                continue
            start = obj
            for label, item in _iterate(start, part.each, ""):
                out.append(self._pod_set(part, obj, item, part.name or label or "pod"))
        return out

    def _pod_set(self, part: CompiledPart, root: Any, item: Any, name: str) -> PodSet:
        replicas = max(part.replicas(root, item), 0)
        template = None
        for get in part.templates:
            found = get(root, item)
            if type(found) is dict or isinstance(found, Mapping):
                template = found
                break
        surge = 0
        if self.surge is not None:
            value = self.surge(root, item)
            if value is None and self.surge_default is not None:
                default = self.surge_default
                value = default if default.endswith("%") else int(default)
            surge = surge_pods(value, replicas)
        return PodSet(name, replicas, template, surge)

    def with_replicas(self, obj: Mapping[str, Any], replicas: int) -> dict[str, Any]:
        """A shallow-copied `obj` whose scale path is set to `replicas`."""
        if self.scale_path is None:
            raise InputError(f"{self.kind} has no scale path in its kind rule")
        return _set(obj, self.scale_path, replicas)


def _set(node: Mapping[str, Any], segments: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = dict(node)
    head = segments[0]
    if len(segments) == 1:
        copy[head] = value
    else:
        child = node.get(head)
        copy[head] = _set(child if isinstance(child, Mapping) else {}, segments[1:], value)
    return copy


def _expr_paths(expr: nodes.Expr | None) -> Iterator[str]:
    if isinstance(expr, nodes.PathRef):
        yield expr.path.text
    elif isinstance(expr, nodes.BinOp):
        yield from _expr_paths(expr.left)
        yield from _expr_paths(expr.right)
    elif isinstance(expr, nodes.Call):
        for arg in expr.args:
            yield from _expr_paths(arg)


def group_kind(api_version: str, kind: str) -> tuple[str, str]:
    """(API group, kind): what names a kind across its versions (`apps/v1` → `apps`, `v1` → '')."""
    return (api_version.rpartition("/")[0], kind)


def compile_kind(rule: nodes.KindRule) -> CompiledKind:
    parts = []
    for part in rule.parts:
        replicas = compile_expr(part.replicas) if part.replicas is not None else (lambda r, i: 1)
        parts.append(
            CompiledPart(
                name=part.name,
                each=part.each.segments if part.each else None,
                each_relative=bool(part.each and part.each.relative),
                replicas=replicas,
                templates=tuple(compile_getter(p) for p in part.templates),
                replicas_paths=frozenset(_expr_paths(part.replicas)),
            )
        )
    scale = rule.scale.segments if rule.scale else None
    surge = compile_getter(rule.surge.path) if rule.surge else None
    return CompiledKind(
        api_version=rule.api_version,
        kind=rule.kind,
        parts=tuple(parts),
        scale_path=scale,
        surge=surge,
        surge_default=rule.surge.default if rule.surge else None,
        source=str(rule.span),
        creates=frozenset(group_kind(c.api_version, c.kind) for c in rule.creates if c.via_kind is None),
        creates_via=frozenset(
            (group_kind(c.api_version, c.kind), group_kind(c.via_api_version or "", c.via_kind))
            for c in rule.creates
            if c.via_kind is not None
        ),
        suspend_path=rule.suspend.segments if rule.suspend is not None else None,
    )
