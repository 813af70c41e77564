"""The compiled policy: what the compiler produces and everything downstream reads.

Its own module so that the stages point one way (`compiler → policy ←
evaluator, usage, decision`): the evaluator needs these types, never the
compile stage. A `CompiledPolicy` is immutable; what is derived from content
at run time is cached elsewhere (`usage`), and what is derived from the policy
alone is memoized on it, bounded (`memo`): the group a label value resolves to
in a namespace (`resolved`), the models a part's claims and pins name (the
settings' `models_of`).

Limits are integer nano units and cash budgets integer nano-unit-seconds, so a
decision does no parsing. `limit_rows` / `cash_rows` are the one place a
group's hard / carved / used / free numbers are put side by side, for `tree`,
the JSON API, the pages and the metrics alike; `usage_below` is the one place a
subtree's usage is summed (a parent's own usage leaves out what its teams
hold, so the tree's root read 0 GPUs while its teams held 28).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from quotalang import nodes
from quotalang.bindings import Bindings
from quotalang.borrowing import NO_LENDING, Lending
from quotalang.errors import Diagnostic
from quotalang.kinds import CompiledKind
from quotalang.memo import Memo

DEFAULT_GROUP_LABEL = "quotalang.dev/group"
DEFAULT_BORROW_BELOW = 100  # KAI separates preemptible from non-preemptible work at priority 100

Period = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class CashBudget:
    """`amount` unit-hours per period, kept as nano-unit-seconds (exact ints)."""

    key: str
    budget: int
    period: Period | None
    hours: str  # as written, for messages


@dataclass(frozen=True, slots=True)
class CompiledGroup:
    name: str
    parent: str | None
    path: str  # root/ai-lab/nlp
    mode: nodes.Mode  # after inheritance
    # Plain dicts, never mutated after compile: dict.get is the hot path.
    hard: Mapping[str, int]  # key -> nanos
    carved: Mapping[str, int]  # key -> Σ children hard, nanos
    cash: Mapping[str, CashBudget]
    children: tuple[str, ...]
    source: str
    # key -> Σ children's cash budgets (nano-unit-seconds): cash carves like hard limits, so the
    # group's own workloads may spend budget − this (DESIGN "Cash budgets carve the same way")
    cash_carved: Mapping[str, int] = field(default_factory=dict)
    # the model kinds (cpu, gpu, memory) of the model keys it limits: with a node label for one of
    # them, a workload here that requests that resource must pin a declared model
    model_kinds: frozenset[str] = frozenset()
    # every descendant is in enforce mode, so none holds more than its hard (the subtree warning's shortcut)
    subtree_enforced: bool = True


MODEL_KINDS = ("cpu", "gpu", "memory")  # the kinds of model a policy may declare a label or node label for


@dataclass(frozen=True, slots=True)
class Settings:
    group_label: str
    model_labels: Mapping[str, str]  # model kind -> label (or annotation) key
    gpu_resources: frozenset[str]
    unlabelled: str  # allow | deny | group
    unlabelled_group: str | None
    warn_at: Fraction  # 0.9 for 90%
    group_source: nodes.Source = "label"  # where group_label is read: labels or annotations
    # model kind -> where its model label is read: label | annotation (label if absent)
    model_sources: Mapping[str, nodes.Source] = field(default_factory=dict)
    node_labels: Mapping[str, str] = field(default_factory=dict)  # model kind -> the node label pods pin models on
    models: Mapping[str, frozenset[str]] = field(default_factory=dict)  # model kind -> the declared model names
    # model kind -> node label value -> model
    node_values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    unbound: str = "allow"  # a namespace no group binds: allow (outside quota) | deny
    # `borrow below priority N`: a workload whose pods' priority is below it may borrow (it can be
    # preempted); 100 as KAI separates preemptible from non-preemptible work (issue 29)
    borrow_below: int = DEFAULT_BORROW_BELOW
    authorize_users: bool = False  # a CREATE or a group move also needs the user's `use` grant on the group
    # `reclaim by delete`: a lender's request may name borrowers with no suspend rule, to be deleted; without
    # it only suspendable ones are reclaimed (deleting someone's work is the policy's choice, not ours)
    reclaim_delete: bool = False
    # what `models.part_models` found for the claims and pins it read (derived from the settings alone)
    models_of: Memo[Any, Any] = field(init=False, default_factory=Memo, compare=False, repr=False)
    # (model kind, label key, where it is read, node label) of each kind with a label or a node label, in
    # MODEL_KINDS order: what `models._reads` reads of every part, worked out once per policy, not per part
    model_reads: tuple[tuple[str, str | None, nodes.Source, str | None], ...] = field(
        init=False, default=(), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        reads = tuple(
            (kind, self.model_labels.get(kind), self.model_sources.get(kind, "label"), self.node_labels.get(kind))
            for kind in MODEL_KINDS
            if self.model_labels.get(kind) is not None or self.node_labels.get(kind) is not None
        )
        object.__setattr__(self, "model_reads", reads)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    settings: Settings
    groups: Mapping[str, CompiledGroup]
    kinds: Mapping[tuple[str, str], CompiledKind]
    warnings: tuple[Diagnostic, ...]
    checksum: str
    bindings: Bindings | None = None  # None: no group binds a namespace, any namespace may charge any group
    lending: Lending = NO_LENDING  # what groups lend and borrow per key (issue 29); empty: strict carving
    # (group label value, namespace, cluster) -> the evaluator's resolution (derived from the policy alone)
    resolved: Memo[Any, Any] = field(init=False, default_factory=Memo, compare=False, repr=False)

    def group_path(self, name: str) -> str:
        return self.groups[name].path

    def near_groups(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, list(self.groups), n=3, cutoff=0.5)

    def rule_for(self, obj: Mapping[str, Any]) -> CompiledKind | None:
        return self.kinds.get((obj.get("apiVersion"), obj.get("kind")))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LimitRow:
    """One key a group limits, in nanos: `used` is the group's own usage (observed + reserved).

    `below` is what its descendants use of the key (0 for a leaf), so that
    `subtree` reads what the whole subtree holds against `hard`.
    """

    key: str
    hard: int
    carved: int  # Σ children hard
    used: int
    below: int = 0  # Σ descendants' own usage

    @property
    def subtree(self) -> int:
        """The group's own usage plus every descendant's."""
        return self.used + self.below

    @property
    def free(self) -> int:
        """What the group's own workloads may still start: hard − carved − used, never below 0."""
        return max(self.hard - self.carved - self.used, 0)


@dataclass(frozen=True, slots=True)
class CashRow:
    """One cash budget of a group, in nano-unit-seconds: `used` is what the group's own pods spent."""

    key: str
    period: str  # day | week | month | lifetime
    budget: int
    used: int
    carved: int = 0  # Σ children's budgets

    @property
    def free(self) -> int:
        """What the group's own workloads may still spend: budget − carved − used, never below 0."""
        return max(self.budget - self.carved - self.used, 0)


def limit_rows(
    group: CompiledGroup, used: Mapping[str, int], below: Mapping[str, int] | None = None
) -> list[LimitRow]:
    """Every key `group` limits, in declaration order, against its own usage `used`
    and its descendants' `below` (from `usage_below`; None: not asked for, 0)."""
    carved = group.carved
    under = below or {}
    return [LimitRow(key, hard, carved.get(key, 0), used.get(key, 0), under.get(key, 0))
            for key, hard in group.hard.items()]


def usage_below(
    policy: CompiledPolicy, used: Callable[[str], Mapping[str, int]], top: str | None = None
) -> dict[str, dict[str, int]]:
    """Per group, what its descendants use, key by key: Σ of their own usage (`used(name)`).

    One pass from the leaves up over `top`'s subtree (every group when None),
    reading each group's usage once: a 1,000-group tree page costs one read
    per group, not one per ancestor.
    """
    tops = [top] if top is not None else [n for n, g in policy.groups.items() if g.parent is None]
    order: list[str] = []
    stack = list(tops)
    while stack:  # pre-order, so that reversed every child comes before its parent
        name = stack.pop()
        order.append(name)
        stack.extend(policy.groups[name].children)
    out: dict[str, dict[str, int]] = {}
    for name in reversed(order):
        total: dict[str, int] = {}
        for child in policy.groups[name].children:
            for part in (used(child), out[child]):
                for key, value in part.items():
                    total[key] = total.get(key, 0) + value
        out[name] = total
    return out


def cash_rows(group: CompiledGroup, spent: Mapping[str, int]) -> list[CashRow]:
    """Every cash budget of `group`, in declaration order, against what it has `spent` this period."""
    carved = group.cash_carved
    return [
        CashRow(key, budget.period or "lifetime", budget.budget, spent.get(key, 0), carved.get(key, 0))
        for key, budget in group.cash.items()
    ]


__all__ = [
    "DEFAULT_BORROW_BELOW",
    "DEFAULT_GROUP_LABEL",
    "CashBudget",
    "CashRow",
    "CompiledGroup",
    "CompiledPolicy",
    "LimitRow",
    "Period",
    "Settings",
    "cash_rows",
    "limit_rows",
    "usage_below",
]
