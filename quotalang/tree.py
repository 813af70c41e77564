"""`quotalang tree`: the group tree with hard / carved / used / free per key."""

from __future__ import annotations

from typing import Any

from quotalang.decision import qty
from quotalang.evaluator import UsageSource
from quotalang.policy import CompiledGroup, CompiledPolicy, cash_rows, limit_rows
from quotalang.units import format_hours


def _roots(policy: CompiledPolicy) -> list[CompiledGroup]:
    return [g for g in policy.groups.values() if g.parent is None]


def _rows(group: CompiledGroup, usage: UsageSource) -> list[dict[str, str]]:
    return [
        {"key": r.key, "hard": qty(r.key, r.hard), "carved": qty(r.key, r.carved), "used": qty(r.key, r.used),
         "free": qty(r.key, r.free)}
        for r in limit_rows(group, usage.used(group.name))
    ]


def _cash_rows(group: CompiledGroup, usage: UsageSource) -> list[dict[str, str]]:
    return [
        {"key": c.key, "period": c.period, "budget": format_hours(c.budget), "carved": format_hours(c.carved),
         "used": format_hours(c.used), "free": format_hours(c.free)}
        for c in cash_rows(group, usage.cash_used(group.name))
    ]


def tree_json(policy: CompiledPolicy, usage: UsageSource) -> list[dict[str, Any]]:
    def node(group: CompiledGroup) -> dict[str, Any]:
        return {
            "name": group.name,
            "path": group.path,
            "mode": group.mode,
            "limits": _rows(group, usage),
            "cash": _cash_rows(group, usage),
            "children": [node(policy.groups[c]) for c in group.children],
        }

    return [node(g) for g in _roots(policy)]


def render_tree(policy: CompiledPolicy, usage: UsageSource) -> str:
    lines: list[str] = []

    def walk(group: CompiledGroup, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        mode = "" if group.mode == "enforce" else f"  [{group.mode}]"
        lines.append(f"{prefix}{branch}{group.name}{mode}")
        inner = prefix + ("" if top else ("    " if last else "│   "))
        rows = _rows(group, usage)
        if rows:
            width = max(len(r["key"]) for r in rows)
            for r in rows:
                lines.append(
                    f"{inner}  {r['key']:<{width}}  hard {r['hard']:>7}  carved {r['carved']:>7}"
                    f"  used {r['used']:>7}  free {r['free']:>7}"
                )
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
