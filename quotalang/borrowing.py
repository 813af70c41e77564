"""The balance rule: idle quota a group lends, room beyond its hard limit a group borrows (issue 29).

Pure and exact (integer nanos), over the compiled tree and a usage source.
Per key, a group's **balance** is

    own(g) = hard(g) − Σ hard(children)
    T(g)   = own(g) − selfUsed(g) + Σ over children c of share(c)
    share(c) = min(lend(c), max(T(c), −borrow(c)))

(a leaf's T is `hard − used`). A request adding `need` to g is admitted iff
afterwards `T(x) ≥ −borrow(x)` at g and at every ancestor whose balance it
changes (a root borrows nothing: its floor is 0). What a group does not lend
(`hard − lend`) is never counted in its parent's balance, so it is never
lent; a request that keeps `T(g) ≥ lend(g)` changes no ancestor's balance
and touches g alone.

Two decisions where the issue is silent, both so that a policy with no
`lend`/`borrow` is decided exactly as before (`selfUsed + Σ children hard +
need ≤ hard` at g alone):

* `share` is clamped at `−borrow(c)`: what a group uses beyond `hard +
  borrow` (admitted in warn or audit mode, or left over when its quota
  shrank) is its own excess and never takes its parent's room, as a carved
  child's excess never did.
* An ancestor whose balance a request does not change is not checked: an
  excess that predates the request is not the request's doing (Kueue's
  `available` goes negative the same way after over-admission).

Compared with Kueue (KEP-79, `pkg/cache/scheduler/resource_node.go`), whose
quotas add up (a cohort's SubtreeQuota is its own nominal quota plus what its
children may lend) where ours are carved (a parent's hard already holds its
children's): `own(g)` plays the cohort's own nominal quota, `share(c)` is the
part of a child's SubtreeQuota outside its localQuota net of the usage it
stores in the parent, and `T(g) ≥ −borrow(g)` is Kueue's
`usage ≤ SubtreeQuota + borrowingLimit`. Kueue's limits default to
unlimited (nil); ours default to 0, strict carving. Kueue stores the usage a
node keeps in its parent (`addUsage` bubbles it up); the in-process store
derives it from each group's own usage instead, so there is no second copy
to keep in step. Kueue admits from a queue and preempts afterwards; we decide
at admission. Cash budgets are never lent: only hard limits are balanced here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

Used = Callable[[str], Mapping[str, int]]  # a group's own usage (observed + reserved), key -> nanos


class Shape(Protocol):
    """What the rule reads of a compiled group (`policy.CompiledGroup` is one)."""

    @property
    def parent(self) -> str | None: ...

    @property
    def children(self) -> tuple[str, ...]: ...

    @property
    def hard(self) -> Mapping[str, int]: ...

    @property
    def carved(self) -> Mapping[str, int]: ...


Groups = Mapping[str, Shape]


@dataclass(frozen=True, slots=True)
class Lending:
    """Per group and key, what it lends of its hard limit and may borrow beyond it (nanos).

    Only groups that lend or borrow something are listed; an empty `Lending`
    is today's strict carving.
    """

    lend: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    borrow: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.lend) or bool(self.borrow)

    def terms(self, group: str, key: str) -> tuple[int, int]:
        """(lend, borrow) of `group` for `key`."""
        lend = self.lend.get(group)
        borrow = self.borrow.get(group)
        return (lend.get(key, 0) if lend else 0), (borrow.get(key, 0) if borrow else 0)

    def moves(self, group: str) -> bool:
        """Whether `group` lends or borrows any key: only then can its use change its parent's balance."""
        return any(self.lend.get(group, {}).values()) or any(self.borrow.get(group, {}).values())


NO_LENDING = Lending()


@dataclass(frozen=True, slots=True)
class Draw:
    """Part of a request taken beyond its group's own balance, from the pool at `group` (an ancestor)."""

    group: str
    key: str
    amount: int  # nanos

    def describe(self, path: str, amount: str) -> str:
        """`borrowed 4 of requests.nvidia.com/gpu.A100 from root/ai-platform` (`amount` printed by the caller)."""
        return f"borrowed {amount} of {self.key} from {path}"


@dataclass(frozen=True, slots=True)
class Short:
    """Where a request does not fit: `group`'s balance of `key` would be `balance`, below `floor`."""

    group: str
    key: str
    balance: int
    floor: int  # −borrow (0 at a root)


@dataclass(frozen=True, slots=True)
class Check:
    """The balance rule's answer for one request."""

    fits: bool
    touches: tuple[str, ...]  # ancestors whose balance it changes, nearest first (empty: its group alone)
    borrowed: tuple[Draw, ...] = ()  # nearest ancestor first, per key in the order asked
    short: tuple[Short, ...] = ()  # where a key does not fit, nearest first (a key may fail at several)


def balance(groups: Groups, lending: Lending, used: Used, name: str, key: str) -> int:
    """T(name) for `key`: own room left plus what its children's balances give it (negative: borrowing)."""
    group = groups[name]
    total = group.hard.get(key, 0) - group.carved.get(key, 0) - used(name).get(key, 0)
    for child in group.children:
        total += share(groups, lending, used, child, key)
    return total


def share(groups: Groups, lending: Lending, used: Used, name: str, key: str, at: int | None = None) -> int:
    """What `name`'s balance adds to its parent's: `min(lend, max(T, −borrow))` (T = `at` when given).

    A group that neither lends nor borrows the key adds 0 whatever its use:
    its subtree is not read at all.
    """
    lend, borrow = lending.terms(name, key)
    if not lend and not borrow:
        return 0
    if at is None:
        at = balance(groups, lending, used, name, key)
    return min(lend, max(at, -borrow))


def may_draw_on(groups: Groups, lending: Lending, name: str) -> tuple[str, ...]:
    """The ancestors whose balance a request in `name` may change, root-most first.

    Static: the parent, and further up while the group below lends or
    borrows something. A store locks them (in this order, then `name`) for a
    request that goes beyond its guarantee; empty for a group that neither
    lends nor borrows, whose requests touch it alone as before.
    """
    chain: list[str] = []
    node = name
    parent = groups[node].parent
    while parent is not None and lending.moves(node):
        chain.append(parent)
        node, parent = parent, groups[parent].parent
    chain.reverse()
    return tuple(chain)


def check(groups: Groups, lending: Lending, used: Used, name: str, needs: Mapping[str, int]) -> Check:
    """Whether adding `needs` (key -> nanos; only positive amounts need room) to `name` keeps every balance
    it changes at or above its floor, and what it borrows from which ancestor.

    Keys `name` does not limit are not checked; an ancestor that does not
    limit a key has room for it. A key that does not fit is followed up all
    the same (`touches`, `borrowed` and further `short` entries): a group in
    warn or audit mode is admitted over quota, and what it then takes from
    its ancestors (at most its borrow: shares stop at −borrow) must be
    decided under their locks. Per key, the drop in g's balance travels up
    as far as the shares change: each ancestor absorbs what its share does
    not pass on. What g takes of its own lendable part (its balance between
    lend and 0) is counted against the nearest pools first and is not
    borrowing; the rest, beyond g's balance, is reported as borrowed from the
    ancestors that absorb it.
    """
    touches: list[str] = []
    borrowed: list[Draw] = []
    short: list[Short] = []
    for key, need in needs.items():
        if need <= 0 or key not in groups[name].hard:
            continue
        node, drop = name, need
        before = balance(groups, lending, used, node, key)
        reclaim = 0  # of g's share that it takes back: its own lendable part, not borrowing
        first = True
        while True:
            group = groups[node]
            lend, borrow = lending.terms(node, key)
            after = before - drop
            floor = -borrow if group.parent is not None else 0
            if after < floor:  # noted, and followed up: in warn or audit mode it is admitted all the same,
                short.append(Short(node, key, after, floor))  # and the balances it changes must be locked
            passed = 0
            if group.parent is not None:
                passed = share(groups, lending, used, node, key, before) - share(groups, lending, used, node, key,
                                                                                  after)
            if first:
                reclaim = max(0, min(before, lend) - max(after, 0))
                first = False
            else:
                taken = drop - passed
                back = min(taken, reclaim)
                reclaim -= back
                if taken > back:
                    borrowed.append(Draw(node, key, taken - back))
            if passed <= 0:
                break
            parent = group.parent
            assert parent is not None  # a root passes nothing on
            if parent not in touches:
                touches.append(parent)
            if key not in groups[parent].hard:  # unlimited above: everything passed on fits
                if passed > reclaim:
                    borrowed.append(Draw(parent, key, passed - reclaim))
                break
            node, drop = parent, passed
            before = balance(groups, lending, used, node, key)
    return Check(not short, tuple(touches), tuple(borrowed), tuple(short))


__all__ = [
    "NO_LENDING",
    "Check",
    "Draw",
    "Groups",
    "Lending",
    "Shape",
    "Short",
    "Used",
    "balance",
    "check",
    "may_draw_on",
    "share",
]
