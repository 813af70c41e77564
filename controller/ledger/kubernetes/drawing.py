"""Borrowing's arithmetic on one ledger object (issue 29; the design: docs/architecture.md, "Borrowing").

In the replicated store what a group's subtree draws on its parent's pool is
counted in the parent's object as the parent's own usage (registrations and
the leader's `drawn`), so every balance is read from one object and each
compare-and-swap proves one inequality. Per key, with `T0` a group's balance
when nothing below it is used and `L = min(lend, T0)` what it lends then:

* a group's balance from its object alone is `T0 − U` (U: everything the
  object counts, its children's draws included), never above the true one;
* its *uncapped* draw on its parent is `d̃(U) = max(0, U − K)`, `K = T0 − L`
  (its slack): convex and non-decreasing in U, so registrations made on
  counted bases (never below the admitted usage) sum to at least the
  admitted usage's draw;
* it may be admitted to `T0 − U ≥ floor` (−borrow; a root: 0).

A pool's count of its children's draws depends on their slacks alone, so a
short hash of them (`pool_digests`) names the terms a pool's object was
counted under: a decision that reads the count proceeds only where it equals
the hash under the deciding replica's policy (`registering.behind`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from quotalang.borrowing import Groups, Lending, balance


@dataclass(frozen=True, slots=True)
class Terms:
    """One group's numbers per key, as its own object and its parent's pool read them (nanos)."""

    rest: Mapping[str, int]  # T0 for every key it limits
    floor: Mapping[str, int]  # −borrow, a root 0
    slack: Mapping[str, int]  # K for the keys whose use changes its parent's balance (it lends or borrows them)


def terms_of(groups: Groups, lending: Lending, name: str) -> Terms:
    """`name`'s terms from the compiled tree: T0 with nothing used below it, its floor and its slack."""
    group = groups[name]
    rest: dict[str, int] = {}
    floor: dict[str, int] = {}
    slack: dict[str, int] = {}
    for key in group.hard:
        rest[key] = t0 = balance(groups, lending, lambda _: {}, name, key)
        lend, borrow = lending.terms(name, key)
        floor[key] = -borrow if group.parent is not None else 0
        if group.parent is not None and (lend or borrow):
            slack[key] = t0 - min(lend, t0)
    return Terms(rest, floor, slack)


def growth(terms: Terms, counted: Mapping[str, int], amount: Mapping[str, int]) -> dict[str, int]:
    """What adding `amount` to a group counting `counted` adds to its uncapped draw: d̃(U + x) − d̃(U)."""
    out: dict[str, int] = {}
    for key, value in amount.items():
        slack = terms.slack.get(key)
        if slack is None or value <= 0:
            continue
        base = counted.get(key, 0)
        grown = max(0, base + value - slack) - max(0, base - slack)
        if grown:
            out[key] = grown
    return out


def drawn(terms: Terms, counted: Mapping[str, int]) -> dict[str, int]:
    """d̃(U): what a group counting `counted` draws on its parent's pool (the leader's `drawn` entry)."""
    return {key: d for key, slack in terms.slack.items() if (d := max(0, counted.get(key, 0) - slack))}


def shortfalls(terms: Terms, counted: Mapping[str, int], amount: Mapping[str, int]) -> dict[str, int]:
    """Per key of `amount` the group limits, by how much `T0 − (U + x)` would fall below its floor."""
    out: dict[str, int] = {}
    for key, value in amount.items():
        if value <= 0 or key not in terms.rest:
            continue
        lacking = terms.floor[key] - (terms.rest[key] - counted.get(key, 0) - value)
        if lacking > 0:
            out[key] = lacking
    return out


def pool_digests(groups: Groups, lending: Lending, terms: Callable[[str], Terms]) -> dict[str, str]:
    """Per pool (a group with a lending or borrowing child), a short hash of its children's slacks per key:
    all its count of their draws (`drawn`, registrations) depends on, so equal digests count alike."""
    slacks: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {}
    for name in sorted(groups):
        parent = groups[name].parent
        if parent is not None and lending.moves(name):
            slacks.setdefault(parent, []).append((name, sorted(terms(name).slack.items())))
    return {pool: hashlib.sha256(repr(children).encode()).hexdigest()[:16] for pool, children in slacks.items()}


__all__ = ["Terms", "drawn", "growth", "pool_digests", "shortfalls", "terms_of"]
