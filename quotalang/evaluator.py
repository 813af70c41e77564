"""Decide one admission request against a compiled policy (stage 4 of 4).

Pure: the usage it checks against comes in through `UsageSource` (a snapshot
in CI, the ledger in the webhook), and what it decides goes out in a
`Decision` that says what the caller's store records (`stored`, `reservation`,
`reserves`). It reads the compiled policy's types (`quotalang.policy`), never
the compile stage. A workload in group G is
checked against G alone: for each key G limits,
`used + reserved + Σ children hard + delta ≤ hard`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from quotalang.decision import Decision, Reason, Violation, clip, qty
from quotalang.errors import InputError
from quotalang.objects import labels_of, name_of
from quotalang.policy import CompiledGroup, CompiledPolicy
from quotalang.quantity import QuantityError, parse_quantity
from quotalang.units import format_hours, hours_to_nanos
from quotalang.usage import PartUsage, WorkloadUsage, usage_of, workload_usage

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
    try:
        return hours_to_nanos(str(value).strip().removesuffix("h"))
    except ValueError:
        raise InputError(f"cash of {group}/{key}: {value!r} is not a number of hours") from None


EMPTY_SNAPSHOT = Snapshot({}, {})


def _source(usage: UsageSource | Mapping[str, Any] | None) -> UsageSource:
    if usage is None:
        return EMPTY_SNAPSHOT
    if isinstance(usage, Mapping):
        return Snapshot.parse(usage)
    return usage


def resolve_group(policy: CompiledPolicy, obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(group, None) or (None, why-not); (None, None) means unlabelled and allowed."""
    group, _, problem = _resolve(policy, obj)
    return group, problem


def _resolve(policy: CompiledPolicy, obj: Mapping[str, Any]) -> tuple[str | None, Reason | None, str | None]:
    """(group, None, None), or (None, reason, why-not) when no group is charged; why-not is None when allowed."""
    settings = policy.settings
    name = labels_of(obj).get(settings.group_label)
    if name is None:
        if settings.unlabelled == "group":
            return settings.unlabelled_group, None, None
        if settings.unlabelled == "deny":
            return None, "unlabelled", (
                f"workload has no label {settings.group_label}; "
                "label it with the quota group it belongs to"
            )
        return None, "unlabelled", None
    if name in policy.groups:
        return str(name), None, None
    near = policy.near_groups(str(name))
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return None, "unknown-group", f"unknown quota group {name!r} in label {settings.group_label}{hint}"


def evaluate(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    usage: UsageSource | Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> Decision:
    """Decide CREATE/UPDATE of a workload, a `Scale`, or an HPA.

    `parent` is the stored workload a `Scale` or HPA refers to; the caller
    finds it (ledger, cache, live GET). A `dry_run` is decided the same way
    and marked so that nothing is reserved for it. Raises `InputError` for
    objects that cannot be read.
    """
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise InputError("the object is not a mapping")
    op = operation.upper()
    if op not in ("CREATE", "UPDATE"):
        return Decision(True, op, reason="not-intercepted", dry_run=dry_run)
    source = _source(usage)
    kind = obj.get("kind")
    if kind == "Scale":
        return _scale(policy, obj, source, parent, dry_run)
    if kind == "HorizontalPodAutoscaler" and str(obj.get("apiVersion", "")).startswith("autoscaling/"):
        return _hpa(policy, obj, source, parent, dry_run)
    return _workload(policy, obj, op, old if op == "UPDATE" else None, source, dry_run)


def _workload(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    op: str,
    old: Mapping[str, Any] | None,
    source: UsageSource,
    dry_run: bool,
    *,
    check_only: bool = False,
    note: str | None = None,
) -> Decision:
    """Decide a workload (for a Scale, its scaled parent; for an HPA, its target at maxReplicas).

    `check_only` (an HPA) checks room and charges nothing, and stores nothing;
    `note` closes the explanation.
    """
    stored = None if check_only else obj
    rule = policy.rule_for(obj)
    if rule is None:
        return Decision(True, op, reason="no-rule", notes=_notes(["no kind rule matches; not charged"], note),
                        stored=stored, dry_run=dry_run)
    owner = charged_owner(policy, obj)
    if owner is not None:
        return Decision(True, op, reason="owned",
                        notes=_notes([f"controlled by {owner}, which is charged for it"], note),
                        stored=stored, dry_run=dry_run)
    new = usage_of(policy, rule, obj)
    group_name, why, problem = _resolve(policy, obj)
    if group_name is None:
        assert why is not None
        if problem is None:
            return Decision(True, op, reason=why, total=new.total, parts=new.parts,
                            notes=_notes(["unlabelled and the policy allows it; not charged"], note),
                            stored=stored, dry_run=dry_run)
        return Decision(False, op, reason=why, total=new.total, parts=new.parts, notes=_notes([], note),
                        error=problem, stored=stored, dry_run=dry_run)
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
    denied = bool(violations) and group.mode == "enforce"
    if denied or check_only:
        charges = {}
    elif delta:
        charges[group_name] = delta
    if violations and group.mode == "warn":
        warnings = [clip(f"{group.name}: {v.describe()}") for v in violations] + warnings
    return Decision(
        allowed=not denied,
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
        notes=_notes(notes, note),
        stored=stored,
        dry_run=dry_run,
    )


def _notes(notes: list[str], last: str | None) -> list[str]:
    if last is not None:
        notes.append(last)
    return notes


def charged_owner(policy: CompiledPolicy, obj: Mapping[str, Any]) -> str | None:
    """The controlling owner that a kind rule already charges, if any.

    A Deployment's ReplicaSet and pods, a CronJob's Jobs, a TFJob's pods: the
    owner paid for them at admission, so charging them again would count the
    same pods twice (and deny them under `unlabelled deny`). Pods of an owner
    no rule covers are charged themselves.
    """
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if type(meta) is dict or isinstance(meta, Mapping) else None
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
                clip(f"{group.name} has spent {format_hours(spent)} of {format_hours(budget.budget)} "
                     f"cash {key} per {period}")
            )
    return violations, warnings


def _scale(
    policy: CompiledPolicy,
    scale: Mapping[str, Any],
    source: UsageSource,
    parent: Mapping[str, Any] | None,
    dry_run: bool,
) -> Decision:
    """A `/scale` UPDATE: decided as an UPDATE of the parent to the scaled parent.

    The one place a Scale's stored body is built: `Decision.stored` carries it
    to the ledger stores and to `quotalang test`'s chain.
    """
    name = name_of(scale)
    if parent is None:
        return Decision(False, "UPDATE", reason="scale-parent-missing",
                        error=f"cannot find the workload {name} being scaled; "
                        "denied so that quota cannot be evaded, retry shortly", dry_run=dry_run)
    rule = policy.rule_for(parent)
    if rule is None:
        return Decision(True, "UPDATE", reason="no-rule", notes=["no kind rule for the scaled kind"], dry_run=dry_run)
    replicas = _int_field(scale, ("spec", "replicas"), "Scale spec.replicas")
    if rule.scale_path is None:
        return Decision(True, "UPDATE", reason="no-rule",
                        notes=[f"kind rule {rule.kind} names no scale path; not charged"], dry_run=dry_run)
    scaled = rule.with_replicas(parent, replicas)
    return _workload(policy, scaled, "UPDATE", parent, source, dry_run,
                     note=f"scale of {rule.kind} {name} to {replicas} replicas")


def _hpa(
    policy: CompiledPolicy,
    hpa: Mapping[str, Any],
    source: UsageSource,
    target: Mapping[str, Any] | None,
    dry_run: bool,
) -> Decision:
    """An HPA: its target at maxReplicas must fit; checked, never charged, nothing stored."""
    if target is None:
        return Decision(True, "CREATE", reason="hpa-target-missing",
                        warnings=[clip(f"HPA {name_of(hpa)}: target not found, maxReplicas not checked")],
                        dry_run=dry_run)
    rule = policy.rule_for(target)
    if rule is None or rule.scale_path is None:
        return Decision(True, "CREATE", reason="no-rule", notes=["HPA target kind is not charged"], dry_run=dry_run)
    max_replicas = _int_field(hpa, ("spec", "maxReplicas"), "HPA spec.maxReplicas")
    at_max = rule.with_replicas(target, max_replicas)
    return _workload(policy, at_max, "UPDATE", target, source, dry_run, check_only=True,
                     note=f"HPA maxReplicas {max_replicas}: room is checked, nothing is charged")


def _int_field(obj: Mapping[str, Any], path: tuple[str, ...], what: str) -> int:
    node: Any = obj
    for segment in path:
        node = node.get(segment) if isinstance(node, Mapping) else None
    if node is None:
        return 0
    if isinstance(node, bool) or not isinstance(node, int):
        raise InputError(f"{what} is {node!r}, not an integer")
    return node
