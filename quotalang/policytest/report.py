"""Render a test report for people (text), programs (json) and CI (junit, github).

Every format is built from the same `Report`; JUnit goes through ElementTree
so it is always well-formed XML, and GitHub annotations escape what the
workflow-command syntax reserves.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

import orjson

from quotalang.policytest.runner import FILE_CASE, CaseResult, Coverage, Report

INDENT = "       "


def summary_line(report: Report) -> str:
    total = len(report.results)
    parts = [f"{report.count('PASS')} passed"]
    if report.count("FAIL"):
        parts.append(f"{report.count('FAIL')} failed")
    if report.count("ERROR"):
        parts.append(f"{report.count('ERROR')} error{'s' if report.count('ERROR') != 1 else ''}")
    return f"{total} case{'s' if total != 1 else ''}: {', '.join(parts)}"


def details(result: CaseResult) -> list[str]:
    """Why a case did not pass: the error, or `- expected / + actual` per field, then the decision."""
    if result.status == "ERROR":
        return (result.error or "").splitlines()
    lines = []
    for m in result.mismatches:
        lines.append(f"- {m.field}: {m.expected}")
        lines.append(f"+ {m.field}: {m.actual}")
    lines.append(f"decision: {result.summary}")
    lines.extend(f"  {text}" for text in result.message.splitlines())
    if result.explanation:
        lines.append("explanation:")
        lines.extend(f"  {line}" for line in result.explanation)
    return lines


def coverage_lines(coverage: Iterable[Coverage]) -> list[str]:
    out = []
    for cov in coverage:
        out.append(f"coverage of {cov.policy}:")
        for what, every, missed in (
            ("groups", cov.groups, cov.groups_missed),
            ("kind rules", cov.kinds, cov.kinds_missed),
        ):
            line = f"  {what}: {len(every) - len(missed)} of {len(every)} exercised"
            out.append(line + (f"; never: {', '.join(missed)}" if missed else ""))
    return out


def text(report: Report, verbose: bool = False, coverage: bool = False) -> str:
    out = []
    for r in report.results:
        out.append(f"{r.status:<6} {r.file}:{r.line}  {r.name}")
        if r.status != "PASS":
            out.extend(INDENT + line for line in details(r))
        elif verbose:
            out.append(f"{INDENT}{r.summary}")
            out.extend(f"{INDENT}  {t}" for t in r.message.splitlines())
    if coverage:
        out.append("")
        out.extend(coverage_lines(report.coverage))
    out.append("")
    out.append(summary_line(report))
    return "\n".join(out) + "\n"


def _result_json(r: CaseResult) -> dict[str, Any]:
    return {
        "file": r.file,
        "line": r.line,
        "name": r.name,
        "status": r.status,
        "mismatches": [{"field": m.field, "expected": m.expected, "actual": m.actual} for m in r.mismatches],
        "error": r.error,
        "decision": r.decision,
    }


def as_json(report: Report, coverage: bool = False) -> str:
    data: dict[str, Any] = {
        "passed": report.count("PASS"),
        "failed": report.count("FAIL"),
        "errors": report.count("ERROR"),
        "cases": [_result_json(r) for r in report.results],
    }
    if coverage:
        data["coverage"] = [
            {
                "policy": c.policy,
                "groups": {"total": len(c.groups), "exercised": sorted(c.groups_hit), "never": c.groups_missed},
                "kinds": {"total": len(c.kinds), "exercised": sorted(c.kinds_hit), "never": c.kinds_missed},
            }
            for c in report.coverage
        ]
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def junit(report: Report) -> str:
    """One <testsuite> per test file, one <testcase> per case (Jenkins/GitLab/GitHub readers)."""
    suites = ET.Element("testsuites", name="quotalang test")
    by_file: dict[str, list[CaseResult]] = {}
    for r in report.results:
        by_file.setdefault(r.file, []).append(r)
    for file, results in by_file.items():
        suite = ET.SubElement(suites, "testsuite", name=file)
        for r in results:
            case = ET.SubElement(suite, "testcase", name=r.name, classname=file, file=file, line=str(r.line))
            if r.status == "PASS":
                continue
            body = "\n".join(details(r))
            first = body.splitlines()[0] if body else r.status
            if r.status == "FAIL":
                node = ET.SubElement(case, "failure", message=first, type="mismatch")
            else:
                node = ET.SubElement(case, "error", message=first, type="error")
            node.text = body
        _counts(suite, results)
    _counts(suites, report.results)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _counts(node: ET.Element, results: list[CaseResult]) -> None:
    node.set("tests", str(len(results)))
    node.set("failures", str(sum(r.status == "FAIL" for r in results)))
    node.set("errors", str(sum(r.status == "ERROR" for r in results)))
    node.set("skipped", "0")


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(report: Report) -> str:
    """`::error file=F,line=L,title=T::message` for every case that did not pass, then the summary."""
    out = []
    for r in report.results:
        if r.status == "PASS":
            continue
        title = f"{r.status} {r.name}" if r.name != FILE_CASE else f"{r.status} test file"
        props = f"file={_escape_property(r.file)},line={r.line},title={_escape_property(title)}"
        out.append(f"::error {props}::{_escape_data(chr(10).join(details(r)))}")
    out.append(summary_line(report))
    return "\n".join(out) + "\n"
