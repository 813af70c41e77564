"""The editor files: VS Code's extension manifest and TextMate grammar say what docs/editors.md says.

The grammar's patterns are Oniguruma; those it uses are also Python regular
expressions, so each is compiled here and tried on lines of the example
organisation, with the captures a highlighter would colour.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR: dict[str, Any] = json.loads((VSCODE / "syntaxes" / "quota.tmLanguage.json").read_text())


def pattern(name: str) -> re.Pattern[str]:
    (found,) = [p for p in GRAMMAR["patterns"] if p.get("name") == name]
    return re.compile(found["match"])


def test_the_manifest_starts_quotalang_lsp_for_quota_files() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".quota"] and language["id"] == "quota"
    assert manifest["contributes"]["grammars"][0]["scopeName"] == GRAMMAR["scopeName"] == "source.quota"
    settings = manifest["contributes"]["configuration"]["properties"]
    assert settings["quotalang.command"]["default"] == ["quotalang", "lsp"]
    assert "vscode-languageclient" in manifest["dependencies"]


def test_every_grammar_pattern_compiles() -> None:
    for entry in [*GRAMMAR["patterns"], *GRAMMAR["repository"].values()]:
        for field in ("match", "begin", "end"):
            if field in entry:
                re.compile(entry[field])


def test_a_group_header_and_a_kind_header_are_captured() -> None:
    group = pattern("meta.group.quota").match("group nlp in ai-platform {")
    assert group is not None and group.group(2, 4) == ("nlp", "ai-platform")
    kind = pattern("meta.kind.quota").match("kind kubeflow.org/v1 TFJob {")
    assert kind is not None and kind.group(2, 3) == ("kubeflow.org/v1", "TFJob")


def test_every_limit_line_of_the_examples_highlights_its_key() -> None:
    (key_rule,) = [p for p in GRAMMAR["patterns"] if "captures" in p and "2" in p["captures"]
                   and p["captures"]["2"]["name"].startswith("variable.other.property.key")]
    key = re.compile(key_rule["match"])
    lines = [line for path in sorted((ROOT / "examples" / "policies").glob("*.quota"))
             for line in path.read_text().splitlines() if re.match(r"\s+(cash\s+)?(requests|limits)\.", line)]
    assert len(lines) > 20
    for line in lines:
        found = key.match(line)
        assert found is not None, line
        assert found.group(2) == line.split()[1 if line.split()[0] == "cash" else 0]
