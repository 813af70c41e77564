"""Hover text: a group's place, mode and room per key; what a key limits; what a kind-rule path reads.

Figures come from the compiled policy (`limit_rows`, the numbers `tree`
prints), with used and free only when a usage snapshot is configured. While
the policy has errors nothing is compiled, and a group's hover shows its keys
as written.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from quotalang import nodes
from quotalang.decision import qty
from quotalang.loader import resolve_import
from quotalang.lsp.analysis import Analysis, resolve
from quotalang.lsp.convert import to_range
from quotalang.lsp.index import Index, Target
from quotalang.policy import limit_rows
from quotalang.resources import extended_name, resource_class, split_key

_WHAT = {"requests": "requests", "limits": "limits", "": "requests"}


def hover(analysis: Analysis, file: str, line: int, column: int) -> types.Hover | None:
    """The hover at a 1-based position of display-named `file`, or None."""
    index = analysis.index
    target = index.at(file, line, column) if index else None
    if target is None or index is None:
        return None
    if target.kind in ("group", "parent"):
        text = group_text(analysis, index, target.name)
    elif target.kind in ("key", "cash"):
        text = key_text(target)
    elif target.kind == "path":
        text = path_text(target)
    elif target.kind == "import":
        text = import_text(target)
    elif target.kind == "created":
        rule = index.rule(target.name)
        where = f"its kind rule is at {rule.span}" if rule else "no kind rule reads it: it is never charged"
        text = f"**creates {target.name}**: charged through its owner, this kind; {where}"
    else:
        assert target.rule is not None
        text = f"**kind {target.name}**: {len(target.rule.parts)} part(s) of replicas × pod template"
    if text is None:
        return None
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text), to_range(target.span))


def group_text(analysis: Analysis, index: Index, name: str) -> str | None:
    group = index.groups.get(name)
    if group is None:
        return None
    kids = ", ".join(c.name for c in index.children.get(name, ())) or "none"
    compiled = analysis.compiled.groups.get(name) if analysis.compiled else None
    if compiled is None:
        keys = "\n".join(f"- `{s.key}` {s.quantity}" for s in group.body if isinstance(s, nodes.Limit))
        return f"**group {name}** (parent: {group.parent or 'none, a root'}; children: {kids})\n\n" \
               f"{keys}\n\n_the policy has errors: room per key once it compiles_"
    head = f"**group {name}** · `{compiled.path}` · mode {compiled.mode}\n\nchildren: {kids}\n\n"
    head += bindings_text(index, group)
    usage = analysis.usage
    used = usage.used(name) if usage else {}
    columns = "| key | hard | carved | own room |" + (" used | free |" if usage else "")
    rows = [columns, "|---" * (6 if usage else 4) + "|"]
    for row in limit_rows(compiled, used):
        cells = [f"`{row.key}`", qty(row.key, row.hard), qty(row.key, row.carved),
                 qty(row.key, max(row.hard - row.carved, 0))]
        if usage:
            cells += [qty(row.key, row.used), qty(row.key, row.free)]
        rows.append("| " + " | ".join(cells) + " |")
    cash = [f"- cash `{k}` {b.hours}h per {b.period or 'lifetime'}" for k, b in compiled.cash.items()]
    return head + "\n".join(rows) + ("\n\n" + "\n".join(cash) if cash else "")


def bindings_text(index: Index, group: nodes.Group) -> str:
    """The group's own namespace bindings, then those it inherits (a binding covers its subtree)."""
    lines = []
    seen: set[str] = set()
    current: nodes.Group | None = group
    while current is not None and current.name not in seen:
        seen.add(current.name)
        bound = [(s.default, p) for s in current.body if isinstance(s, nodes.Namespaces) for p in s.patterns]
        if bound:
            shown = ", ".join(f'"{p}"' + (" (default)" if default else "") for default, p in bound)
            lines.append(f"namespaces: {shown}" if current is group else f"namespaces from {current.name}: {shown}")
        current = index.groups.get(current.parent) if current.parent else None
    return "".join(f"{line}\n\n" for line in lines)


def key_meaning(base: str) -> str:
    """What a ResourceQuota name counts, in the words of Kubernetes' quota docs."""
    if base == "pods":
        return "the number of the group's pods that are not terminal"
    if base == "count/pods":
        return "the number of the group's pods, terminal ones included"
    if base.startswith("count/"):
        return f"the number of {base[len('count/'):]} objects"
    side, _, bare = base.partition(".") if base.startswith(("requests.", "limits.")) else ("", "", base)
    klass = resource_class(base)
    if klass == "extended":
        return f"the sum of the pods' {extended_name(base)} requests (an extended resource: requests only)"
    return f"the sum of the pods' {bare} {_WHAT[side]}"


def key_text(target: Target) -> str:
    key = split_key(target.name)
    amount = ""
    group = target.group
    for stmt in group.body if group else ():
        if isinstance(stmt, nodes.Limit) and stmt.key == target.name and target.kind == "key":
            amount = f"\n\nin group {group.name if group else ''}: {stmt.quantity}"
            break
    if not key.known:
        return f"**{target.name}**: not a ResourceQuota name; no pod is ever charged it"
    text = f"**{target.name}**: {key_meaning(key.base)}"
    if key.model is not None:
        text += (f"\n\nA model key: usage of model {key.model} counts toward `{key.base}` too (the prefix rule),"
                 f" so both limits hold at once")
    if target.kind == "cash":
        text += "\n\nA cash budget: unit-hours of it, accrued while the pods run"
    return text + amount


def path_text(target: Target) -> str:
    path = target.path
    assert path is not None
    fields = " → ".join(f"`{s}`" if s != "*" else "each item" for s in path.segments)
    where = f"each item of `{target.each.text}`" if path.relative and target.each else "the object"
    return f"**{path.text}**: reads {fields} of {where}"


def import_text(target: Target) -> str:
    found = resolve_import(target.name, resolve(target.span.file).parent)
    if found is None:
        return f"**import {target.name}**: cannot be resolved"
    return f"**import {target.name}**: `{Path(found).resolve()}`"
