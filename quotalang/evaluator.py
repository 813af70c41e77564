"""Decide one admission request against a compiled policy (stage 4 of 4).

Pure: the usage it checks against comes in through `UsageSource` (a snapshot
in CI, the ledger in the webhook), and what it decides goes out in a
`Decision` that says what the caller's store records (`stored`, `reservation`,
`reserves`). It reads the compiled policy's types (`quotalang.policy`), never
the compile stage. A workload in group G is
checked against G alone: for each key G limits,
`used + reserved + Σ children hard + delta ≤ hard`.

Pods are charged as they will be stored: with the namespace's LimitRange
defaults (`limit_ranges`) applied. When G limits cpu or memory (requests or
limits, a model key counting for workloads of that model), every container
must then specify it, as native quota requires (`must specify limits.cpu
for: …`); that is checked only for pods that leave something unset, so the
common case costs one test per part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, NamedTuple

from quotalang import borrowing
from quotalang.decision import MAX_WARNING, Decision, Reason, Term, UsageSource, Violation, clip, qtys
from quotalang.errors import InputError
from quotalang.limitranges import NO_DEFAULTS, ContainerDefaults, LimitRanges, defaults_for
from quotalang.objects import metadata_of, name_of
from quotalang.owners import Find, Owners, claimed_owner, verified_owner
from quotalang.pods import VALIDATION_SET
from quotalang.policy import CompiledGroup, CompiledPolicy
from quotalang.quantity import QuantityError, parse_quantity
from quotalang.reclaimable import Borrower, Priorities, Reclaim, choose, reclaim_of, without
from quotalang.resources import model_kind, split_key
from quotalang.units import format_hours, hours_to_nanos
from quotalang.usage import Measured, PartUsage, WorkloadUsage, usage_of, workload_usage

_EMPTY: Mapping[str, int] = {}


class Snapshot:
    """A usage snapshot `{group: {key: quantity, "cash": {key: "950h"}, "workloads": [...]}}`.

    `workloads` (optional; the rows of `/api/groups/NAME`'s `workloads`, of
    which `namespace` is needed and `kind`, `name`, `cluster` are shown) lets
    `diff` say which workloads a change of namespace bindings strands.
    """

    __slots__ = ("_cash", "_used", "_workloads")

    def __init__(self, used: dict[str, dict[str, int]], cash: dict[str, dict[str, int]],
                 workloads: dict[str, tuple[WorkloadRow, ...]] | None = None):
        self._used = used
        self._cash = cash
        self._workloads = workloads or {}

    def workloads(self, group: str) -> tuple[WorkloadRow, ...]:
        return self._workloads.get(group, ())

    def used(self, group: str) -> Mapping[str, int]:
        return self._used.get(group, _EMPTY)

    def cash_used(self, group: str) -> Mapping[str, int]:
        return self._cash.get(group, _EMPTY)

    def groups(self) -> frozenset[str]:
        """Every group the snapshot names (for `tree --usage` to refuse one the policy lacks)."""
        return frozenset(self._used) | frozenset(self._cash)

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> Snapshot:
        """Parse a snapshot; raise `InputError` naming the bad entry."""
        used: dict[str, dict[str, int]] = {}
        cash: dict[str, dict[str, int]] = {}
        workloads: dict[str, tuple[WorkloadRow, ...]] = {}
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
                if key == "workloads":
                    workloads[str(group)] = _workload_rows(group, value)
                    continue
                try:
                    used.setdefault(str(group), {})[str(key)] = parse_quantity(str(value)).nanos
                except QuantityError as exc:
                    raise InputError(f"usage of {group}/{key}: {exc}") from None
        return cls(used, cash, workloads)


class WorkloadRow(NamedTuple):
    """A workload of a usage snapshot: where it runs, and what to call it."""

    namespace: str
    kind: str = ""
    name: str = ""
    cluster: str = ""


def _workload_rows(group: object, value: object) -> tuple[WorkloadRow, ...]:
    if not isinstance(value, list):
        raise InputError(f"workloads of group {group!r} is not a list")
    rows = []
    for index, row in enumerate(value):
        fields = {f: row.get(f, "") for f in WorkloadRow._fields} if isinstance(row, Mapping) else None
        if fields is None or not all(isinstance(v, str) for v in fields.values()) or not fields["namespace"]:
            raise InputError(f"workloads[{index}] of group {group!r} is not a mapping with a namespace (strings)")
        rows.append(WorkloadRow(**fields))
    return tuple(rows)


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


def resolve_group(
    policy: CompiledPolicy, obj: Mapping[str, Any], *, namespace: str | None = None, cluster: str = ""
) -> tuple[str | None, str | None]:
    """(group, None) or (None, why-not); (None, None) means charged to no group and allowed.

    The one group resolver: the evaluator and the stores (which pick the
    ledger object by it) must agree. `namespace` is the review's (the object's
    own, else `default`, when not given); `cluster` the review's cluster.
    """
    where = _namespace(obj, None) if namespace is None else namespace
    group, _, problem, _ = _resolve(policy, obj, where, cluster)
    return group, problem


# (group, reason, why-not, finding): a group is charged, or `reason` says why none is (`why-not`
# set when that is a denial); `finding` is a binding that would deny in enforce mode (the group's
# mode is warn or audit, so it is charged and warned or recorded)
_Resolved = tuple[str | None, Reason | None, str | None, str | None]


# A label value's and a namespace's longest: the resolution of longer ones is computed each time, not memoized
_MEMO_LEN = 63


def _resolve(policy: CompiledPolicy, obj: Mapping[str, Any], namespace: str, cluster: str) -> _Resolved:
    """`_resolution` of the object's group label, memoized on the policy (it depends on nothing else):
    a decision costs a dict lookup, not a walk of the namespace patterns (issue 26's no-measurable-cost)."""
    settings = policy.settings
    name = metadata_of(obj, settings.group_source).get(settings.group_label)
    if (name is None or (type(name) is str and len(name) <= _MEMO_LEN)) and (
        type(namespace) is str and len(namespace) <= _MEMO_LEN and type(cluster) is str and len(cluster) <= _MEMO_LEN
    ):
        key = (name, namespace, cluster)
        found: _Resolved | None = policy.resolved.get(key)
        if found is None:
            found = policy.resolved.put(key, _resolution(policy, name, namespace, cluster))
        return found
    return _resolution(policy, name, namespace, cluster)


def _resolution(policy: CompiledPolicy, name: object, namespace: str, cluster: str) -> _Resolved:
    """The group a workload labelled `name` (None: unlabelled) in `namespace` of `cluster` charges."""
    settings = policy.settings
    bindings = policy.bindings
    if name is None:
        default = bindings.default_group(namespace, cluster) if bindings is not None else None
        if default is not None:
            return default, None, None, None
        if bindings is not None and not bindings.is_bound(namespace, cluster):
            return _outside(policy, namespace, cluster)
        if settings.unlabelled == "deny":
            return None, "unlabelled", (
                f"workload has no {settings.group_source} {settings.group_label}; "
                "label it with the quota group it belongs to"
            ), None
        if settings.unlabelled != "group" or settings.unlabelled_group is None:
            return None, "unlabelled", None, None
        name = settings.unlabelled_group
    elif name not in policy.groups:
        if bindings is not None and not bindings.is_bound(namespace, cluster):
            return _outside(policy, namespace, cluster)
        near = policy.near_groups(str(name))
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        where = f"{settings.group_source} {settings.group_label}"
        return None, "unknown-group", f"unknown quota group {name!r} in {where}{hint}", None
    group = str(name)
    if bindings is None or bindings.allows(group, namespace, cluster):
        return group, None, None, None
    if not bindings.is_bound(namespace, cluster):
        return _outside(policy, namespace, cluster)
    problem = _not_bound(policy, group, namespace, cluster)
    if policy.groups[group].mode == "enforce":
        return None, "not-bound", problem, None
    return group, None, None, problem


def _shown(namespace: str, cluster: str) -> str:
    return f"{cluster}/{namespace}" if cluster else namespace


def _outside(policy: CompiledPolicy, namespace: str, cluster: str) -> _Resolved:
    """A namespace no group binds: outside quota, unless `unbound namespaces deny`."""
    if policy.settings.unbound != "deny":
        return None, "outside-quota", None, None
    shown = _shown(namespace, cluster)
    return None, "unbound-namespace", (
        f"namespace {shown} is bound to no quota group and the policy denies such namespaces "
        f'(unbound namespaces deny); bind it in a group: namespaces "{namespace}"'
    ), None


def _not_bound(policy: CompiledPolicy, group: str, namespace: str, cluster: str) -> str:
    """`namespace vision-dev may not charge quota group root/ai/llm (it binds "llm", "llm-*"); ...`."""
    assert policy.bindings is not None
    patterns = policy.bindings.allowed.get(group, ())
    binds = f"it binds {', '.join(f'{chr(34)}{p.text}{chr(34)}' for p in patterns)}" if patterns else (
        "neither it nor its parents bind any namespace"
    )
    shown = _shown(namespace, cluster)
    other = policy.bindings.bound_group(namespace, cluster)
    hint = f"; {shown} is bound to group {policy.groups[other].path}" if other is not None else ""
    return f"namespace {shown} may not charge quota group {policy.groups[group].path} ({binds}){hint}"


def evaluate(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    usage: UsageSource | Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    limit_ranges: LimitRanges | None = None,
    *,
    namespace: str | None = None,
    cluster: str = "",
    owners: Find | None = None,
    priorities: Priorities | None = None,
    refused: str | None = None,
    old_usage: Measured | None = None,
) -> Decision:
    """Decide CREATE/UPDATE of a workload, a `Scale`, or an HPA.

    `parent` is the stored workload a `Scale` or HPA refers to; the caller
    finds it (ledger, cache, live GET). A `dry_run` is decided the same way
    and marked so that nothing is reserved for it. `limit_ranges` gives each
    namespace's LimitRange objects (a mapping or a function of the
    namespace); their container defaults apply to every pod template first.
    `namespace` is the review's (default: the object's, else its parent's,
    else `default`) and `cluster` the review's cluster: the namespace bindings
    are checked against them. `owners` finds a claimed controller owner's
    stored body (the ledger): an object is then its owner's to charge only if
    the owner is known with the uid the reference names (`owners.
    verified_owner`); without it (CI, no ledger) the kind rules' `creates`
    alone decide (`claimed_owner`). `refused`: the caller's finding that the
    request's user may not charge the workload's group (`authorize users`; the
    server asks the apiserver): denied, or in warn/audit mode said.
    `old_usage`: the usage of `old` (of a Scale's or HPA's `parent`) as an
    earlier decision measured it (`Decision.measured`), used only under the
    same policy and defaults.
    Raises `InputError` for objects that cannot be read: a negative or
    malformed quantity, a `resources` that is not a mapping, a bad replica
    count, an invalid LimitRange.
    """
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise InputError("the object is not a mapping")
    op = operation.upper()
    if op not in ("CREATE", "UPDATE"):
        return Decision(True, op, reason="not-intercepted", dry_run=dry_run)
    source = _source(usage)
    kind = obj.get("kind")
    where = _Where(_namespace(obj, parent) if namespace is None else namespace, cluster, owners, priorities,
                   refused, old_usage)
    defaults = NO_DEFAULTS if limit_ranges is None else defaults_for(limit_ranges, where.namespace)
    if kind == "Scale":
        return _scale(policy, obj, source, parent, dry_run, defaults, where)
    if kind == "HorizontalPodAutoscaler" and str(obj.get("apiVersion", "")).startswith("autoscaling/"):
        return _hpa(policy, obj, source, parent, dry_run, defaults, where)
    return _workload(policy, obj, op, old if op == "UPDATE" else None, source, dry_run, defaults, where)


class _Where(NamedTuple):
    """The review's namespace and cluster, which the namespace bindings are checked against."""

    namespace: str
    cluster: str = ""
    owners: Find | None = None  # the ledger's lookup of a claimed owner (None: the claim alone decides)
    priorities: Priorities | None = None  # PriorityClass values (None: only spec.priority and system classes)
    refused: str | None = None  # `authorize users`: why the request's user may not charge the group
    old_usage: Measured | None = None  # the old object's usage, measured by an earlier decision


_NOWHERE = _Where("default")


def _namespace(obj: Mapping[str, Any], parent: Mapping[str, Any] | None) -> str:
    """The namespace whose LimitRanges apply: the object's, else its parent's, else `default` (as kubectl)."""
    for node in (obj, parent):
        meta = node.get("metadata") if node is not None else None
        namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
        if isinstance(namespace, str) and namespace:
            return namespace
    return "default"


def _workload(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    op: str,
    old: Mapping[str, Any] | None,
    source: UsageSource,
    dry_run: bool,
    defaults: ContainerDefaults = NO_DEFAULTS,
    where: _Where = _NOWHERE,
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
    owners = where.owners
    if type(owners) is Owners and owners.answers(policy, obj):  # the engine's, claimed and verified once
        owner = owners.claim
        unverified = owner is not None and owners.verified is None
    else:
        owner = claimed_owner(policy, obj)
        unverified = owner is not None and owners is not None and verified_owner(policy, obj, owners) is None
    if owner is not None and not unverified:
        return Decision(True, op, reason="owned",
                        notes=_notes([f"controlled by {owner}, which is charged for it"], note),
                        stored=stored, dry_run=dry_run)
    new = usage_of(policy, rule, obj, defaults)
    group_name, why, problem, finding = _resolve(policy, obj, where.namespace, where.cluster)
    if group_name is None:
        assert why is not None
        if problem is None:
            said = _UNCHARGED[why].format(namespace=_shown(where.namespace, where.cluster))
            return Decision(True, op, reason=why, total=new.total, parts=new.parts,
                            notes=_notes([said], note), stored=stored, dry_run=dry_run)
        return Decision(False, op, reason=why, total=new.total, parts=new.parts, notes=_notes([], note),
                        error=problem, stored=stored, dry_run=dry_run)
    group = policy.groups[group_name]
    charges: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    if unverified:
        assert owner is not None
        notes.append(f"names {owner} as its controller, which is not known with uid {owner.uid}; charged as itself")
    findings: list[str] = []
    extra: dict[str, int] = {}
    rolling: tuple[PartUsage, ...] = ()
    if finding is not None:
        findings.append(finding)
    if where.refused is not None:
        if group.mode == "enforce":
            return Decision(False, op, group=group_name, path=group.path, mode=group.mode, reason="not-authorized",
                            total=new.total, parts=new.parts, notes=_notes([], note), error=where.refused,
                            stored=stored, dry_run=dry_run)
        findings.append(where.refused)
    wrong_model = _model_problem(policy, group, new.parts)
    if wrong_model is not None:
        if group.mode == "enforce":
            return Decision(False, op, group=group_name, path=group.path, mode=group.mode, reason=wrong_model[0],
                            total=new.total, parts=new.parts, notes=_notes([], note), error=wrong_model[1],
                            stored=stored, dry_run=dry_run)
        findings.append(wrong_model[1])
    unset = _must_specify(policy, group, new.parts)
    if unset is not None and group.mode == "enforce":
        return Decision(False, op, group=group_name, path=group.path, mode=group.mode, reason="must-specify",
                        total=new.total, parts=new.parts, notes=_notes([], note), error=unset, stored=stored,
                        dry_run=dry_run)
    if old is not None and old == obj:
        # a resent review of what is recorded: the same object in the same group, so nothing changes (no
        # delta, no rollout); its usage is read once
        delta = {}
    elif old is not None:
        known = where.old_usage.under(policy, defaults) if where.old_usage is not None else None
        try:
            old_usage = known if known is not None else workload_usage(policy, old, defaults)
        except InputError:  # stored before it was checked: charge the new object in full (over, never under)
            old_usage = WorkloadUsage(rule, (), {})
            notes.append("the stored object cannot be read; the new one is charged in full")
        old_group, _, _, _ = _resolve(policy, old, where.namespace, where.cluster)
        if old_group == group_name:
            delta = _subtract(new.total, old_usage.total)
            rolling = _rolling_out(new, old_usage)
            extra = _surge_room(rolling)
            if extra:
                notes.append("rollout: room for surge pods is checked, not charged")
        else:
            delta = dict(new.total)
            if old_group is not None and old_usage.total:
                charges[old_group] = {k: -v for k, v in old_usage.total.items()}
                notes.append(f"moves from group {policy.groups[old_group].path}: released there")
    else:
        delta = dict(new.total)
    violations, warnings = _check(policy, group, delta, extra, rolling, new, old is not None, source)
    balanced = _balances(policy, group, delta, extra, rolling, new, old is not None, source, violations)
    lent, reclaims = balanced if balanced is not None else (None, ())
    reclaim = None
    if lent is not None and lent.borrowed:
        reclaim = _reclaimable(policy, group, lent, new, delta, source, where, violations)
    if unset is not None:  # warn or audit mode: allowed, and said
        findings.append(unset)
    if findings:  # only ever in warn or audit mode: allowed, and said
        if group.mode == "warn":
            warnings[:0] = [clip(f"{group.name}: {f}") for f in findings]
        notes.extend(findings)
    denied = bool(violations) and group.mode == "enforce"
    if denied:  # the threshold warnings were computed as if it had been admitted
        warnings = []
    if denied or check_only:
        charges = {}
    elif delta:
        charges[group_name] = delta
    if violations and group.mode == "warn":
        warnings = [_warning(group.name, v) for v in violations] + warnings
    recorded = lent is not None and not denied and not check_only
    touches, borrowed = (lent.touches, lent.borrowed) if lent is not None and recorded else ((), ())
    for draw in borrowed:
        said = draw.describe(policy.groups[draw.group].path, qtys(draw.key, draw.amount)[0])
        notes.append(said)
        warnings.append(clip(f"{group.name} {said}"))
    reclaims = reclaims if recorded else ()
    for borrower in reclaims:
        said = _reclaims_text(policy, borrower)
        notes.append(said)
        warnings.append(clip(f"{group.name} {said}"))
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
        findings=findings,
        touches=touches,
        borrowed=borrowed,
        reclaim=reclaim if borrowed else None,
        reclaims=reclaims,
        measured=None if check_only else Measured(policy, defaults, new),
    )


_UNCHARGED: dict[Reason, str] = {
    "unlabelled": "unlabelled and the policy allows it; not charged",
    "outside-quota": "namespace {namespace} is bound to no quota group: outside quota, not charged",
}


def _model_problem(
    policy: CompiledPolicy, group: CompiledGroup, parts: tuple[PartUsage, ...]
) -> tuple[Reason, str] | None:
    """(reason, message) for the first part whose model claim is refused in `group`, else None.

    An unpinned template is refused only where the group limits a model key of
    that kind and the part's pods request that resource (`must pin`, as
    native quota's `must specify`); an undeclared or conflicting model always.
    """
    for part in parts:
        if not part.model_problems or not part.replicas:
            continue
        for problem in part.model_problems:
            if not problem.unpinned:
                return problem.reason, f"part {part.name}: {problem.message}"
            if problem.kind not in group.model_kinds or not _requests(policy, part, problem.kind):
                continue
            gpus = policy.settings.gpu_resources
            keys = [
                k for k in group.hard if (s := split_key(k, gpus)).model and model_kind(s.base, gpus) == problem.kind
            ]
            return problem.reason, (
                f"must pin a {problem.kind} model for: part {part.name} (group {group.path} limits "
                f"{', '.join(keys)}): {problem.message}"
            )
    return None


def _requests(policy: CompiledPolicy, part: PartUsage, kind: str) -> bool:
    """Whether one pod of `part` requests a resource of model kind `kind` (a gpu, cpu, memory)."""
    gpus = policy.settings.gpu_resources
    return any(value > 0 and model_kind(key, gpus) == kind for key, value in part.per_pod)


def _warning(group: str, violation: Violation) -> str:
    """A warn-mode violation as one warning: the breakdown goes first when all of it would not fit."""
    text = f"{group}: {violation.describe()}"
    return text if len(text) <= MAX_WARNING else clip(f"{group}: {violation.describe(detail=False)}")


def _notes(notes: list[str], last: str | None) -> list[str]:
    if last is not None:
        notes.append(last)
    return notes


@lru_cache(maxsize=4096)
def _validation_key(key: str, gpus: frozenset[str]) -> tuple[str, str | None] | None:
    """(generic name, model) of a key in the quota evaluator's validation set (cpu and memory); else None."""
    split = split_key(key, gpus)
    return (split.base, split.model) if split.base in VALIDATION_SET else None


def _required(policy: CompiledPolicy, group: CompiledGroup, part: PartUsage) -> set[str]:
    """The resources every container of `part` must specify in `group`: what the group limits of
    cpu and memory, a model key (`limits.cpu.A4`) counting as its generic key for a part of that model."""
    gpus = policy.settings.gpu_resources
    chosen = {kind: model for kind, model, _ in part.models}
    required = set()
    for key in group.hard:
        found = _validation_key(key, gpus)
        if found is None:
            continue
        base, model = found
        if model is None or chosen.get(model_kind(base, gpus) or "") == model:
            required.add(base)
    return required


_HINT_FIELD = {"cpu": "requests.cpu", "memory": "requests.memory"}


def _must_specify(policy: CompiledPolicy, group: CompiledGroup, parts: tuple[PartUsage, ...]) -> str | None:
    """Kubernetes' `must specify …` for the containers of every part that leave a required resource unset.

    Kubernetes' wording per resource (`must specify limits.cpu for: …`), each
    container named with its part, then the group and a hint.
    """
    missing: dict[str, list[str]] = {}
    for part in parts:
        if not part.unspecified or not part.replicas:
            continue
        required = _required(policy, group, part)
        for resource, containers in part.unspecified:
            if resource in required:
                missing.setdefault(resource, []).extend(f"{c} (part {part.name})" for c in containers)
    if not missing:
        return None
    resources = sorted(missing)
    listed = "; ".join(f"{r} for: {', '.join(missing[r])}" for r in resources)
    fields = sorted({_HINT_FIELD.get(r, r) for r in resources})
    return (
        f"must specify {listed} (group {group.path} limits {', '.join(resources)}: set "
        f"resources.{', resources.'.join(fields)} on every container and init container, "
        "or add a LimitRange default to the namespace)"
    )


def _subtract(new: Mapping[str, int], old: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for key in new.keys() | old.keys():
        diff = new.get(key, 0) - old.get(key, 0)
        if diff:
            out[key] = diff
    return out


def _rolling_out(new: WorkloadUsage, old: WorkloadUsage) -> tuple[PartUsage, ...]:
    """The parts an UPDATE rolls out: a surge in their kind rule and a changed pod template."""
    before = {p.name: p.template for p in old.parts}
    return tuple(p for p in new.parts if p.surge and p.name in before and before[p.name] != p.template)


def _surge_room(rolling: tuple[PartUsage, ...]) -> dict[str, int]:
    """Extra room a rollout needs: surge × new pod, for each part it rolls out."""
    extra: dict[str, int] = {}
    for part in rolling:
        for key, value in part.per_pod:
            extra[key] = extra.get(key, 0) + value * part.surge
    return extra


def _terms(key: str, parts: tuple[PartUsage, ...], surge: bool = False) -> tuple[Term, ...]:
    """(pods, part, one pod's `key`) of each part charging `key`: its replicas, or its surge pods."""
    shown = []
    for part in parts:
        pods = part.surge if surge else part.replicas
        for k, v in part.per_pod:
            if k == key and pods:
                shown.append((pods, part.name, v))
    return tuple(shown)


def _check(
    policy: CompiledPolicy,
    group: CompiledGroup,
    delta: Mapping[str, int],
    extra: Mapping[str, int],
    rolling: tuple[PartUsage, ...],
    new: WorkloadUsage,
    is_update: bool,
    source: UsageSource,
) -> tuple[list[Violation], list[str]]:
    violations: list[Violation] = []
    warnings: list[str] = []
    if not delta and not extra:  # a request that adds nothing (a resent one) can neither exceed nor near a limit
        return violations, warnings
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
        if after > hard:  # only now are the figures of the message gathered
            terms = _terms(key, new.parts)
            surge = _terms(key, rolling, surge=True) if extra.get(key) else ()
            added = delta.get(key, 0) if is_update else None
            violations.append(Violation(key, need, own, carved, hard, "", None, terms, added, surge))
        elif not carved:
            if after * warn_den >= hard * warn_num:
                warnings.append(_near(f"{group.name} at", key, after, hard))
        else:  # what is carved is configuration, not use: own use against own room, the subtree's against hard
            mine = own + need
            room = hard - carved
            if mine * warn_den >= room * warn_num:
                warnings.append(_near(f"{group.name} at", key, mine, room, " of its own share"))
            if after * warn_den >= hard * warn_num or not group.subtree_enforced:
                subtree = mine + _below(policy, group, key, source.used)
                if subtree * warn_den >= hard * warn_num:
                    warnings.append(_near(f"{group.name} with its subgroups at", key, subtree, hard))
    cash_carved = group.cash_carved
    for key, budget in group.cash.items():
        if delta.get(key, 0) <= 0 and extra.get(key, 0) <= 0:
            continue
        spent = source.cash_used(group.name).get(key, 0)
        carved = cash_carved.get(key, 0)  # the children's budgets: the group's own share is the rest
        period = budget.period or "lifetime"
        share = budget.budget - carved
        if spent >= share:
            violations.append(Violation(key, delta.get(key, 0), spent, carved, budget.budget, "", period))
            continue
        if spent and spent * warn_den >= share * warn_num:
            of = f"{format_hours(share)} (own share)" if carved else format_hours(budget.budget)
            warnings.append(clip(f"{group.name} has spent {format_hours(spent)} of {of} cash {key} per {period}"))
        if carved:
            subtree = spent + _below(policy, group, key, source.cash_used)
            if subtree * warn_den >= budget.budget * warn_num:
                warnings.append(clip(
                    f"{group.name} with its subgroups has spent {format_hours(subtree)} of "
                    f"{format_hours(budget.budget)} cash {key} per {period}"
                ))
    return violations, warnings


def _near(who: str, key: str, used: int, room: int, of: str = "") -> str:
    """`ai at 90% of requests.cpu (54 of 60)`: a threshold warning, figures in one unit."""
    percent = used * 100 // room if room else 100
    shown, limit = qtys(key, used, room)
    return clip(f"{who} {percent}%{of} of {key} ({shown} of {limit})")


def _below(
    policy: CompiledPolicy, group: CompiledGroup, key: str, used: Callable[[str], Mapping[str, int]]
) -> int:
    """What `group`'s descendants use of `key` (`used` is the source's usage or cash of one group).

    Walks the subtree: only asked when a warning may be due for a group with children.
    """
    total = 0
    stack = list(group.children)
    groups = policy.groups
    while stack:
        name = stack.pop()
        total += used(name).get(key, 0)
        stack.extend(groups[name].children)
    return total


def _balances(
    policy: CompiledPolicy,
    group: CompiledGroup,
    delta: Mapping[str, int],
    extra: Mapping[str, int],
    rolling: tuple[PartUsage, ...],
    new: WorkloadUsage,
    is_update: bool,
    source: UsageSource,
    violations: list[Violation],
) -> tuple[borrowing.Check, tuple[Borrower, ...]] | None:
    """Where the group or a child lends or borrows (issue 29), the balance rule replaces the carved one.

    `violations` (from `_check`, in place) keeps its cash entries; a key the
    balance rule admits loses its carved violation, and a key it refuses at
    the group or at an ancestor gains one that says where. None (and
    `violations` untouched) when neither the group nor a child lends or
    borrows: then the carved rule is the balance rule, at no extra cost.
    """
    lending = policy.lending
    if not lending or not (lending.moves(group.name) or any(lending.moves(c) for c in group.children)):
        return None
    needs = dict(delta)
    for key, value in extra.items():
        needs[key] = needs.get(key, 0) + value
    borrowers: Sequence[Borrower] = getattr(source, "borrowers", tuple)()  # an in-process store's records
    used_now = without(source.used, (b for b in borrowers if b.reclaiming))  # those being reclaimed: as gone
    result = borrowing.check(policy.groups, lending, used_now, group.name, needs)
    chosen: tuple[Borrower, ...] = ()
    if not result.fits and borrowers and _within_hard(group, needs, used_now(group.name)):
        found = choose(policy.groups, lending, used_now, group.name, needs, borrowers,
                       policy.settings.reclaim_delete)
        if found is not None:  # a lender taking its lendable part back: admitted, and they are reclaimed
            chosen = found
            result = borrowing.check(policy.groups, lending, without(used_now, chosen), group.name, needs)
    short: dict[str, borrowing.Short] = {}
    for where in result.short:  # the nearest place a key fails is the one to name
        short.setdefault(where.key, where)
    kept = [v for v in violations if v.cash_period is not None or v.resource in short]
    carved_refused = {v.resource for v in kept}
    used = source.used(group.name)
    for key, where in short.items():
        said = _short_text(policy, group, where) + _borrowed_by(policy, borrowers, where)
        if key in carved_refused:
            index = next(i for i, v in enumerate(kept) if v.resource == key and v.cash_period is None)
            kept[index] = replace(kept[index], beyond=said)
            continue
        surge = _terms(key, rolling, surge=True) if extra.get(key) else ()
        kept.append(Violation(key, needs[key], used.get(key, 0), group.carved.get(key, 0), group.hard[key], "",
                              None, _terms(key, new.parts), delta.get(key, 0) if is_update else None, surge,
                              said))
    violations[:] = kept
    return result, chosen


def _reclaims_text(policy: CompiledPolicy, borrower: Borrower) -> str:
    """`reclaims default/job-b (4 of requests.nvidia.com/gpu.A100 borrowed by root/ai/vision)`."""
    drawn: dict[str, int] = {}
    for draw in borrower.draws:
        drawn[draw.key] = drawn.get(draw.key, 0) + draw.amount
    what = ", ".join(f"{qtys(key, amount)[0]} of {key}" for key, amount in drawn.items())
    return f"reclaims {borrower.name} ({what} borrowed by {policy.groups[borrower.group].path})"


def _within_hard(group: CompiledGroup, needs: Mapping[str, int], used: Mapping[str, int]) -> bool:
    """Whether `needs` fits `group`'s own hard limits, carved as without lending: only then may it reclaim."""
    return all(used.get(key, 0) + group.carved.get(key, 0) + need <= group.hard[key]
               for key, need in needs.items() if need > 0 and key in group.hard)


def _borrowed_by(policy: CompiledPolicy, borrowers: Sequence[Borrower], short: borrowing.Short) -> str:
    """`; borrowed there by default/job-b (2, root/ai/nlp, not reclaimable)`: who holds the room it lacks."""
    named = []
    for borrower in borrowers:
        drawn = sum(d.amount for d in borrower.draws if d.group == short.group and d.key == short.key)
        if drawn and borrower.group in policy.groups:
            how = borrower.reclaim
            state = ("being reclaimed" if borrower.reclaiming else
                     "suspendable" if how.suspend is not None else
                     "deletable with `reclaim by delete`" if how.reclaimable and not policy.settings.reclaim_delete
                     else "deletable" if how.reclaimable else "not reclaimable")
            named.append(f"{borrower.name} ({qtys(short.key, drawn)[0]}, {policy.groups[borrower.group].path}, "
                         f"{state})")
    if not named:
        return ""
    shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    return f"; borrowed there by {shown}"


def _reclaimable(
    policy: CompiledPolicy,
    group: CompiledGroup,
    lent: borrowing.Check,
    new: WorkloadUsage,
    delta: Mapping[str, int],
    source: UsageSource,
    where: _Where,
    violations: list[Violation],
) -> Reclaim:
    """How a borrowing workload would be given back; a key it borrows gains a violation (in place)
    when it cannot be: only reclaimable workloads may borrow (issue 29)."""
    rule = new.rule
    assert rule is not None  # a workload with no rule is never charged, so it never borrows
    reclaim = reclaim_of(rule.suspend_path, (p.template for p in new.parts), policy.settings.borrow_below,
                         where.priorities)
    if reclaim.reclaimable:
        return reclaim
    refused = {v.resource for v in violations if v.cash_period is None}
    why = reclaim.why_not(f"{rule.api_version} {rule.kind}")
    for key in dict.fromkeys(d.key for d in lent.borrowed):
        if key in refused:
            index = next(i for i, v in enumerate(violations) if v.resource == key and v.cash_period is None)
            violations[index] = replace(violations[index], beyond=f"{violations[index].beyond}; {why}")
            continue
        violations.append(Violation(key, delta.get(key, 0), source.used(group.name).get(key, 0),
                                    group.carved.get(key, 0), group.hard[key], "", None, _terms(key, new.parts),
                                    beyond=why))
    return reclaim


def _short_text(policy: CompiledPolicy, group: CompiledGroup, short: borrowing.Short) -> str:
    """`2 short beyond the 3 it may borrow` at the group, `1 short at root/ai, which may borrow 0` above."""
    amount, limit = qtys(short.key, short.floor - short.balance, -short.floor)
    if short.group == group.name:
        return f"{amount} short beyond the {limit} it may borrow"
    return f"{amount} short at {policy.groups[short.group].path}, which may borrow {limit}"


def _scale(
    policy: CompiledPolicy,
    scale: Mapping[str, Any],
    source: UsageSource,
    parent: Mapping[str, Any] | None,
    dry_run: bool,
    defaults: ContainerDefaults = NO_DEFAULTS,
    where: _Where = _NOWHERE,
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
    return _workload(policy, scaled, "UPDATE", parent, source, dry_run, defaults, where,
                     note=f"scale of {rule.kind} {name} to {replicas} replicas")


def _hpa(
    policy: CompiledPolicy,
    hpa: Mapping[str, Any],
    source: UsageSource,
    target: Mapping[str, Any] | None,
    dry_run: bool,
    defaults: ContainerDefaults = NO_DEFAULTS,
    where: _Where = _NOWHERE,
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
    return _workload(policy, at_max, "UPDATE", target, source, dry_run, defaults, where, check_only=True,
                     note=f"HPA maxReplicas {max_replicas}: room is checked, nothing is charged")


def _int_field(obj: Mapping[str, Any], path: tuple[str, ...], what: str) -> int:
    node: Any = obj
    for segment in path:
        node = node.get(segment) if isinstance(node, Mapping) else None
    if node is None:
        return 0
    if isinstance(node, bool) or not isinstance(node, int):
        text = repr(node)
        raise InputError(f"{what} is {text if len(text) <= 60 else text[:59] + '…'}, not an integer")
    if node < 0:
        raise InputError(f"{what} is {node}: must be greater than or equal to 0")
    return node
