"""Where else a finding is, for the editor's related information and SARIF's relatedLocations.

Read from the checker's public output (code, span, message) and the syntax
tree: an over-allocated key (E105/E106) at the parent points at each child's
share; a child missing a key (E104) at the parent's line for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from quotalang import nodes
from quotalang.errors import Diagnostic
from quotalang.lsp.index import Index

_UNDECLARED = re.compile(r"does not declare (cash )?(\S+), which its parent (\S+)")


def elsewhere(diag: Diagnostic, index: Index | None) -> Iterator[tuple[nodes.Span, str]]:
    """(span, what it is) for every other place `diag` is about."""
    if index is None or diag.span is None:
        return
    group = index.group_at(diag.span.file, diag.span.line, diag.span.column)
    if group is None:
        return
    if diag.code in ("E105", "E106"):
        target = index.at(diag.span.file, diag.span.line, diag.span.column)
        if target is None or target.kind not in ("key", "cash"):
            return
        for child in index.children.get(group.name, ()):
            for stmt in child.body:
                if type(stmt) is (nodes.Limit if diag.code == "E105" else nodes.Cash) and stmt.key == target.name:
                    amount = stmt.quantity if isinstance(stmt, nodes.Limit) else f"{stmt.hours}h"
                    yield stmt.span, f"{child.name}'s share: {amount}"
                    break
    elif diag.code == "E104" and (found := _UNDECLARED.search(diag.message)):
        parent = index.groups.get(found.group(3))
        want = nodes.Cash if found.group(1) else nodes.Limit
        for stmt in parent.body if parent else ():
            if isinstance(stmt, want) and stmt.key == found.group(2):
                yield stmt.span, f"{found.group(3)} limits it here"
