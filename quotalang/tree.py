"""`quotalang tree`: the group tree with hard / carved / used / free per key.

A parent's `used` is its own workloads' only; `subtree` beside it adds what
its descendants use (`policy.usage_below`), so the root says what its teams hold.

Where some group lends or borrows a key (issue 29), that key's row also
carries lend / borrow / guarantee and, from the usage, what the group's own
workloads hold, what it borrows (and from which ancestor's pool) and what of
its lendable part others hold (`quotalang.lent`, the views' one source).

Usage may come from one snapshot or from one per cluster (`--usage NAME=FILE`,
issue 18): a quota spans the fleet, so the clusters' usage is summed and the
tree is checked against the sum, with each cluster's share shown beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quotalang.decision import UsageSource, qty
from quotalang.lent import lending_json
from quotalang.policy import CompiledGroup, CompiledPolicy, cash_rows, limit_rows, usage_below
from quotalang.units import format_hours


class ClusterUsage:
    """Per-cluster usage, summed (a `UsageSource`); each cluster's own stays readable."""

    def __init__(self, clusters: Mapping[str, UsageSource]) -> None:
        self.clusters = dict(clusters)

    @staticmethod
    def _sum(parts: list[Mapping[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in parts:
            for key, value in part.items():
                out[key] = out.get(key, 0) + value
        return out

    def used(self, group: str) -> Mapping[str, int]:
        return self._sum([u.used(group) for u in self.clusters.values()])

    def cash_used(self, group: str) -> Mapping[str, int]:
        return self._sum([u.cash_used(group) for u in self.clusters.values()])


def _roots(policy: CompiledPolicy) -> list[CompiledGroup]:
    return [g for g in policy.groups.values() if g.parent is None]


def _rows(group: CompiledGroup, usage: UsageSource, below: Mapping[str, int],
          lending: Mapping[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in limit_rows(group, usage.used(group.name), below):
        row: dict[str, Any] = {"key": r.key, "hard": qty(r.key, r.hard), "carved": qty(r.key, r.carved),
                               "used": qty(r.key, r.used), "subtree": qty(r.key, r.subtree),
                               "free": qty(r.key, r.free)}
        if isinstance(usage, ClusterUsage):
            row["clusters"] = {name: qty(r.key, part.used(group.name).get(r.key, 0))
                               for name, part in usage.clusters.items()}
        if lending and r.key in lending:
            row["lending"] = lending[r.key]
        rows.append(row)
    return rows


def _cash_rows(group: CompiledGroup, usage: UsageSource) -> list[dict[str, str]]:
    return [
        {"key": c.key, "period": c.period, "budget": format_hours(c.budget), "carved": format_hours(c.carved),
         "used": format_hours(c.used), "free": format_hours(c.free)}
        for c in cash_rows(group, usage.cash_used(group.name))
    ]


def tree_json(policy: CompiledPolicy, usage: UsageSource) -> list[dict[str, Any]]:
    below = usage_below(policy, usage.used)
    lending = lending_json(policy, usage.used)

    def node(group: CompiledGroup) -> dict[str, Any]:
        return {
            "name": group.name,
            "path": group.path,
            "mode": group.mode,
            "limits": _rows(group, usage, below[group.name], lending.get(group.name)),
            "cash": _cash_rows(group, usage),
            "children": [node(policy.groups[c]) for c in group.children],
        }

    return [node(g) for g in _roots(policy)]


def _lending_line(row: Mapping[str, Any], with_usage: bool) -> str:
    """`lend 2  borrow 0  guarantee 2`, and with usage `  own 3  borrowed 1 (from root/ai-platform 1)  lent out 1`."""
    line = f"lend {row['lend']}  borrow {row['borrow']}  guarantee {row['guarantee']}"
    if with_usage:
        sources = ", ".join(f"{d['path']} {d['amount']}" for d in row["borrowed_from"])
        line += f"  own {row['own']}  borrowed {row['borrowed']}" + (f" (from {sources})" if sources else "")
        line += f"  lent out {row['lent_out']}" + (f"  over {row['over']}" if row["over"] != "0" else "")
    return line


def render_tree(policy: CompiledPolicy, usage: UsageSource, with_usage: bool = False) -> str:
    """The tree as text; `with_usage` (a snapshot was given) adds the borrowing figures to lending keys."""
    lines: list[str] = []
    below = usage_below(policy, usage.used)
    lending = lending_json(policy, usage.used)

    def walk(group: CompiledGroup, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        mode = "" if group.mode == "enforce" else f"  [{group.mode}]"
        lines.append(f"{prefix}{branch}{group.name}{mode}")
        inner = prefix + ("" if top else ("    " if last else "│   "))
        rows = _rows(group, usage, below[group.name], lending.get(group.name))
        if rows:
            width = max(len(r["key"]) for r in rows)
            for r in rows:
                shares = ", ".join(f"{name} {used}" for name, used in r.get("clusters", {}).items())
                subtree = f"  subtree {r['subtree']:>7}" if group.children else ""
                lines.append(
                    f"{inner}  {r['key']:<{width}}  hard {r['hard']:>7}  carved {r['carved']:>7}"
                    f"  used {r['used']:>7}{subtree}  free {r['free']:>7}" + (f"  ({shares})" if shares else "")
                )
                if "lending" in r:
                    lines.append(f"{inner}  {'':<{width}}  {_lending_line(r['lending'], with_usage)}")
        for c in _cash_rows(group, usage):
            lines.append(
                f"{inner}  cash {c['key']} per {c['period']}: budget {c['budget']}, carved {c['carved']},"
                f" used {c['used']}, {c['free']} free"
            )
        for index, child in enumerate(group.children):
            walk(policy.groups[child], inner, index == len(group.children) - 1, False)

    for root in _roots(policy):
        walk(root, "", True, True)
    return "\n".join(lines) + "\n"
