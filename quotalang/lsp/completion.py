"""Completion from the text before the cursor (which need not parse while typing).

After `in` and `unlabelled group`: group names. On a statement line in a
group: resource keys (the ResourceQuota names, those the policy uses, and
each with the model suffixes the policy uses on that base), `mode`, `cash`.
In settings: the settings. At the top level: the block keywords.
"""

from __future__ import annotations

import re

from lsprotocol import types

from quotalang.lsp.index import Index
from quotalang.resources import STANDARD_KEYS, split_key

_AFTER_IN = re.compile(r"^\s*group\s+\S+\s+in\s+[a-z0-9\-_.]*$")
_AFTER_UNLABELLED = re.compile(r"^\s*unlabelled\s+group\s+[a-z0-9\-_.]*$")
_STATEMENT = re.compile(r"^\s*[A-Za-z0-9_.\-/]*$")
_HEADER = re.compile(r"^\s*(settings|group|kind|pods)\b")
SETTINGS = ('group label "', "model label cpu \"", "model label gpu \"", "model label memory \"",
            'gpu resource "', "unlabelled allow", "unlabelled deny", "unlabelled group ", "warn at 90%")
TOP = ("import", "settings", "group", "kind")
EXTRA_KEYS = ("requests.nvidia.com/gpu", "requests.amd.com/gpu", "count/pods")


def block_of(text: str, line: int) -> str | None:
    """The keyword of the innermost block open at 0-based `line` ('settings', 'group', ...), None at the top."""
    stack: list[str] = []
    for raw in text.splitlines()[:line]:
        code = raw.split("#", 1)[0]
        header = _HEADER.match(code)
        for char in code:
            if char == "{":
                stack.append(header.group(1) if header else "?")
            elif char == "}" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _items(labels: list[str], kind: types.CompletionItemKind, detail: str) -> list[types.CompletionItem]:
    return [types.CompletionItem(label=label, kind=kind, detail=detail) for label in labels]


def keys(index: Index | None) -> list[str]:
    found = set(STANDARD_KEYS) | set(EXTRA_KEYS)
    if index is not None:
        for group in index.groups.values():
            found.update(s.key for s in group.body if hasattr(s, "key"))
        for base, models in index.models().items():
            found.update(f"{base}.{model}" for model in models)
            found.add(base)
        found = {k for k in found if split_key(k).known}
    return sorted(found)


def complete(
    text: str, line: int, character: int, index: Index | None, group: str | None
) -> list[types.CompletionItem]:
    """Items at the 0-based position; `group` is the group being edited (not offered as its own parent)."""
    lines = text.splitlines()
    before = lines[line][:character] if line < len(lines) else ""
    if _AFTER_IN.match(before) or _AFTER_UNLABELLED.match(before):
        names = sorted(n for n in (index.groups if index else {}) if n != group)
        return _items(names, types.CompletionItemKind.Module, "group")
    block = block_of(text, line)
    if not _STATEMENT.match(before):
        return []
    if block == "group":
        return [*_items(keys(index), types.CompletionItemKind.Property, "resource key"),
                *_items(["mode", "cash"], types.CompletionItemKind.Keyword, "keyword")]
    if block == "settings":
        return _items(list(SETTINGS), types.CompletionItemKind.Keyword, "setting")
    if block is None:
        return _items(list(TOP), types.CompletionItemKind.Keyword, "keyword")
    return []
