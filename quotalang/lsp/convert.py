"""Our spans and findings as LSP positions, ranges and diagnostics.

Spans are 1-based with an exclusive end; LSP positions are 0-based. Our
columns count code points and LSP's default UTF-16 units: the same for
every character but those past the BMP (emoji), which policies hold only in
comments, if at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from lsprotocol import types

from quotalang import nodes
from quotalang.errors import Diagnostic
from quotalang.lsp.analysis import Analysis, resolve
from quotalang.lsp.index import Index

SOURCE = "quotalang"
_UNDECLARED = re.compile(r"does not declare (cash )?(\S+), which its parent (\S+)")


def to_range(span: nodes.Span) -> types.Range:
    end_line = max(span.end_line, span.line)
    end_column = span.end_column if end_line > span.line else max(span.end_column, span.column + 1)
    return types.Range(types.Position(span.line - 1, span.column - 1), types.Position(end_line - 1, end_column - 1))


def uri_of(name: str) -> str:
    return resolve(name).as_uri()


def location(span: nodes.Span) -> types.Location:
    return types.Location(uri_of(span.file), to_range(span))


def _related(diag: Diagnostic, index: Index | None) -> Iterator[types.DiagnosticRelatedInformation]:
    """Where else a finding is: each child's share of an over-allocated key, the parent's key a child lacks."""
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
                    yield types.DiagnosticRelatedInformation(location(stmt.span),
                                                             f"{child.name}'s share: {amount}")
                    break
    elif diag.code == "E104" and (found := _UNDECLARED.search(diag.message)):
        parent = index.groups.get(found.group(3))
        want = nodes.Cash if found.group(1) else nodes.Limit
        for stmt in parent.body if parent else ():
            if isinstance(stmt, want) and stmt.key == found.group(2):
                yield types.DiagnosticRelatedInformation(location(stmt.span), f"{found.group(3)} limits it here")


def diagnostic(diag: Diagnostic, index: Index | None) -> types.Diagnostic:
    span = diag.span or nodes.Span("", 1, 1, 1, 1)
    severity = types.DiagnosticSeverity.Error if diag.severity == "error" else types.DiagnosticSeverity.Warning
    related = list(_related(diag, index))
    return types.Diagnostic(
        range=to_range(span),
        message=diag.message + (f"\nhint: {diag.hint}" if diag.hint else ""),
        severity=severity,
        code=diag.code,
        source=SOURCE,
        related_information=related or None,
        data={"hint": diag.hint} if diag.hint else None,
    )


def by_file(analysis: Analysis, fallback: Path) -> dict[str, list[types.Diagnostic]]:
    """Every file's diagnostics by URI (an empty list for a clean file); findings with no file go to `fallback`."""
    out: dict[str, list[types.Diagnostic]] = {path.as_uri(): [] for path in analysis.names}
    for diag in analysis.findings:
        uri = uri_of(diag.span.file) if diag.span else fallback.as_uri()
        out.setdefault(uri, []).append(diagnostic(diag, analysis.index))
    return out
