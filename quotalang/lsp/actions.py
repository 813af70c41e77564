"""Code actions for the fixes lint already suggests, read from the findings' hints.

`did you mean `X`?` and `use `X`` replace the finding's range with X (a
misspelt key, an E111 key); `declare `KEY 0`` (E104, a child that lacks a
key its parent limits) adds that line before the group's closing brace.
"""

from __future__ import annotations

import re

from lsprotocol import types

from quotalang.lsp.convert import to_range
from quotalang.lsp.index import Index

_REPLACE = re.compile(r"(?:did you mean|^use) `([^`]+)`")
_DECLARE = re.compile(r"declare `([^`]+)` to give it none")


def _hint(diag: types.Diagnostic) -> str:
    if isinstance(diag.data, dict) and isinstance(diag.data.get("hint"), str):
        return str(diag.data["hint"])
    return diag.message.partition("\nhint: ")[2]


def actions(uri: str, file: str, diagnostics: list[types.Diagnostic], index: Index | None) -> list[types.CodeAction]:
    out: list[types.CodeAction] = []
    for diag in diagnostics:
        if diag.source != "quotalang":
            continue
        hint = _hint(diag)
        if (found := _REPLACE.search(hint)) and diag.range.start.line == diag.range.end.line:
            edit = types.TextEdit(diag.range, found.group(1))
            out.append(types.CodeAction(title=f"replace with {found.group(1)}", kind=types.CodeActionKind.QuickFix,
                                        diagnostics=[diag], is_preferred=True,
                                        edit=types.WorkspaceEdit(changes={uri: [edit]})))
        elif (found := _DECLARE.search(hint)) and index is not None:
            group = index.group_at(file, diag.range.start.line + 1, diag.range.start.character + 1)
            if group is None:
                continue
            close = to_range(group.span).end
            where = types.Position(close.line, 0)
            edit = types.TextEdit(types.Range(where, where), f"  {found.group(1)}\n")
            out.append(types.CodeAction(title=f"declare {found.group(1)}", kind=types.CodeActionKind.QuickFix,
                                        diagnostics=[diag], is_preferred=True,
                                        edit=types.WorkspaceEdit(changes={uri: [edit]})))
    return out
