"""Code actions for the fixes lint already suggests, read from the findings' hints.

`did you mean `X`?` and `use `X`` replace, on the finding's line, the run
of words overlapping its range that is most like X (a misspelt key, parent or
group, `mode warning` → `mode warn`); `declare `KEY 0`` (E104, a child that
lacks a key its parent limits) adds that line before the group's closing
brace.
"""

from __future__ import annotations

import difflib
import re

from lsprotocol import types

from quotalang.lsp.convert import to_range
from quotalang.lsp.index import Index

_REPLACE = re.compile(r"(?:did you mean|^use) `([^`]+)`")
_DECLARE = re.compile(r"declare `([^`]+)` to give it none")
_WORD = re.compile(r'[^\s{}"#]+')


def replacement(line: str, start: int, end: int, fix: str) -> types.Range | None:
    """The 0-based columns of the words on `line` overlapping [start, end) most like `fix`, as a range."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(line.split("#", 1)[0])]
    width = len(fix.split())
    best: tuple[float, int, int] | None = None
    for i in range(len(words)):
        run = words[i : i + width]
        a, b = run[0][0], run[-1][1]
        if b < start or a > max(end, start):
            continue
        score = difflib.SequenceMatcher(None, line[a:b], fix).ratio()
        if best is None or score > best[0]:
            best = (score, a, b)
    return None if best is None else types.Range(types.Position(0, best[1]), types.Position(0, best[2]))


def _hint(diag: types.Diagnostic) -> str:
    if isinstance(diag.data, dict) and isinstance(diag.data.get("hint"), str):
        return str(diag.data["hint"])
    return diag.message.partition("\nhint: ")[2]


def actions(
    uri: str, file: str, text: str, diagnostics: list[types.Diagnostic], index: Index | None
) -> list[types.CodeAction]:
    out: list[types.CodeAction] = []
    lines = text.splitlines()
    for diag in diagnostics:
        if diag.source != "quotalang":
            continue
        hint = _hint(diag)
        row = diag.range.start.line
        if (found := _REPLACE.search(hint)) and row < len(lines):
            end = diag.range.end.character if diag.range.end.line == row else len(lines[row])
            where = replacement(lines[row], diag.range.start.character, end, found.group(1))
            if where is None:
                continue
            span = types.Range(types.Position(row, where.start.character), types.Position(row, where.end.character))
            edit = types.TextEdit(span, found.group(1))
            out.append(types.CodeAction(title=f"replace with {found.group(1)}", kind=types.CodeActionKind.QuickFix,
                                        diagnostics=[diag], is_preferred=True,
                                        edit=types.WorkspaceEdit(changes={uri: [edit]})))
        elif (found := _DECLARE.search(hint)) and index is not None:
            group = index.group_at(file, diag.range.start.line + 1, diag.range.start.character + 1)
            if group is None:
                continue
            close = to_range(group.span).end
            before = types.Position(close.line, 0)
            edit = types.TextEdit(types.Range(before, before), f"  {found.group(1)}\n")
            out.append(types.CodeAction(title=f"declare {found.group(1)}", kind=types.CodeActionKind.QuickFix,
                                        diagnostics=[diag], is_preferred=True,
                                        edit=types.WorkspaceEdit(changes={uri: [edit]})))
    return out
