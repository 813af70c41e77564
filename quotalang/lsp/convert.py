"""Our spans and findings as LSP positions, ranges and diagnostics.

Spans are 1-based with an exclusive end; LSP positions are 0-based. Our
columns count code points and LSP's default UTF-16 units: the same for
every character but those past the BMP (emoji), which policies hold only in
comments, if at all.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from quotalang import nodes
from quotalang.errors import Diagnostic
from quotalang.lsp.analysis import Analysis, resolve
from quotalang.lsp.index import Index
from quotalang.lsp.related import elsewhere

SOURCE = "quotalang"


def to_range(span: nodes.Span) -> types.Range:
    end_line = max(span.end_line, span.line)
    end_column = span.end_column if end_line > span.line else max(span.end_column, span.column + 1)
    return types.Range(types.Position(span.line - 1, span.column - 1), types.Position(end_line - 1, end_column - 1))


def uri_of(name: str) -> str:
    return resolve(name).as_uri()


def location(span: nodes.Span) -> types.Location:
    return types.Location(uri_of(span.file), to_range(span))


def diagnostic(diag: Diagnostic, index: Index | None) -> types.Diagnostic:
    span = diag.span or nodes.Span("", 1, 1, 1, 1)
    severity = types.DiagnosticSeverity.Error if diag.severity == "error" else types.DiagnosticSeverity.Warning
    related = [types.DiagnosticRelatedInformation(location(span), text) for span, text in elsewhere(diag, index)]
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
