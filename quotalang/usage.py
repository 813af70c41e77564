"""A workload's usage: Σ parts replicas × pod usage, with model keys added.

Pod usage is computed once per distinct resource shape and model set: the
cache is keyed by a digest of the canonical JSON of only the fields pod usage reads
(containers' names and resources, init containers' restart policy, overhead,
pod-level resources, status and deletion marks), so templates that differ in
images, env or labels -- every Deployment of a team, the same object seen again
at UPDATE -- share one entry and cost a small dump and a cache lookup.

The cache is keyed by content alone (the shape, the models, the policy's gpu
resource names), so it is shared by every policy and never written into one:
a compiled policy stays immutable, and a reload starts warm. It is an LRU bounded in
bytes (`CACHE_BYTES`), so a stream of new shapes, however large, evicts the
oldest rather than emptying it or growing. The
webhook and the controller's threads share it, hence the lock.

A pod is charged as it will be stored: the API server's defaults (requests
from limits), then the namespace's LimitRange defaults (`limitranges`), are
applied before its usage is computed, and the entry also records which
containers leave cpu or memory unset afterwards (for the must-specify rule).
The LimitRange defaults are part of the cache key.

An invalid template (a negative or malformed quantity, a `resources` that is
not a mapping) raises `InvalidPod` naming the workload, the part and the
field; nothing is cached for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache

from quotalang import pods
from quotalang.errors import InputError
from quotalang.kinds import CompiledKind
from quotalang.limitranges import NO_DEFAULTS, ContainerDefaults, apply_limit_ranges
from quotalang.models import ModelProblem, Models, part_models
from quotalang.policy import CompiledPolicy
from quotalang.quantity import Format, Quantity
from quotalang.resources import model_kind, resource_class, split_key

CACHE_BYTES = 16 * 1024 * 1024  # what the cached entries may hold: about 20,000 ordinary pod shapes
Vector = tuple[tuple[str, int], ...]  # (key, nanos), sorted by key
# resource of pods.VALIDATION_SET -> the containers that leave it unset (`container c`), sorted by resource
Unspecified = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(slots=True)
class PartUsage:
    """One part of a workload, for charging and for explanations. Never changed once built (not frozen, like
    `WorkloadUsage` and the `Decision` that holds them: a frozen dataclass costs five times as much to build)."""

    name: str
    replicas: int
    per_pod: Vector  # model keys included
    surge: int
    models: Models
    template: Mapping[str, Any] | None  # compared at UPDATE: a changed template is a rollout
    missing_template: bool
    unspecified: Unspecified = ()  # after defaults; empty for nearly every pod, so checking it costs nothing
    model_problems: tuple[ModelProblem, ...] = ()  # an unpinned, undeclared or conflicting model (`models`)


@dataclass(slots=True)
class WorkloadUsage:
    rule: CompiledKind | None
    parts: tuple[PartUsage, ...]
    total: dict[str, int]  # key -> nanos

    def quantities(self) -> dict[str, Quantity]:
        return {key: to_quantity(key, value) for key, value in sorted(self.total.items())}


@dataclass(slots=True)
class Measured:
    """A stored body's usage and what it was computed under (`Decision.measured`).

    The same body under the same policy and LimitRange defaults has the same
    usage, so a caller that keeps the body beside it hands it back for the
    next UPDATE against that body (`evaluate(old_usage=)`) instead of having
    it computed again; under another policy or other defaults it is ignored.
    """

    policy: CompiledPolicy  # compared by identity: a reload builds a new one
    defaults: ContainerDefaults
    usage: WorkloadUsage

    def under(self, policy: CompiledPolicy, defaults: ContainerDefaults) -> WorkloadUsage | None:
        return self.usage if policy is self.policy and defaults == self.defaults else None


def to_quantity(key: str, nanos: int) -> Quantity:
    """Print bytes in binary units and everything else in decimal, like kubectl."""
    binary = resource_class(split_key(key).base)
    fmt: Format = "BinarySI" if binary in ("memory", "ephemeral-storage", "hugepages") else "DecimalSI"
    return Quantity.from_nanos(nanos, fmt)


_DUMP = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _dump(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_DUMP)
    except TypeError:  # YAML dates or other non-JSON values: stringify them
        return orjson.dumps(value, option=_DUMP, default=str)


def usage_key(template: Mapping[str, Any]) -> bytes:
    """The cache key of a template's pod usage: a digest of the fields `pods.pod_usage` reads.

    A digest (BLAKE2b, 32 bytes: no tenant can make two shapes collide), never
    the shape: the shape of a 1.8 MB review is about as large, and each
    distinct one kept 1.9 MB alive in the cache. Anything that is not the
    expected shape falls back to the whole template, so a malformed template
    is still computed (and reported) exactly.
    """
    return hashlib.blake2b(_shape(template), digest_size=32).digest()


def _shape(template: Mapping[str, Any]) -> bytes:
    spec = template.get("spec")
    meta = template.get("metadata")
    if type(spec) is not dict or (meta is not None and type(meta) is not dict):
        return _dump(template)
    containers = spec.get("containers") or ()
    init = spec.get("initContainers") or ()
    if type(containers) not in (list, tuple) or type(init) not in (list, tuple):
        return _dump(template)
    try:
        shape = (
            [(c.get("name"), c.get("resources")) for c in containers],
            [(c.get("name"), c.get("resources"), c.get("restartPolicy")) for c in init],
            spec.get("overhead"),
            spec.get("resources"),
            template.get("status"),
            meta.get("deletionTimestamp") if meta else None,
            meta.get("deletionGracePeriodSeconds") if meta else None,
        )
    except AttributeError:  # a container that is not a mapping
        return _dump(template)
    return _dump(shape)


def workload_models(
    policy: CompiledPolicy, obj: Mapping[str, Any], template: Mapping[str, Any] | None
) -> Models:
    """The models a part of `obj` runs on (`models.part_models`; its problems are the evaluator's)."""
    return part_models(policy.settings, obj, template)[0]


def _entry_bytes(entry: tuple[Vector, Unspecified]) -> int:
    """About what one cached entry holds (its key's digest and tuples included), for the cache's byte bound.

    The value is what grows with a hostile template: a pod of 30,000 containers
    that leave cpu unset lists every one of their names.
    """
    vector, unset = entry
    size = _ENTRY_OVERHEAD + sum(_ITEM + sys.getsizeof(k) for k, _ in vector)
    for resource, containers in unset:
        size += _ITEM + sys.getsizeof(resource) + sum(8 + sys.getsizeof(label) for label in containers)
    return size


_ENTRY_OVERHEAD = 400  # the slot tuple, the 32-byte digest, the models and defaults it shares, the LRU links
_ITEM = 100  # a (key, nanos) pair: the tuple and the int
# (usage_key, models, gpu resource names, LimitRange defaults) -> (usage vector with model keys, unspecified)
_per_pod: LRUCache[tuple[bytes, Models, frozenset[str], ContainerDefaults], tuple[Vector, Unspecified]] = LRUCache(
    CACHE_BYTES, getsizeof=_entry_bytes
)
_per_pod_lock = threading.Lock()


def pod_shape(
    policy: CompiledPolicy,
    template: Mapping[str, Any],
    models: Models,
    key: bytes,
    defaults: ContainerDefaults = NO_DEFAULTS,
) -> tuple[Vector, Unspecified]:
    """One pod of `template` on `models` after defaults: its usage (model keys included) and what it leaves unset.

    `key` is `usage_key(template)`; `defaults` the namespace's LimitRange defaults.
    """
    gpus = policy.settings.gpu_resources
    slot = (key, models, gpus, defaults)
    with _per_pod_lock:
        try:
            return _per_pod[slot]
        except KeyError:
            pass
    shape = _compute(template, models, gpus, defaults)  # outside the lock: a race computes one twice, harmlessly
    with _per_pod_lock, contextlib.suppress(ValueError):  # ValueError: one entry past the whole bound
        _per_pod[slot] = shape
    return shape


def per_pod(
    policy: CompiledPolicy,
    template: Mapping[str, Any],
    models: Models,
    key: bytes,
    defaults: ContainerDefaults = NO_DEFAULTS,
) -> Vector:
    """The usage of one pod of `template` on `models`, model keys included; `key` is `usage_key(template)`."""
    return pod_shape(policy, template, models, key, defaults)[0]


def _compute(
    template: Mapping[str, Any], models: Models, gpus: frozenset[str], defaults: ContainerDefaults
) -> tuple[Vector, Unspecified]:
    pod = apply_limit_ranges(pods.apply_defaults(template), defaults)
    base = {k: q.nanos for k, q in pods.pod_usage(pod).items()}
    out = dict(base)
    if models:
        chosen = {kind: model for kind, model, _ in models}
        for k, v in base.items():
            kind = model_kind(k, gpus)
            if kind is not None and kind in chosen:
                out[f"{k}.{chosen[kind]}"] = v
    unset = tuple(
        (resource, tuple(label for label, _ in containers))
        for resource, containers in sorted(pods.unspecified(pod).items())
    )
    return tuple(sorted(out.items())), unset


def workload_usage(
    policy: CompiledPolicy, obj: Mapping[str, Any], defaults: ContainerDefaults = NO_DEFAULTS
) -> WorkloadUsage:
    """What `obj` charges; a kind with no rule charges nothing."""
    rule = policy.rule_for(obj)
    if rule is None:
        return WorkloadUsage(None, (), {})
    return usage_of(policy, rule, obj, defaults)


def usage_of(
    policy: CompiledPolicy, rule: CompiledKind, obj: Mapping[str, Any], defaults: ContainerDefaults = NO_DEFAULTS
) -> WorkloadUsage:
    """What `obj` charges under `rule`, its kind rule (`workload_usage` when the caller has not looked it up).

    `defaults` are the LimitRange defaults of the object's namespace. Raises
    `InputError` (an `InvalidPod` for a template) naming the part and field
    for an object that cannot be charged as it is.
    """
    settings = policy.settings
    parts = []
    total: dict[str, int] = {}
    try:
        pod_sets = rule.pods_of(obj)
    except InputError as exc:
        raise type(exc)(f"{rule.kind}: {exc}") from None
    for pod_set in pod_sets:
        template = pod_set.template
        if template is None:
            parts.append(PartUsage(pod_set.name, pod_set.replicas, (), pod_set.surge, (), None, True))
            continue
        models, problems = part_models(settings, obj, template)
        key = usage_key(template)
        try:
            vector, unset = pod_shape(policy, template, models, key, defaults)
        except InputError as exc:
            raise type(exc)(f"{rule.kind} part {pod_set.name}: {exc}") from None
        replicas = pod_set.replicas
        if replicas and not total:  # the first part charged (most workloads have one): no sums to add to
            total = {k: v * replicas for k, v in vector}
        elif replicas:
            for k, v in vector:
                total[k] = total.get(k, 0) + v * replicas
        parts.append(
            PartUsage(pod_set.name, replicas, vector, pod_set.surge, models, template, False, unset, problems)
        )
    return WorkloadUsage(rule, tuple(parts), total)
