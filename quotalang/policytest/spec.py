"""The test file format: parse `*.test.yaml` into cases, naming file:line on errors.

A file is one chain: a starting usage snapshot, then cases run in order, each
admission carrying into the next. A case that cannot be read becomes an ERROR
case on its own line and the others still run; a file that cannot be read at
all (bad YAML, no cases, no policy) is one ERROR for the file. See
docs/testing.md for the format.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from quotalang.errors import InputError, UserInputError
from quotalang.limitranges import limit_range_documents
from quotalang.policytest.yamlsrc import Located, LocatedError, PathKey, parse_located, read_documents, read_text
from quotalang.quantity import QuantityError, parse_quantity

Outcome = Literal["allow", "deny", "warn", "audit"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "deny", "warn", "audit")
Vector = tuple[tuple[str, int], ...]

FILE_KEYS = ("policy", "usage", "limit_ranges", "priority_classes", "cases", "description")
CASE_KEYS = ("name", "description", "workload", "patch", "operation", "old", "parent", "scale", "dry_run", "expect")
EXPECT_KEYS = ("decision", "resources", "message", "message_regex", "group", "usage", "delta", "used")


class SpecError(UserInputError):
    """A problem at `path` inside the test file (turned into file:line)."""

    def __init__(self, path: PathKey, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Expectation:
    decision: Outcome
    resources: tuple[str, ...] | None = None  # exactly the keys over quota (or cash spent)
    contains: tuple[str, ...] = ()  # substrings of the message / warnings
    matches: tuple[re.Pattern[str], ...] = ()  # regexes searched in the same text
    group: str | None = None
    usage: Vector = ()  # keys of the workload's total usage
    delta: Vector = ()  # keys of what this request adds to its group
    used: tuple[tuple[str, Vector], ...] = ()  # the chain's usage per group after the case


@dataclass(frozen=True, slots=True)
class Case:
    index: int
    name: str
    line: int
    operation: Literal["CREATE", "UPDATE"] = "CREATE"
    obj: dict[str, Any] | None = None
    old: dict[str, Any] | None = None  # None on UPDATE: the version admitted earlier in the chain
    parent: dict[str, Any] | None = None
    scale: int | None = None
    dry_run: bool = False
    expect: Expectation | None = None
    error: str | None = None  # the case cannot run: an ERROR, with this message


@dataclass(frozen=True, slots=True)
class TestFile:
    path: Path
    shown: str  # as reported (relative to the working directory when shorter)
    policy: tuple[str, ...]  # resolved policy paths; empty: none named
    policy_line: int
    usage: Mapping[str, Any]  # a snapshot {group: {key: qty, cash: {...}}}
    usage_line: int
    cases: tuple[Case, ...] = field(default=())
    # the namespace's LimitRanges, for every workload of the file (as `eval --limit-range`)
    limit_ranges: tuple[Mapping[str, Any], ...] = ()
    # PriorityClass name -> value ("" the global default), as the webhook reads the cluster's (issue 29)
    priority_classes: Mapping[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------- helpers
def _unknown(keys: Any, allowed: tuple[str, ...], path: PathKey, what: str) -> None:
    for key in keys:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; expected one of {', '.join(allowed)}"
            raise SpecError((*path, key), f"unknown {what} key {key!r}{hint}")


def _strings(value: Any, path: PathKey, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise SpecError(path, f"{what} must be a non-empty string or a list of them")
    return tuple(items)


def _vector(value: Any, path: PathKey, what: str) -> Vector:
    if not isinstance(value, Mapping) or not value:
        raise SpecError(path, f"{what} must be a mapping of resource key: quantity")
    out = []
    for key, raw in value.items():
        try:
            out.append((str(key), parse_quantity(str(raw)).nanos))
        except QuantityError as exc:
            raise SpecError((*path, key), f"{what} {key}: {exc}") from None
    return tuple(out)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` applies)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _object(value: Any, path: PathKey, base: Path, what: str) -> dict[str, Any]:
    """A workload given as a file path (relative to the test file) or inline."""
    if isinstance(value, str):
        target = base / value
        try:
            docs = read_documents(target, value)
        except InputError as exc:
            raise SpecError(path, f"{what}: {exc}") from None
        if len(docs) != 1:
            raise SpecError(path, f"{what} {value} holds {len(docs)} documents; a case needs exactly one object")
        value = docs[0]
    if not isinstance(value, Mapping):
        raise SpecError(path, f"{what} must be a file path or an inline object (a mapping)")
    for required in ("apiVersion", "kind"):
        if not isinstance(value.get(required), str):
            raise SpecError(path, f"{what} has no {required}")
    return dict(value)


# ----------------------------------------------------------------- parsing
def _expectation(raw: Any, path: PathKey) -> Expectation:
    if isinstance(raw, str):
        raw = {"decision": raw}
    if not isinstance(raw, Mapping):
        raise SpecError(path, "expect must be allow | deny | warn | audit, or a mapping with decision:")
    _unknown(raw, EXPECT_KEYS, path, "expect")
    decision = raw.get("decision")
    if decision is None:
        raise SpecError(path, "expect has no decision: say allow, deny, warn or audit")
    if str(decision).lower() not in OUTCOMES:
        raise SpecError((*path, "decision"), f"decision {decision!r} is not one of allow, deny, warn, audit")
    resources: tuple[str, ...] | None = None
    if "resources" in raw:
        value = raw["resources"]
        if value == [] or value is None:
            resources = ()
        else:
            resources = tuple(sorted(_strings(value, (*path, "resources"), "resources")))
    patterns = []
    for text in (
        _strings(raw["message_regex"], (*path, "message_regex"), "message_regex") if ("message_regex" in raw) else ()
    ):
        try:
            patterns.append(re.compile(text))
        except re.error as exc:
            raise SpecError((*path, "message_regex"), f"message_regex {text!r}: {exc}") from None
    group = raw.get("group")
    if group is not None and not isinstance(group, str):
        raise SpecError((*path, "group"), "group must be a group name")
    used: list[tuple[str, Vector]] = []
    if "used" in raw:
        if not isinstance(raw["used"], Mapping) or not raw["used"]:
            raise SpecError((*path, "used"), "used must be a mapping {group: {key: quantity}}")
        for name, keys in raw["used"].items():
            used.append((str(name), _vector(keys, (*path, "used", name), f"used of {name}")))
    return Expectation(
        decision=cast(Outcome, str(decision).lower()),
        resources=resources,
        contains=_strings(raw["message"], (*path, "message"), "message") if "message" in raw else (),
        matches=tuple(patterns),
        group=group,
        usage=_vector(raw["usage"], (*path, "usage"), "usage") if "usage" in raw else (),
        delta=_vector(raw["delta"], (*path, "delta"), "delta") if "delta" in raw else (),
        used=tuple(used),
    )


def _case(raw: Any, index: int, doc: Located, base: Path) -> Case:
    path: PathKey = ("cases", index)
    line = doc.line(path)
    name = f"case {index + 1}"
    try:
        if not isinstance(raw, Mapping):
            raise SpecError(path, "a case is a mapping with workload: and expect:")
        if isinstance(raw.get("name"), str) and raw["name"].strip():
            name = raw["name"].strip()
        elif "name" in raw:
            raise SpecError((*path, "name"), "name must be a non-empty string")
        _unknown(raw, CASE_KEYS, path, "case")
        if "workload" not in raw:
            raise SpecError(path, "case has no workload: give a file path or an inline object")
        obj = _object(raw["workload"], (*path, "workload"), base, "workload")
        if "patch" in raw:
            if not isinstance(raw["patch"], Mapping):
                raise SpecError((*path, "patch"), "patch must be a mapping (a JSON merge patch)")
            obj = merge_patch(obj, raw["patch"])
        old = _object(raw["old"], (*path, "old"), base, "old") if raw.get("old") is not None else None
        parent = _object(raw["parent"], (*path, "parent"), base, "parent") if raw.get("parent") is not None else None
        scale = raw.get("scale")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 0):
            raise SpecError((*path, "scale"), f"scale must be a replica count (an integer ≥ 0), not {scale!r}")
        operation = str(raw.get("operation") or ("UPDATE" if old is not None or scale is not None else "CREATE"))
        operation = operation.upper()
        if operation not in ("CREATE", "UPDATE"):
            raise SpecError((*path, "operation"), f"operation {raw['operation']!r} is not CREATE or UPDATE")
        if operation == "CREATE" and (old is not None or scale is not None):
            raise SpecError((*path, "operation"), "CREATE takes no old: or scale: (those are UPDATEs)")
        if scale is not None and old is not None:
            raise SpecError((*path, "scale"), "scale: takes no old: (the stored workload is the parent)")
        dry_run = raw.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise SpecError((*path, "dry_run"), "dry_run must be true or false")
        if raw.get("expect") is None:
            raise SpecError(path, "case has no expectation: add expect: allow | deny | warn | audit")
        expect = _expectation(raw["expect"], (*path, "expect"))
    except SpecError as exc:
        at = doc.line(exc.path)
        return Case(index, name, line, error=exc.message if at == line else f"line {at}: {exc.message}")
    return Case(
        index,
        name,
        line,
        operation=cast(Literal["CREATE", "UPDATE"], operation),
        obj=obj,
        old=old,
        parent=parent,
        scale=scale,
        dry_run=dry_run,
        expect=expect,
    )


def _policy_paths(raw: Any, base: Path) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(str(base / p) for p in _strings(raw, ("policy",), "policy"))


def _priority_classes(raw: Any) -> dict[str, int]:
    """`priority_classes: {name: value}`: what a template's priorityClassName is worth (who may borrow)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(("priority_classes",), "priority_classes must be a mapping {name: integer value}")
    out: dict[str, int] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(("priority_classes", str(name)),
                            f"priority class {str(name)[:60]!r}: the value must be an integer, e.g. 1000")
        out[name] = value
    return out


def _limit_ranges(raw: Any, base: Path) -> tuple[Mapping[str, Any], ...]:
    """`limit_ranges:` a LimitRange, a file path (relative to the test file), or a list of either."""
    if raw is None:
        return ()
    entries = raw if isinstance(raw, list) else [raw]
    docs: list[Any] = []
    try:
        for entry in entries:
            if isinstance(entry, str):
                docs.extend(read_documents(base / entry, entry))
            else:
                docs.append(entry)
        return limit_range_documents(docs, "limit_ranges")
    except InputError as exc:
        raise SpecError(("limit_ranges",), str(exc)) from None


def load_test_file(path: Path, shown: str) -> TestFile:
    """Parse one test file; raise `LocatedError` when it has no usable shape."""
    doc = parse_located(read_text(path, shown), shown)
    data = doc.data
    base = path.parent
    try:
        if data is None:
            raise SpecError((), "empty test file: it has no cases, so it would test nothing")
        if not isinstance(data, Mapping):
            raise SpecError((), "a test file is a mapping with policy:, usage: and cases:")
        _unknown(data, FILE_KEYS, (), "test file")
        policy = _policy_paths(data.get("policy"), base)
        usage = data.get("usage") or {}
        if isinstance(usage, str):
            docs = read_documents(base / usage, usage)
            if len(docs) > 1:
                raise SpecError(("usage",), f"usage {usage}: a usage snapshot is one document")
            usage = docs[0] if docs else {}
        if not isinstance(usage, Mapping):
            raise SpecError(("usage",), "usage must be a snapshot {group: {key: quantity}} or a file path")
        limit_ranges = _limit_ranges(data.get("limit_ranges"), base)
        classes = _priority_classes(data.get("priority_classes"))
        cases = data.get("cases")
        if not cases:
            raise SpecError(("cases",) if "cases" in data else (), "no cases: a test file without cases tests nothing")
        if not isinstance(cases, list):
            raise SpecError(("cases",), "cases must be a list")
    except SpecError as exc:
        raise LocatedError(shown, doc.line(exc.path), exc.message) from None
    except InputError as exc:  # an unreadable usage file
        raise LocatedError(shown, doc.line(("usage",)), f"usage: {exc}") from None
    return TestFile(
        path=path,
        shown=shown,
        policy=policy,
        policy_line=doc.line(("policy",)),
        usage=usage,
        usage_line=doc.line(("usage",)),
        cases=tuple(_case(raw, i, doc, base) for i, raw in enumerate(cases)),
        limit_ranges=limit_ranges,
        priority_classes=classes,
    )
