"""Who holds whose quota right now: per group and key, own use, borrowed (from which ancestor), lent out.

The one place the tree, the pages, the JSON API, the metrics and `diff` read
borrowing from, so that every view says the same thing. Pure: from the
compiled tree (`borrowing.Shape`), its `Lending` and the groups' own usage
alone, through the balance rule's own `borrowing.share` (balances summed from
the leaves up, as `borrowing.balance` sums them, each subtree once).

Per key, with T the balance and `share(c) = min(lend, max(T, −borrow))`:

* **borrowed(g)** = `−share(g)` when negative: what g's subtree takes beyond
  g's hard from its parent's balance (at most `borrow`). Use beyond
  `hard + borrow` (admitted in warn or audit mode, or left when quota shrank)
  is **over**, not borrowed: it takes no one's room (the rule clamps it).
* **from whom**, as `borrowing.check` names a request's draws: a pool p
  keeps for itself only what it has idle beyond its own `lend` (its own
  room plus what its children offer); what it lends up is its parent's, so
  taking it is drawing on the parent's pool, and so on up. A pool is taken
  from by its own workloads beyond its own room first, then by its children
  in declaration order; a group's first take is its own lendable part back
  (not borrowing), the rest is borrowed, named at the pool that funds it.
  The rule does not attribute (Kueue does not either): this fixed order only
  makes the display deterministic; each group's total does not depend on it.
* **lent_out(g)**: of what g offers its parent (`max(0, min(lend, T))`,
  its idle lendable part), the part its ancestors could not give back without
  some balance falling below its floor: exactly what g could not take back
  today without reclaiming someone. Order-free: an ancestor's own idle room
  counts as giving it back.
* **guarantee** = `hard − lend`: never lent, whatever others do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from quotalang.borrowing import Groups, Lending, Used, share
from quotalang.decision import qty
from quotalang.policy import CompiledPolicy


@dataclass(frozen=True, slots=True)
class Lent:
    """One group's borrowing figures for one key, in nanos."""

    key: str
    hard: int
    lend: int
    borrow: int
    used: int  # the group's own workloads (observed + reserved)
    balance: int  # T(g): negative while its subtree borrows
    borrowed: int  # beyond its hard, funded by its ancestors (≤ borrow)
    draws: tuple[tuple[str, int], ...]  # (ancestor, amount) funding `borrowed`, nearest first
    lent_out: int  # of its lendable part, what others hold now
    over: int  # beyond hard + borrow: funded by no one

    @property
    def guarantee(self) -> int:
        """`hard − lend`: what is never lent."""
        return self.hard - self.lend


def lending_keys(lending: Lending) -> list[str]:
    """Every key some group lends or borrows (non-zero), sorted: the keys a borrowing view shows."""
    keys = {key for table in (lending.lend, lending.borrow) for terms in table.values()
            for key, value in terms.items() if value}
    return sorted(keys)


def _top_down(groups: Groups) -> list[str]:
    order = [name for name, g in groups.items() if g.parent is None]
    index = 0
    while index < len(order):
        order.extend(c for c in groups[order[index]].children if c in groups)
        index += 1
    return order


def _take(queue: list[list[object]], amount: int) -> list[tuple[str | None, int]]:
    """Take `amount` from the front of `queue` ([source, left] pairs); what it lacks comes from None."""
    got: list[tuple[str | None, int]] = []
    while amount > 0 and queue:
        source, left = queue[0]
        assert isinstance(left, int)
        part = min(left, amount)
        if part:
            got.append((source if isinstance(source, str) else None, part))
        amount -= part
        if part == left:
            queue.pop(0)
        else:
            queue[0][1] = left - part
    if amount > 0:
        got.append((None, amount))
    return got


def key_figures(groups: Groups, lending: Lending, used: Used, key: str) -> dict[str, Lent]:
    """`Lent` for `key` of every group that limits it: balances by the rule, then one pass down the tree."""
    order = [name for name in _top_down(groups) if key in groups[name].hard]
    memo: dict[str, Mapping[str, int]] = {}

    def own(name: str) -> Mapping[str, int]:
        if name not in memo:
            memo[name] = used(name)
        return memo[name]

    # the children that limit the key, in declaration order (top-down, each parent's children come in a row)
    kids: dict[str, list[str]] = {name: [] for name in order}
    room: dict[str, int] = {}
    terms: dict[str, tuple[int, int]] = {}  # (lend, borrow)
    for name in order:
        group = groups[name]
        if group.parent in kids:
            kids[group.parent].append(name)
        room[name] = group.hard[key] - group.carved.get(key, 0) - own(name).get(key, 0)
        terms[name] = lending.terms(name, key)
    t: dict[str, int] = {}  # borrowing.balance, from the leaves up: each subtree read once, not once per ancestor
    sh: dict[str, int] = {}
    offer: dict[str, int] = {}  # min(lend, what it would have idle if nobody below took beyond its room)
    gross: dict[str, int] = {}  # its idle room plus what its children offer
    for name in reversed(order):
        below = kids[name]
        t[name] = room[name] + sum(sh[c] for c in below) if below else room[name]
        sh[name] = share(groups, lending, own, name, key, t[name])
        gross[name] = max(room[name], 0) + (sum(offer[c] for c in below) if below else 0)
        offer[name] = min(terms[name][0], gross[name])
    demand = {name: offer[name] - sh[name] for name in order}  # what it takes from its parent's pool
    funded: dict[str, list[tuple[str | None, int]]] = {}  # where each group's demand comes from, nearest first
    for name in order:
        parent = groups[name].parent
        if parent is not None and parent not in t:
            funded[name] = [(parent, demand[name])]  # the parent does not limit the key: it has room
        if not kids[name]:
            continue  # funds no one: what its own workloads take from its pool matters to nobody
        local = gross[name] - (terms[name][0] if parent is not None else 0)  # the rest is lent up
        queue: list[list[object]] = [[name, max(local, 0)]]
        queue += [[s, a] for s, a in funded.get(name, []) if s is not None]
        _take(queue, max(-room[name], 0))  # the pool's own workloads first: not borrowing
        for child in kids[name]:
            funded[child] = _take(queue, demand[child])
    avail: dict[str, int] = {}  # how far T may drop before some floor breaks (absent: no limit)
    out: dict[str, Lent] = {}
    for name in order:
        lend, borrow = terms[name]
        parent = groups[name].parent
        above = avail.get(parent) if parent is not None else None
        floor = -borrow if parent is not None else 0
        slack = t[name] - floor
        if above is not None:
            slack = min(slack, max(0, t[name] - lend) + above)
        avail[name] = max(0, slack)
        borrowed = max(0, -sh[name])
        skip = demand[name] - borrowed  # its own lendable part taken back first: not borrowing
        merged: dict[str, int] = {}
        for source, amount in funded.get(name, []) if borrowed else ():  # nothing borrowed: skip covers all
            part = amount - min(skip, amount)
            skip -= amount - part
            if source is not None and part:
                merged[source] = merged.get(source, 0) + part
        lent_out = max(0, max(0, min(lend, t[name])) - above) if above is not None else 0
        out[name] = Lent(key, groups[name].hard[key], lend, borrow, own(name).get(key, 0), t[name], borrowed,
                         tuple(merged.items()), lent_out, max(0, floor - t[name]))
    return out


def figures(
    groups: Groups, lending: Lending, used: Used, only: Collection[str] | None = None
) -> dict[str, dict[str, Lent]]:
    """Per group, per key some group lends or borrows (and in `only`, when given), its `Lent`.

    Each key is a pass over the whole tree: a view that shows a few keys per
    group (the tree page) names them in `only` rather than pay for every key.
    Empty without lending.
    """
    out: dict[str, dict[str, Lent]] = {}
    read: dict[str, Mapping[str, int]] = {}

    def once(name: str) -> Mapping[str, int]:  # each group's usage read once for every key
        if name not in read:
            read[name] = used(name)
        return read[name]

    for key in lending_keys(lending):
        if only is not None and key not in only:
            continue
        for name, row in key_figures(groups, lending, once, key).items():
            out.setdefault(name, {})[key] = row
    return out


def row_json(policy: CompiledPolicy, row: Lent) -> dict[str, Any]:
    """One key's figures as every JSON view shows them (tree, `/api/groups`, the pages), quantities printed."""
    key = row.key
    return {"lend": qty(key, row.lend), "borrow": qty(key, row.borrow), "guarantee": qty(key, row.guarantee),
            "own": qty(key, row.used), "borrowed": qty(key, row.borrowed),
            "borrowed_from": [{"group": g, "path": policy.group_path(g), "amount": qty(key, a)}
                              for g, a in row.draws],
            "lent_out": qty(key, row.lent_out), "over": qty(key, row.over)}


def lending_json(policy: CompiledPolicy, used: Used) -> dict[str, dict[str, dict[str, Any]]]:
    """Per group, per lending key, `row_json` (empty for a policy without lending: nothing is read)."""
    return {name: {key: row_json(policy, row) for key, row in keys.items()}
            for name, keys in figures(policy.groups, policy.lending, used).items()}


__all__ = ["Lent", "figures", "key_figures", "lending_json", "lending_keys", "row_json"]
