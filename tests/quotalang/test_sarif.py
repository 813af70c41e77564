"""`quotalang lint --format sarif`: a SARIF 2.1.0 log that the official schema accepts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema

from quotalang.cli import main
from quotalang.errors import CODES
from tests.quotalang.sarif_schema import schema

FIVE = """\
import "quotalang:policies"

settings {
  warn at 150%
}

group root {
  limits.cpu 10
  limits.memory 1.5.5Gi
  requests.memory 4Gi
}

group a in root {
  limits.cpu 8
  limits.cpu 9
  limits.memory 1Gi
  requests.memory 1Gi
}

group b in root {
  limits.cpu 4
  limits.memory 1Gi
}
"""


def lint_sarif(folder: Path, monkeypatch: Any) -> tuple[int, dict[str, Any]]:
    monkeypatch.chdir(folder)
    out = io.StringIO()
    code = main(["lint", ".", "--format", "sarif"], out=out)
    return code, json.loads(out.getvalue())


def region(result: dict[str, Any]) -> tuple[str, int, int, int, int]:
    return where(result["locations"][0])


def where(location: dict[str, Any]) -> tuple[str, int, int, int, int]:
    loc = location["physicalLocation"]
    r = loc["region"]
    return loc["artifactLocation"]["uri"], r["startLine"], r["startColumn"], r["endLine"], r["endColumn"]


def test_five_findings_validate_against_the_sarif_schema(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "org.quota").write_text(FIVE)
    code, log = lint_sarif(tmp_path, monkeypatch)
    assert code == 1
    jsonschema.Draft4Validator(schema()).validate(log)
    (run,) = log["runs"]
    found = {(r["ruleId"], *region(r)[1:3]): r for r in run["results"]}
    # Hand-placed: warn at (4:3), the parent's over-carved key (8:3), the bad value (9:17),
    # b lacks requests.memory (20:7), a repeats limits.cpu (15:3).
    expected = {("E203", 4, 3), ("E105", 8, 3), ("E109", 9, 17), ("E104", 20, 7), ("E107", 15, 3)}
    assert expected <= set(found)
    assert len({r["ruleId"] for r in run["results"]}) >= 5
    assert region(found[("E105", 8, 3)]) == ("org.quota", 8, 3, 8, 13)  # `limits.cpu`, end exclusive
    assert region(found[("E109", 9, 17)]) == ("org.quota", 9, 17, 9, 24)  # `1.5.5Gi`
    over = found[("E105", 8, 3)]
    assert over["level"] == "error"
    assert over["message"]["text"].startswith("children of root over-allocate limits.cpu: 12 > 10 (a 8, b 4)")
    assert over["locations"][0]["physicalLocation"]["region"]["snippet"]["text"] == "  limits.cpu 10"
    assert over["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    # Each child's share of the over-allocated key: a's first limits.cpu (14:3) and b's (21:3), 12 characters each.
    assert [(where(r), r["message"]["text"]) for r in over["relatedLocations"]] == [
        (("org.quota", 14, 3, 14, 15), "a's share: 8"), (("org.quota", 21, 3, 21, 15), "b's share: 4")]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CODES)
    for result in run["results"]:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert rule["help"]["text"] and rule["shortDescription"]["text"]
    assert rules[list(CODES).index("E105")]["shortDescription"]["text"] == "Children's limits exceed the parent's."
    assert run["columnKind"] == "unicodeCodePoints"


def test_fingerprints_survive_moved_lines_and_change_with_the_finding(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "org.quota").write_text(FIVE)
    _, before = lint_sarif(tmp_path, monkeypatch)
    (tmp_path / "org.quota").write_text("# a comment\n\n" + FIVE.replace("limits.cpu 9", "limits.cpu 7"))
    _, after = lint_sarif(tmp_path, monkeypatch)

    def prints(log: dict[str, Any]) -> dict[str, str]:
        return {r["ruleId"]: r["partialFingerprints"]["quotalangFinding/v1"] for r in log["runs"][0]["results"]
                if r["ruleId"] != "E104"}

    old, new = prints(before), prints(after)
    assert old["E203"] == new["E203"] and old["E105"] == new["E105"] and old["E109"] == new["E109"]
    assert old["E107"] != new["E107"]  # its own line changed
    b_lacks = [r for r in before["runs"][0]["results"] if r["ruleId"] == "E104"]
    assert [r["partialFingerprints"]["quotalangFinding/v1"][-2:] for r in b_lacks] == [":1"]


def test_a_syntax_error_is_a_located_result_and_a_clean_policy_has_none(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "bad.quota").write_text("group a {\n  limits.cpu 1 @\n}\n")
    code, log = lint_sarif(tmp_path, monkeypatch)
    assert code == 1
    jsonschema.Draft4Validator(schema()).validate(log)
    (result,) = log["runs"][0]["results"]
    assert result["ruleId"] in {"E001", "E002"} and region(result)[:3] == ("bad.quota", 2, 16)
    (tmp_path / "bad.quota").write_text('import "quotalang:policies"\n\ngroup a {\n  limits.cpu 1\n}\n')
    code, log = lint_sarif(tmp_path, monkeypatch)
    jsonschema.Draft4Validator(schema()).validate(log)
    assert [r["ruleId"] for r in log["runs"][0]["results"] if r["level"] == "error"] == []
    assert code == 0
