"""Whether a workload can be given back, and so may borrow (issue 29).

Borrowed quota is only safe to lend if it can be taken back: a workload may
borrow when its kind's rule names a `suspend` field (the controller sets it
to true; Job, JobSet, RayJob, the Kubeflow jobs), or when its pods' priority
is below the policy's `borrow below priority` (default 100, where KAI
separates preemptible from non-preemptible work; such a workload is deleted
to reclaim). A priority that cannot be resolved fails closed: not below
anything.

A workload's priority is the highest of its pod templates' (one part that
must not be preempted makes the whole workload so): the PriorityClass its
`priorityClassName` names, else `spec.priority` where set, else the cluster's
global default class, else 0 — as the Priority admission plugin assigns it.
Both may be set: the larger counts, so the template cannot claim less than
the pods will get. `Priorities` resolves a class name (the engine's cached
PriorityClass list; `""` asks for the global default); without it (eval,
test) only the built-in system classes and `spec.priority` are known.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quotalang import borrowing
from quotalang.borrowing import Draw, Groups, Lending, Used

# PriorityClass name -> value; None: unknown. The name "" asks for the global default (None: there is none).
Priorities = Callable[[str], int | None]

# The classes every cluster has (pkg/apis/scheduling: SystemCriticalPriority and +1000).
SYSTEM_CLASSES = {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}


@dataclass(frozen=True, slots=True)
class Reclaim:
    """How a workload would be given back, and its priority (None: a class nobody could resolve)."""

    suspend: str | None  # the rule's suspend path (`spec.suspend`); None: only by deletion
    priority: int | None
    below: int  # the policy's threshold

    @property
    def reclaimable(self) -> bool:
        return self.suspend is not None or (self.priority is not None and self.priority < self.below)

    @property
    def how(self) -> str:
        """`suspend spec.suspend` or `delete`: what the controller does to reclaim it."""
        return f"suspend {self.suspend}" if self.suspend is not None else "delete"

    def why_not(self, kind: str) -> str:
        """Why it may not borrow and how to make it reclaimable (only asked when it is not)."""
        shown = "unknown" if self.priority is None else str(self.priority)
        return (f"only reclaimable workloads may borrow: priority {shown} is not below {self.below} and "
                f"{kind} has no suspend rule (use a PriorityClass below {self.below}, or a kind with `suspend`)")


def priority_of(templates: Iterable[Mapping[str, Any] | None], priorities: Priorities | None = None) -> int | None:
    """The highest priority of the templates' pods; None when a named class cannot be resolved."""
    highest: int | None = None
    for template in templates:
        spec = template.get("spec") if template is not None else None
        value = _pod_priority(spec if isinstance(spec, Mapping) else {}, priorities)
        if value is None:
            return None
        highest = value if highest is None else max(highest, value)
    return 0 if highest is None else highest


def _pod_priority(spec: Mapping[str, Any], priorities: Priorities | None) -> int | None:
    name = spec.get("priorityClassName")
    given = spec.get("priority")
    given = given if isinstance(given, int) and not isinstance(given, bool) else None
    if name is not None and name != "":
        if not isinstance(name, str):
            return None
        value = SYSTEM_CLASSES.get(name)
        if value is None and priorities is not None:
            value = priorities(name)
        if value is None:
            return None
        return value if given is None else max(value, given)
    default = priorities("") if priorities is not None else None
    if given is not None:
        return given if default is None else max(given, default)
    return default if default is not None else 0


def reclaim_of(suspend: tuple[str, ...] | None, templates: Iterable[Mapping[str, Any] | None], below: int,
               priorities: Priorities | None = None) -> Reclaim:
    """How a workload of a kind with `suspend` (the rule's path, or None) and these templates is given back."""
    return Reclaim(".".join(suspend) if suspend is not None else None, priority_of(templates, priorities), below)


@dataclass(frozen=True, slots=True)
class Borrower:
    """A store's record of an admission that borrowed: who, where, what it drew, how it is given back.

    `ref` is the store's own key for it (opaque here); `usage` is what the
    workload holds in `group` (key -> nanos), all of which reclaiming it
    gives back; `admitted` is when (epoch seconds); `reclaiming` is set once
    an admission named it, so it is counted as gone and never named twice.
    """

    ref: Hashable
    name: str  # `default/job-b`, as a decision prints it
    group: str
    draws: tuple[Draw, ...]
    usage: Mapping[str, int]
    reclaim: Reclaim
    admitted: float
    reclaiming: bool = False


def without(used: Used, gone: Iterable[Borrower]) -> Used:
    """`used` with the usage of `gone` taken out of their groups (what balances will be once reclaimed)."""
    away: dict[str, dict[str, int]] = {}
    for borrower in gone:
        mine = away.setdefault(borrower.group, {})
        for key, value in borrower.usage.items():
            mine[key] = mine.get(key, 0) + value
    if not away:
        return used

    def less(group: str) -> Mapping[str, int]:
        taken = away.get(group)
        if taken is None:
            return used(group)
        return {key: max(value - taken.get(key, 0), 0) for key, value in used(group).items()}

    return less


def choose(
    groups: Groups, lending: Lending, used: Used, name: str, needs: Mapping[str, int],
    borrowers: Sequence[Borrower], deletes: bool = False,
) -> tuple[Borrower, ...] | None:
    """The fewest reclaimable borrowers whose usage, taken back, lets `needs` fit in `name`; None if none do.

    Candidates are borrowers not already being reclaimed, suspendable (or,
    with `deletes` — the policy's `reclaim by delete` — below the priority
    threshold, to be deleted), whose
    group is borrowing now (its balance below 0 in a key they drew): a group
    within its hard holds only what it is guaranteed or lends, and that is
    never taken. In Kueue's order (`preemption.candidatesOrdering` with
    borrowing first): lowest priority first (an unknown one last), then the
    most recently admitted. Taken greedily until the request fits, then
    every one not needed is put back (latest chosen first), as Kueue's
    minimal preemption set.
    """
    def borrowing_now(borrower: Borrower) -> bool:
        return any(borrowing.balance(groups, lending, used, borrower.group, draw.key) < 0
                   for draw in borrower.draws if draw.key in needs)

    pool = [b for b in borrowers if not b.reclaiming and b.reclaim.reclaimable
            and (deletes or b.reclaim.suspend is not None) and b.group in groups and borrowing_now(b)]
    pool.sort(key=lambda b: (b.reclaim.priority is None, b.reclaim.priority or 0, -b.admitted))
    chosen: list[Borrower] = []
    for borrower in pool:
        chosen.append(borrower)
        if borrowing.check(groups, lending, without(used, chosen), name, needs).fits:
            break
    else:
        return None
    for borrower in reversed(chosen[:-1]):
        fewer = [b for b in chosen if b is not borrower]
        if borrowing.check(groups, lending, without(used, fewer), name, needs).fits:
            chosen = fewer
    return tuple(chosen)


__all__ = ["SYSTEM_CLASSES", "Borrower", "Priorities", "Reclaim", "choose", "priority_of", "reclaim_of", "without"]
