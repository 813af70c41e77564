"""Lint findings as a SARIF 2.1.0 log, the shape Regal and conftest emit, for GitHub code scanning.

Decisions where the issue is silent:

- Every code of `errors.CODES` is a rule, in that table's order, so a `ruleIndex`
  means the same rule in every log of one quotalang version; results point at
  their rule by id and index.
- A rule's help is its meaning plus where the codes are documented; how to fix
  one finding is that finding's own hint, appended to its message (as `lint`
  prints it).
- Columns are Unicode code points (`columnKind`), as our spans count them, and
  regions end exclusive, as SARIF's `endColumn` does.
- `partialFingerprints` hash the code, the file, the finding's source line
  (stripped) and the text under its span, plus an occurrence counter: a finding
  keeps its fingerprint when lines above it move and loses it when its own line
  changes, which is how code scanning tells "moved" from "fixed and new".
- Related locations are the editor's (`quotalang.lsp.related`): each child's
  share of an over-allocated key, the parent's line of a key a child lacks.
- Paths the loader reports relative to the working directory are relative to
  `%SRCROOT%` (what `upload-sarif` resolves against the checkout); absolute ones
  are `file:` URIs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from quotalang import __version__
from quotalang.errors import CODES, Diagnostic
from quotalang.loader import Sources
from quotalang.lsp.index import Index
from quotalang.lsp.related import elsewhere
from quotalang.nodes import Span

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT = "quotalangFinding/v1"
_DOCS = "docs/language.md, section Codes"
_RULE_INDEX = {code: index for index, code in enumerate(CODES)}


def _level(code: str) -> str:
    return "warning" if code.startswith("W") else "error"


def rules() -> list[dict[str, Any]]:
    """One reportingDescriptor per code: stable id, a name, descriptions, help, default level."""
    out = []
    for code, meaning in CODES.items():
        sentence = meaning[0].upper() + meaning[1:] + "."
        out.append({
            "id": code,
            "name": "".join(word.capitalize() for word in _words(meaning)),
            "shortDescription": {"text": sentence},
            "fullDescription": {"text": f"{code}: {sentence}"},
            "help": {
                "text": f"{sentence} Each finding's message names what is wrong and its hint how to fix it; "
                        f"every code is listed in {_DOCS}.",
                "markdown": f"**{code}**: {sentence}\n\nEach finding's message names what is wrong and its hint "
                            f"how to fix it; every code is listed in `{_DOCS}`.",
            },
            "defaultConfiguration": {"level": _level(code)},
            "properties": {"tags": ["quota", "policy"], "precision": "very-high"},
        })
    return out


def _words(text: str) -> list[str]:
    return [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]


def _uri(file: str) -> dict[str, str]:
    path = Path(file)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": quote(str(PurePosixPath(*path.parts))), "uriBaseId": "%SRCROOT%"}


def _lines(texts: Mapping[str, str], file: str) -> list[str]:
    text = texts.get(file)
    return text.splitlines() if text is not None else []


def _region(span: Span, lines: list[str]) -> dict[str, Any]:
    region: dict[str, Any] = {
        "startLine": span.line,
        "startColumn": span.column,
        "endLine": max(span.end_line, span.line),
        "endColumn": span.end_column if span.end_line > span.line else max(span.end_column, span.column + 1),
    }
    if 0 < span.line <= len(lines):
        region["snippet"] = {"text": lines[span.line - 1]}
    return region


def _covered(diag: Diagnostic, lines: list[str]) -> tuple[str, str]:
    """The finding's source line (stripped) and the text under its span on that line."""
    span = diag.span
    if span is None or not 0 < span.line <= len(lines):
        return "", ""
    line = lines[span.line - 1]
    end = span.end_column if span.end_line == span.line else len(line) + 1
    return line.strip(), line[span.column - 1 : end - 1]


def _location(span: Span, lines: list[str], message: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"physicalLocation": {"artifactLocation": _uri(span.file), "region": _region(span, lines)}}
    if message:
        found["message"] = {"text": message}
    return found


def result(diag: Diagnostic, texts: Mapping[str, str], seen: dict[str, int], index: Index | None = None
           ) -> dict[str, Any]:
    """One SARIF result; `seen` counts earlier identical fingerprints (the occurrence suffix)."""
    text = diag.message + (f" (hint: {diag.hint})" if diag.hint else "")
    out: dict[str, Any] = {"ruleId": diag.code, "level": diag.severity, "message": {"text": text}}
    if diag.code in _RULE_INDEX:
        out["ruleIndex"] = _RULE_INDEX[diag.code]
    file = diag.span.file if diag.span else ""
    lines = _lines(texts, file)
    if diag.span is not None:
        out["locations"] = [_location(diag.span, lines)]
    related = [_location(span, _lines(texts, span.file), text) for span, text in elsewhere(diag, index)]
    if related:
        out["relatedLocations"] = [{"id": n, **loc} for n, loc in enumerate(related)]
    line, covered = _covered(diag, lines)
    digest = hashlib.sha256("\0".join((diag.code, file, line, covered)).encode()).hexdigest()[:32]
    seen[digest] = seen.get(digest, 0) + 1
    out["partialFingerprints"] = {FINGERPRINT: f"{digest}:{seen[digest]}"}
    return out


def sarif_log(findings: Iterable[Diagnostic], texts: Mapping[str, str], sources: Sources | None = None
              ) -> dict[str, Any]:
    """The whole log: one run of quotalang over one policy (`sources`, when it parsed: related locations)."""
    seen: dict[str, int] = {}
    index = Index.build(sources) if sources is not None else None
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "quotalang",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": rules(),
            }},
            "columnKind": "unicodeCodePoints",
            "results": [result(d, texts, seen, index) for d in findings],
        }],
    }
