"""What the pages show, as plain data: one view model for the HTML and the JSON the pages poll.

Every number comes from `limit_rows` / `cash_rows` (the one place hard,
carved, used and free are put side by side) and the ledger's `group_usage`;
this module only turns them into percentages of hard and canonical
quantities. The templates and the polling script read the same dicts, so the
first render and every later update agree by construction.

A parent's rows also carry `subtree`: its own usage plus its descendants'
(`policy.usage_below`, summed once per page), so the root says what its
teams hold; a leaf's subtree is its own usage and is not shown.

Bars are shares of the group's hard limit: `own` (observed usage of the
group's own workloads), `reserved` (admitted, not yet observed), `carved`
(handed down to children); the rest is free. Percentages are rounded to two
decimals, and clamped so that an over-committed row (a policy lowered under
its usage) still draws within its box and says "over".

On a key some group lends or borrows (issue 29), a row also carries the
borrowing figures (`quotalang.lent`, what `tree` and `/api/groups` show) and
a second bar, a share of `hard + borrow`: `within` (what the group's subtree
holds within its hard), `lent` (what others hold of its lendable part) and
`borrowed` (what it holds beyond its hard, from its ancestors' pools). The
pages print each number beside the bar, so nothing is said by colour alone.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from quotalang.controller import GroupUsage, Ledger, ObjectKey
from quotalang.decision import qty
from quotalang.lent import Lent, figures
from quotalang.policy import CashRow, CompiledGroup, CompiledPolicy, LimitRow, cash_rows, limit_rows, usage_below
from quotalang.quantity import ratio
from quotalang.resources import split_key
from quotalang.units import format_hours

_MICROSECOND = dt.timedelta(microseconds=1)
_HORIZON = dt.timedelta(days=36525)  # a lifetime budget's "runs out" is shown within a century
TREE_KEYS = 2  # bars per group on the tree page: its most-used keys (the page must stay light at 1,000 groups)


def _pct(part: int, whole: int) -> float:
    if whole <= 0 or part <= 0:
        return 0.0
    return round(min(ratio(part * 100, whole), 100.0), 2)


@lru_cache(maxsize=65536)
def _qty(key: str, nanos: int) -> str:
    """`qty`, remembered: a tree repeats the same few limits across its groups, and formatting
    a quantity is most of what rendering a 1,000-group tree costs."""
    return qty(key, nanos)


def own_usage(ledger: Ledger) -> Callable[[str], Mapping[str, int]]:
    """A group's own usage (observed + reserved) as a consistent copy: what `usage_below` sums."""
    return lambda name: ledger.group_usage(name).used


def lending_of(policy: CompiledPolicy, ledger: Ledger) -> dict[str, dict[str, Lent]]:
    """Every group's borrowing figures per lending key, read once for a page (empty without lending)."""
    return figures(policy.groups, policy.lending, own_usage(ledger)) if policy.lending else {}


def lending_bar(policy: CompiledPolicy, row: LimitRow, lent: Lent, full: bool = True) -> dict[str, Any]:
    """The borrowing fields of one row: the figures as quantities and the second bar's shares of hard + borrow.

    The tree (`full=False`) shows no terms (lend, borrow, guarantee): its group's page does; and on a key
    nothing is lent out of or borrowed by, it draws no second bar, so neither its figures nor the poll carry it.
    """
    key = row.key
    over = row.used + row.carved > row.hard + lent.borrow  # what it may borrow is not over
    moved = lent.lent_out > 0 or lent.borrowed > 0
    if not full and not moved:
        return {"over": over, "lent_or_borrowed": False}
    within = max(row.subtree - lent.borrowed, 0)
    scale = row.hard + lent.borrow
    within_pct = _pct(within, scale)
    lent_pct = min(_pct(lent.lent_out, scale), round(100 - within_pct, 2))
    borrowed_pct = min(_pct(lent.borrowed, scale), round(100 - within_pct - lent_pct, 2))
    bar = {"within": _qty(key, within), "borrowed": _qty(key, lent.borrowed), "lent_out": _qty(key, lent.lent_out),
           "borrowed_from": ", ".join(f"{policy.group_path(g)} {_qty(key, a)}" for g, a in lent.draws) or "-",
           "within_pct": within_pct, "lent_pct": max(lent_pct, 0.0), "borrowed_pct": max(borrowed_pct, 0.0),
           "over": over, "lent_or_borrowed": moved}  # the tree draws its line only then
    if full:
        bar.update(lend=_qty(key, lent.lend), borrow=_qty(key, lent.borrow), guarantee=_qty(key, lent.guarantee))
    return bar


def limit_bar(
    row: LimitRow, reserved: int, warn_num: int, warn_den: int, full: bool = True, parent: bool = False
) -> dict[str, Any]:
    """One key's bar and numbers: shares of hard, canonical quantities, warn/over flags.

    The tree shows only used of hard (`full=False`); a group page shows every number.
    A `parent`'s rows add `subtree` (own + descendants' usage).
    """
    key, hard = row.key, row.hard
    own = max(row.used - reserved, 0)
    own_pct = _pct(own, hard)
    reserved_pct = min(_pct(reserved, hard), round(100 - own_pct, 2))
    carved_pct = min(_pct(row.carved, hard), round(100 - own_pct - reserved_pct, 2))
    taken = row.used + row.carved
    bar = {
        "key": key,
        "hard": _qty(key, hard),
        "used": _qty(key, row.used),
        "own_pct": own_pct,
        "reserved_pct": max(reserved_pct, 0.0),
        "carved_pct": max(carved_pct, 0.0),
        "warn": row.used > 0 and hard > 0 and taken * warn_den >= hard * warn_num,
        "over": taken > hard,
    }
    if parent:
        bar["subtree"] = _qty(key, row.subtree)
    if full:
        bar.update(carved=_qty(key, row.carved), reserved=_qty(key, reserved), free=_qty(key, row.free))
    return bar


def _rank(row: LimitRow) -> float:
    """How full a key is (own + carved over hard): the tree shows the fullest keys of each group."""
    return ratio(row.used + row.carved, row.hard) if row.hard > 0 else -1.0


def cash_bar(row: CashRow, burn: int, now: dt.datetime, warn_num: int, warn_den: int) -> dict[str, Any]:
    """A cash budget: spent of budget this period, and when it runs out at `burn` nanos per second.

    `burn` is the group's observed usage of the key: what its running workloads
    hold, which is exactly what accrual charges per second.
    """
    left = row.free
    ends = period_end(row.period, now)
    if burn <= 0:
        runs_out = "not at the current rate (nothing running)"
    elif left <= 0:
        runs_out = "spent"
    elif ends is not None and left * 10**6 >= burn * ((ends - now) // _MICROSECOND):  # exact: ints
        runs_out = f"not this {row.period} (resets {ends:%Y-%m-%d %H:%M} UTC)"
    elif ends is None and left * 10**6 >= burn * (_HORIZON // _MICROSECOND):
        runs_out = "not in the next 100 years at the current rate"  # past what a date can say
    else:
        seconds = left / burn
        at = now + dt.timedelta(seconds=seconds)
        runs_out = f"in {_duration(seconds)} ({at:%Y-%m-%d %H:%M} UTC)"
    return {
        "key": row.key,
        "period": row.period,
        "budget": format_hours(row.budget),
        "used": format_hours(row.used),
        "free": format_hours(row.free),
        "used_pct": _pct(row.used, row.budget) if row.budget else (100.0 if row.used else 0.0),
        "burn": format_hours(burn * 3600) + " an hour",
        "runs_out": runs_out,
        "warn": row.budget > 0 and row.used * warn_den >= row.budget * warn_num,
        "over": row.budget > 0 and row.used >= row.budget,  # a 0h budget is "none", said by the numbers
    }


def period_end(period: str, now: dt.datetime) -> dt.datetime | None:
    """When a cash window resets (UTC; weeks start on Monday); None for a lifetime budget."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day + dt.timedelta(days=1)
    if period == "week":
        return day + dt.timedelta(days=7 - day.weekday())
    if period == "month":
        days = calendar.monthrange(day.year, day.month)[1]
        return day.replace(day=1) + dt.timedelta(days=days)
    return None


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@dataclass(frozen=True, slots=True)
class Numbers:
    """One group's rows as the pages show them, with the ledger copy they came from."""

    group: CompiledGroup
    usage: GroupUsage
    limits: list[dict[str, Any]]
    cash: list[dict[str, Any]]


def numbers(policy: CompiledPolicy, group: CompiledGroup, ledger: Ledger, now: dt.datetime) -> Numbers:
    """A group page's rows: every key, with its subtree's usage and, where the policy lends, its borrowing."""
    usage = ledger.group_usage(group.name)
    below = usage_below(policy, own_usage(ledger), group.name)[group.name] if group.children else None
    lending = lending_of(policy, ledger).get(group.name, {})
    return _numbers(policy, group, usage, limit_rows(group, usage.used, below), lending, now, full=True)


def tree_numbers(
    policy: CompiledPolicy, ledger: Ledger, now: dt.datetime, names: Collection[str] | None = None
) -> dict[str, Numbers]:
    """The rows of every group (of `names`, when given: a filtered tree) as the tree shows them: its
    `TREE_KEYS` fullest keys (declaration order among equals).

    One read of each group's usage serves the subtree sums, the ranking, the
    bars and the borrowing figures, so they all describe the same moment; and
    borrowing (a pass over the whole tree per key) is worked out only for the
    keys some group shows. Ranking is integer arithmetic on the rows; only the
    rows shown are formatted as quantities, which is what a 1,000-group tree
    page spends its time on.
    """
    usage = {name: ledger.group_usage(name) for name in policy.groups}
    used = {name: u.used for name, u in usage.items()}  # a sum of observed and reserved: worked out once
    below = usage_below(policy, used.__getitem__)
    groups = {name: g for name, g in policy.groups.items() if names is None or name in names}
    shown: dict[str, list[LimitRow]] = {}
    for name, group in groups.items():
        rows = limit_rows(group, used[name], below[name])
        order = sorted(range(len(rows)), key=lambda i: -_rank(rows[i]))
        shown[name] = [rows[i] for i in order[:TREE_KEYS]]
    lending: dict[str, dict[str, Lent]] = {}
    if policy.lending:
        keys = {row.key for rows in shown.values() for row in rows}
        lending = figures(policy.groups, policy.lending, used.__getitem__, keys)
    return {name: _numbers(policy, group, usage[name], shown[name], lending.get(name, {}), now, full=False)
            for name, group in groups.items()}


def _numbers(
    policy: CompiledPolicy,
    group: CompiledGroup,
    usage: GroupUsage,
    rows: list[LimitRow],
    lending: Mapping[str, Lent],
    now: dt.datetime,
    full: bool,
) -> Numbers:
    warn = policy.settings.warn_at
    num, den = warn.numerator, warn.denominator
    parent = bool(group.children)
    bars = [limit_bar(r, usage.reserved.get(r.key, 0), num, den, full, parent) for r in rows]
    for bar, r in zip(bars, rows, strict=True):
        if r.key in lending:
            bar.update(lending_bar(policy, r, lending[r.key], full))
    cash = [cash_bar(c, usage.observed.get(c.key, 0), now, num, den) for c in cash_rows(group, usage.cash)]
    return Numbers(group, usage, bars, cash)


def walk(policy: CompiledPolicy) -> Iterator[tuple[CompiledGroup, int]]:
    """Every group depth-first from the roots, with its depth (roots first in declaration order)."""
    stack = [(g, 0) for g in reversed([g for g in policy.groups.values() if g.parent is None])]
    while stack:
        group, depth = stack.pop()
        yield group, depth
        stack.extend((policy.groups[c], depth + 1) for c in reversed(group.children))


def tree_state(policy: CompiledPolicy, ledger: Ledger, now: dt.datetime) -> dict[str, Any]:
    """What the tree page polls: per group, the bars it shows and its cash."""
    out = {name: {"limits": n.limits, "cash": n.cash, "objects": n.usage.objects,
                  "reservations": n.usage.reservations}
           for name, n in tree_numbers(policy, ledger, now).items()}
    return {"policy": policy.checksum, "groups": out}


def group_state(policy: CompiledPolicy, group: CompiledGroup, ledger: Ledger, now: dt.datetime) -> dict[str, Any]:
    """What a group page polls: every key, its cash, its counts."""
    n = numbers(policy, group, ledger, now)
    return {"policy": policy.checksum, "name": group.name, "limits": n.limits, "cash": n.cash,
            "objects": n.usage.objects, "reservations": n.usage.reservations}


def nested(limits: list[dict[str, Any]], gpu_resources: frozenset[str]) -> list[tuple[dict[str, Any], bool]]:
    """Rows with each model key right under its generic key: (row, is_model).

    A model key whose generic key the group does not limit stays where it is declared.
    """
    by_key = {row["key"]: row for row in limits}
    models: dict[str, list[dict[str, Any]]] = {}
    placed: set[str] = set()
    for row in limits:
        split = split_key(row["key"], gpu_resources)
        if split.model is not None and split.base in by_key:
            models.setdefault(split.base, []).append(row)
            placed.add(row["key"])
    out: list[tuple[dict[str, Any], bool]] = []
    for row in limits:
        if row["key"] in placed:
            continue
        out.append((row, False))
        out.extend((m, True) for m in models.get(row["key"], []))
    return out


def source_line(group: CompiledGroup) -> str:
    """`file:line` of the group's declaration (the compiled source is `file:line:col`)."""
    file, _, rest = group.source.rpartition(":")
    return file if file and rest.isdigit() else group.source


SpentOf = Callable[[CompiledGroup], Mapping[ObjectKey, Mapping[str, int]] | None]


def objects_of(ledger: Ledger, group: CompiledGroup, spent: SpentOf | None = None) -> list[dict[str, Any]] | None:
    """The workloads charged to `group`, largest first, if the store can list them (None if not).

    "Largest" is the largest share of one of the group's hard limits, so that
    GPUs, cores and bytes compare.

    With `spent` (where this process accrues cash), each row says what the
    workload's pods spent of the group's cash budgets this period
    (`controller.spending`). The ledger contract has no listing yet; a store that offers
    `objects_of(group) -> Iterable[(ObjectKey, usage)] | None` is shown (every
    store does: the kubernetes one on its leader only, None elsewhere), others
    are counted only.
    """
    lister = getattr(ledger, "objects_of", None)
    listed = lister(group.name) if lister is not None else None
    if listed is None:
        return None
    paid = spent(group) if spent is not None else None
    rows = []
    for identity, usage in listed:
        cells: Mapping[str, int] = usage
        shares = [ratio(v, group.hard[k]) for k, v in cells.items() if group.hard.get(k)]
        rows.append({"identity": str(identity), "kind": identity.kind,
                     "name": f"{identity.namespace}/{identity.name}" if identity.namespace else identity.name,
                     "usage": ", ".join(f"{k} {qty(k, v)}" for k, v in sorted(cells.items()) if v),
                     "weight": max(shares, default=0.0),
                     "spent": None if paid is None else ", ".join(
                         f"{k} {format_hours(v)}" for k, v in sorted(paid.get(identity, {}).items())) or "0h"})
    rows.sort(key=lambda r: -float(r["weight"]))
    return rows
