"""Go to definition, references and rename: a group's name is its identity across the policy.

Definition of `in NAME` is NAME's declaration; of a group, itself; of an
import, the imported file (each `.quota` file of an imported directory); of a
child's key, the parent's line for that key; of a kind in `creates`, the
kind rule that reads it (the shipped library's included). References of a
group are its declaration and every `in NAME`; its children are the groups
those belong to. References of a kind rule are the `creates` naming it.

Rename rewrites the declaration and every `in NAME` (an `unlabelled group
NAME` setting too); workloads' group labels live outside the policy and are
not touched, so the new name must also be the label's value.
"""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types

from quotalang import nodes
from quotalang.loader import resolve_import
from quotalang.lsp.analysis import resolve
from quotalang.lsp.convert import location, to_range, uri_of
from quotalang.lsp.index import Index, header

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")  # the grammar's NAME


def definition(index: Index, file: str, line: int, column: int) -> list[types.Location]:
    target = index.at(file, line, column)
    if target is None:
        return []
    if target.kind in ("group", "parent"):
        group = index.groups.get(target.name)
        return [location(group.name_span)] if group else []
    if target.kind == "import":
        found = resolve_import(target.name, resolve(file).parent)
        if found is None or not found.exists():
            return []
        files = sorted(p for p in found.iterdir() if p.suffix == ".quota") if found.is_dir() else [found]
        start = types.Range(types.Position(0, 0), types.Position(0, 0))
        return [types.Location(Path(p).resolve().as_uri(), start) for p in files]
    if target.kind in ("created", "rule"):
        rule = index.rule(target.name)
        return [location(header(rule))] if rule else []
    if target.kind in ("key", "cash") and target.group is not None and target.group.parent:
        parent = index.groups.get(target.group.parent)
        want = nodes.Limit if target.kind == "key" else nodes.Cash
        for stmt in parent.body if parent else ():
            if isinstance(stmt, want) and stmt.key == target.name:
                return [location(stmt.span)]
    return []


def references(index: Index, file: str, line: int, column: int, declaration: bool) -> list[types.Location]:
    target = index.at(file, line, column)
    if target is not None and target.kind in ("rule", "created"):
        rule = index.rule(target.name)
        made = [location(c.span) for c in index.creators(target.name)]
        return ([location(header(rule))] if rule and declaration else []) + made
    if target is None or target.kind not in ("group", "parent"):
        return []
    spans = index.references(target.name)
    return [location(s) for s in (spans if declaration else spans[1:])]


def _unlabelled_spans(index: Index, name: str) -> list[nodes.Span]:
    """The group name inside `unlabelled group NAME` (the setting's span ends with the name)."""
    out = []
    for tree in index.files.values():
        for block in tree.settings:
            for entry in block.entries:
                one_line = entry.span.line == entry.span.end_line
                if isinstance(entry, nodes.Unlabelled) and entry.group == name and one_line:
                    end = entry.span.end_column
                    out.append(nodes.Span(entry.span.file, entry.span.line, end - len(name), entry.span.line, end))
    return out


def rename(index: Index, file: str, line: int, column: int, new_name: str) -> types.WorkspaceEdit | None:
    target = index.at(file, line, column)
    if target is None or target.kind not in ("group", "parent") or target.name not in index.groups:
        return None
    if not _NAME.match(new_name) or new_name in index.groups:
        raise ValueError(f"{new_name!r} is not a free group name")
    changes: dict[str, list[types.TextEdit]] = {}
    for span in [*index.references(target.name), *_unlabelled_spans(index, target.name)]:
        changes.setdefault(uri_of(span.file), []).append(types.TextEdit(to_range(span), new_name))
    return types.WorkspaceEdit(changes=changes)
