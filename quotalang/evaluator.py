"""Decide one admission request against a compiled policy (stage 4 of 4).

Pure: the usage it checks against comes in through `UsageSource` (a snapshot
in CI, the ledger in the webhook), and what it decides to charge goes out in
`Decision.charges` for the caller to reserve. A workload in group G is
checked against G alone: for each key G limits,
`used + reserved + Σ children hard + delta ≤ hard`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from quotalang.decision import Decision, Violation, clip, hours, qty
from quotalang.errors import InputError
from quotalang.quantity import QuantityError, parse_quantity
from quotalang.usage import PartUsage, WorkloadUsage, workload_usage

if TYPE_CHECKING:
    from quotalang.compiler import CompiledGroup, CompiledPolicy

_EMPTY: Mapping[str, int] = {}


class UsageSource(Protocol):
    """What a group has used: own usage plus pending reservations, and cash."""

    def used(self, group: str) -> Mapping[str, int]: ...

    def cash_used(self, group: str) -> Mapping[str, int]: ...


class Snapshot:
    """A usage snapshot `{group: {key: quantity, "cash": {key: "950h"}}}`."""

    __slots__ = ("_cash", "_used")

    def __init__(self, used: dict[str, dict[str, int]], cash: dict[str, dict[str, int]]):
        self._used = used
        self._cash = cash

    def used(self, group: str) -> Mapping[str, int]:
        return self._used.get(group, _EMPTY)

    def cash_used(self, group: str) -> Mapping[str, int]:
        return self._cash.get(group, _EMPTY)

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> Snapshot:
        """Parse a snapshot; raise `InputError` naming the bad entry."""
        used: dict[str, dict[str, int]] = {}
        cash: dict[str, dict[str, int]] = {}
        if data is None:
            return cls(used, cash)
        if not isinstance(data, Mapping):
            raise InputError("a usage snapshot is a mapping {group: {key: quantity}}")
        for group, keys in data.items():
            if not isinstance(keys, Mapping):
                raise InputError(f"usage of group {group!r} is not a mapping of key: quantity")
            for key, value in keys.items():
                if key == "cash":
                    if not isinstance(value, Mapping):
                        raise InputError(f"cash of group {group!r} is not a mapping of key: hours")
                    cash[str(group)] = {str(k): _hours(group, k, v) for k, v in value.items()}
                    continue
                try:
                    used.setdefault(str(group), {})[str(key)] = parse_quantity(str(value)).nanos
                except QuantityError as exc:
                    raise InputError(f"usage of {group}/{key}: {exc}") from None
        return cls(used, cash)


def _hours(group: object, key: object, value: object) -> int:
    from fractions import Fraction

    text = str(value).strip().removesuffix("h")
    try:
        amount = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"cash of {group}/{key}: {value!r} is not a number of hours") from None
    nanos = amount * 3600 * 10**9
    return nanos.numerator // nanos.denominator


EMPTY_SNAPSHOT = Snapshot({}, {})


def _source(usage: UsageSource | Mapping[str, Any] | None) -> UsageSource:
    if usage is None:
        return EMPTY_SNAPSHOT
    if isinstance(usage, Mapping):
        return Snapshot.parse(usage)
    return usage


def _labels(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = obj.get("metadata") if type(obj) is dict or isinstance(obj, Mapping) else None
    labels = meta.get("labels") if type(meta) is dict or isinstance(meta, Mapping) else None
    return labels if type(labels) is dict or isinstance(labels, Mapping) else _EMPTY


def resolve_group(policy: CompiledPolicy, obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(group, None) or (None, why-not); (None, None) means unlabelled and allowed."""
    settings = policy.settings
    name = _labels(obj).get(settings.group_label)
    if name is None:
        if settings.unlabelled == "group":
            return settings.unlabelled_group, None
        if settings.unlabelled == "deny":
            return None, (
                f"workload has no label {settings.group_label}; "
                "label it with the quota group it belongs to"
            )
        return None, None
    if name in policy.groups:
        return str(name), None
    near = policy.near_groups(str(name))
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return None, f"unknown quota group {name!r} in label {settings.group_label}{hint}"


def evaluate(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    usage: UsageSource | Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
) -> Decision:
    """Decide CREATE/UPDATE of a workload, a `Scale`, or an HPA.

    `parent` is the stored workload a `Scale` or HPA refers to; the caller
    finds it (ledger, cache, live GET). Raises `InputError` for objects that
    cannot be read.
    """
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise InputError("the object is not a mapping")
    op = operation.upper()
    if op not in ("CREATE", "UPDATE"):
        return Decision(True, op, reason="not-intercepted")
    source = _source(usage)
    kind = obj.get("kind")
    if kind == "Scale":
        return _scale(policy, obj, old, source, parent)
    if kind == "HorizontalPodAutoscaler" and str(obj.get("apiVersion", "")).startswith("autoscaling/"):
        return _hpa(policy, obj, source, parent)
    return _workload(policy, obj, op, old if op == "UPDATE" else None, source)


def _workload(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    op: str,
    old: Mapping[str, Any] | None,
    source: UsageSource,
    check_only: bool = False,
) -> Decision:
    if policy.rule_for(obj) is None:
        return Decision(True, op, reason="no-rule", notes=["no kind rule matches; not charged"])
    owner = charged_owner(policy, obj)
    if owner is not None:
        return Decision(True, op, reason="owned", notes=[f"controlled by {owner}, which is charged for it"])
    new = workload_usage(policy, obj)
    group_name, problem = resolve_group(policy, obj)
    if group_name is None:
        if problem is None:
            return Decision(True, op, reason="unlabelled", total=new.total, parts=new.parts,
                            notes=["unlabelled and the policy allows it; not charged"])
        return Decision(False, op, reason="unknown-group" if "unknown" in problem else "unlabelled",
                        total=new.total, parts=new.parts, error=problem)
    group = policy.groups[group_name]
    charges: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    extra: dict[str, int] = {}
    if old is not None:
        old_usage = workload_usage(policy, old)
        old_group, _ = resolve_group(policy, old)
        if old_group == group_name:
            delta = _subtract(new.total, old_usage.total)
            extra = _surge_room(new, old_usage)
            if extra:
                notes.append("rollout: room for surge pods is checked, not charged")
        else:
            delta = dict(new.total)
            if old_group is not None and old_usage.total:
                charges[old_group] = {k: -v for k, v in old_usage.total.items()}
                notes.append(f"moves from group {policy.groups[old_group].path}: released there")
    else:
        delta = dict(new.total)
    violations, warnings = _check(policy, group, delta, extra, new, old is not None, source)
    if not check_only and delta:
        charges[group_name] = delta
    decision = Decision(
        allowed=True,
        operation=op,
        group=group_name,
        path=group.path,
        mode=group.mode,
        reason="over-quota" if violations else "charged",
        total=new.total,
        delta=delta,
        charges=charges,
        violations=violations,
        warnings=warnings,
        parts=new.parts,
        notes=notes,
    )
    if violations:
        if group.mode == "enforce":
            decision.allowed = False
            decision.charges = {}
        elif group.mode == "warn":
            decision.warnings = [clip(f"{group.name}: {v.describe()}") for v in violations] + warnings
    return decision


def charged_owner(policy: CompiledPolicy, obj: Mapping[str, Any]) -> str | None:
    """The controlling owner that a kind rule already charges, if any.

    A Deployment's ReplicaSet and pods, a CronJob's Jobs, a TFJob's pods: the
    owner paid for them at admission, so charging them again would count the
    same pods twice (and deny them under `unlabelled deny`). Pods of an owner
    no rule covers are charged themselves.
    """
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    if not refs or not isinstance(refs, list):
        return None
    for ref in refs:
        owned = isinstance(ref, Mapping) and ref.get("controller") is True
        if owned and (ref.get("apiVersion"), ref.get("kind")) in policy.kinds:
            return f"{ref.get('kind')} {ref.get('name')}"
    return None


def _subtract(new: Mapping[str, int], old: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for key in new.keys() | old.keys():
        diff = new.get(key, 0) - old.get(key, 0)
        if diff:
            out[key] = diff
    return out


def _surge_room(new: WorkloadUsage, old: WorkloadUsage) -> dict[str, int]:
    """Extra room a rollout needs: surge × new pod, for parts whose template changed."""
    before = {p.name: p.template for p in old.parts}
    extra: dict[str, int] = {}
    for part in new.parts:
        if part.surge and part.name in before and before[part.name] != part.template:
            for key, value in part.per_pod:
                extra[key] = extra.get(key, 0) + value * part.surge
    return extra


def _detail(key: str, parts: tuple[PartUsage, ...]) -> str:
    shown = []
    for part in parts:
        for k, v in part.per_pod:
            if k == key and part.replicas:
                shown.append(f"{part.replicas} × {part.name} {qty(key, v)}")
    return " + ".join(shown)


def _check(
    policy: CompiledPolicy,
    group: CompiledGroup,
    delta: Mapping[str, int],
    extra: Mapping[str, int],
    new: WorkloadUsage,
    is_update: bool,
    source: UsageSource,
) -> tuple[list[Violation], list[str]]:
    violations: list[Violation] = []
    warnings: list[str] = []
    hard_of = group.hard
    carved_of = group.carved
    used = source.used(group.name)
    warn_at = policy.settings.warn_at
    warn_num, warn_den = warn_at.numerator, warn_at.denominator
    needs = delta
    if extra:
        needs = dict(delta)
        for key, value in extra.items():
            needs[key] = needs.get(key, 0) + value
    for key, need in needs.items():
        if need <= 0:
            continue
        hard = hard_of.get(key)
        if hard is None:
            continue
        own = used.get(key, 0)
        carved = carved_of.get(key, 0)
        after = own + carved + need
        if after > hard:
            detail = _detail(key, new.parts)
            if is_update:
                detail = f"+{qty(key, need)} to {detail}" if detail else ""
            violations.append(Violation(key, need, own, carved, hard, detail))
        elif after * warn_den >= hard * warn_num:
            percent = after * 100 // hard if hard else 100
            warnings.append(clip(f"{group.name} at {percent}% of {key} ({qty(key, after)} of {qty(key, hard)})"))
    for key, budget in group.cash.items():
        if delta.get(key, 0) <= 0 and extra.get(key, 0) <= 0:
            continue
        spent = source.cash_used(group.name).get(key, 0)
        period = budget.period or "lifetime"
        if spent >= budget.budget:
            violations.append(Violation(key, delta.get(key, 0), spent, 0, budget.budget, "", period))
        elif spent * warn_at.denominator >= budget.budget * warn_at.numerator:
            warnings.append(
                clip(f"{group.name} has spent {hours(spent)} of {hours(budget.budget)} cash {key} per {period}")
            )
    return violations, warnings


def _scale(
    policy: CompiledPolicy,
    scale: Mapping[str, Any],
    old_scale: Mapping[str, Any] | None,
    source: UsageSource,
    parent: Mapping[str, Any] | None,
) -> Decision:
    name = _name(scale)
    if parent is None:
        return Decision(False, "UPDATE", reason="scale-parent-missing",
                        error=f"cannot find the workload {name} being scaled; "
                        "denied so that quota cannot be evaded, retry shortly")
    rule = policy.rule_for(parent)
    if rule is None:
        return Decision(True, "UPDATE", reason="no-rule", notes=["no kind rule for the scaled kind"])
    replicas = _int_field(scale, ("spec", "replicas"), "Scale spec.replicas")
    if rule.scale_path is None:
        return Decision(True, "UPDATE", reason="no-rule",
                        notes=[f"kind rule {rule.kind} names no scale path; not charged"])
    scaled = rule.with_replicas(parent, replicas)
    decision = _workload(policy, scaled, "UPDATE", parent, source)
    decision.notes.append(f"scale of {rule.kind} {name} to {replicas} replicas")
    return decision


def _hpa(
    policy: CompiledPolicy, hpa: Mapping[str, Any], source: UsageSource, target: Mapping[str, Any] | None
) -> Decision:
    if target is None:
        return Decision(True, "CREATE", reason="hpa-target-missing",
                        warnings=[clip(f"HPA {_name(hpa)}: target not found, maxReplicas not checked")])
    rule = policy.rule_for(target)
    if rule is None or rule.scale_path is None:
        return Decision(True, "CREATE", reason="no-rule", notes=["HPA target kind is not charged"])
    max_replicas = _int_field(hpa, ("spec", "maxReplicas"), "HPA spec.maxReplicas")
    at_max = rule.with_replicas(target, max_replicas)
    decision = _workload(policy, at_max, "UPDATE", target, source, check_only=True)
    decision.charges = {}
    decision.notes.append(f"HPA maxReplicas {max_replicas}: room is checked, nothing is charged")
    return decision


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
    return "<unnamed>"


def _int_field(obj: Mapping[str, Any], path: tuple[str, ...], what: str) -> int:
    node: Any = obj
    for segment in path:
        node = node.get(segment) if isinstance(node, Mapping) else None
    if node is None:
        return 0
    if isinstance(node, bool) or not isinstance(node, int):
        raise InputError(f"{what} is {node!r}, not an integer")
    return node
