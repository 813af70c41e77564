"""A workload's usage: Σ parts replicas × pod usage, with model keys added.

Pod usage is computed once per distinct pod template and model set: the cache
is keyed by the template's canonical JSON bytes, so thousands of replicas of
the same Deployment template (or the same object seen again at UPDATE) cost a
hash and a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from quotalang import pods
from quotalang.kinds import CompiledKind
from quotalang.quantity import Format, Quantity
from quotalang.resources import resource_class, split_key

if TYPE_CHECKING:
    from quotalang.compiler import CompiledPolicy

MODEL_KINDS = ("cpu", "gpu", "memory")
_CACHE_LIMIT = 8192
_NO_LABELS: Mapping[str, Any] = {}
Vector = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class PartUsage:
    """One part of a workload, for charging and for explanations."""

    name: str
    replicas: int
    per_pod: Vector  # model keys included
    surge: int
    models: tuple[tuple[str, str, str], ...]  # (model kind, model, where it came from)
    template_key: bytes | None
    missing_template: bool


@dataclass(frozen=True, slots=True)
class WorkloadUsage:
    rule: CompiledKind | None
    parts: tuple[PartUsage, ...]
    total: dict[str, int]  # key -> nanos

    def quantities(self) -> dict[str, Quantity]:
        return {key: to_quantity(key, value) for key, value in sorted(self.total.items())}


def to_quantity(key: str, nanos: int) -> Quantity:
    """Print bytes in binary units and everything else in decimal, like kubectl."""
    binary = resource_class(split_key(key).base)
    fmt: Format = "BinarySI" if binary in ("memory", "ephemeral-storage", "hugepages") else "DecimalSI"
    return Quantity.from_nanos(nanos, fmt)


def template_key(template: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(template, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # YAML dates or other non-JSON values: stringify them
        return orjson.dumps(template, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def _labels(node: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = node.get("metadata") if type(node) is dict or isinstance(node, Mapping) else None
    labels = meta.get("labels") if type(meta) is dict or isinstance(meta, Mapping) else None
    return labels if type(labels) is dict or isinstance(labels, Mapping) else _NO_LABELS


def workload_models(
    policy: CompiledPolicy, obj_labels: Mapping[str, Any], template: Mapping[str, Any] | None
) -> tuple[tuple[str, str, str], ...]:
    """The models a part runs on: workload labels first, then pod template labels."""
    found = []
    template_labels: Mapping[str, Any] | None = None
    for kind in MODEL_KINDS:
        label = policy.settings.model_labels.get(kind)
        if label is None:
            continue
        value = obj_labels.get(label)
        where = "workload label"
        if value is None:
            if template_labels is None:
                template_labels = _labels(template)
            value = template_labels.get(label)
            where = "pod template label"
        if isinstance(value, str) and value:
            found.append((kind, value, f"{where} {label}"))
    return tuple(found)


def _pod_vector(policy: CompiledPolicy, template: Mapping[str, Any], key: bytes) -> dict[str, int]:
    cache: dict[Any, Any] = policy._cache
    hit = cache.get(key)
    if hit is None:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        hit = {k: q.nanos for k, q in pods.pod_usage(pods.apply_defaults(template)).items()}
        cache[key] = hit
    return hit


def _model_kind(policy: CompiledPolicy, key: str) -> str | None:
    cache: dict[Any, Any] = policy._cache
    slot = ("model-kind", key)
    if slot in cache:
        return cache[slot]  # type: ignore[no-any-return]
    from quotalang.compiler import model_kind_of

    found = model_kind_of(key, policy.settings.gpu_resources)
    cache[slot] = found
    return found


def per_pod(
    policy: CompiledPolicy,
    template: Mapping[str, Any],
    models: tuple[tuple[str, str, str], ...],
    key: bytes,
) -> Vector:
    """The usage of one pod of `template` on `models`, model keys included."""
    cache: dict[Any, Any] = policy._cache
    slot = (key, models)
    hit = cache.get(slot)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    base = _pod_vector(policy, template, key)
    out = dict(base)
    if models:
        chosen = {kind: model for kind, model, _ in models}
        for k, v in base.items():
            kind = _model_kind(policy, k)
            if kind is not None and kind in chosen:
                out[f"{k}.{chosen[kind]}"] = v
    vector = tuple(sorted(out.items()))
    cache[slot] = vector
    return vector


def workload_usage(policy: CompiledPolicy, obj: Mapping[str, Any]) -> WorkloadUsage:
    """What `obj` charges; a kind with no rule charges nothing."""
    rule = policy.rule_for(obj)
    if rule is None:
        return WorkloadUsage(None, (), {})
    obj_labels = _labels(obj)
    parts = []
    total: dict[str, int] = {}
    for pod_set in rule.pods_of(obj):
        template = pod_set.template
        if template is None:
            parts.append(PartUsage(pod_set.name, pod_set.replicas, (), pod_set.surge, (), None, True))
            continue
        models = workload_models(policy, obj_labels, template)
        key = template_key(template)
        vector = per_pod(policy, template, models, key)
        replicas = pod_set.replicas
        if replicas:
            for k, v in vector:
                total[k] = total.get(k, 0) + v * replicas
        parts.append(PartUsage(pod_set.name, replicas, vector, pod_set.surge, models, key, False))
    return WorkloadUsage(rule, tuple(parts), total)
