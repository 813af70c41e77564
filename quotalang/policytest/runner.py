"""Discover test files, run their chains against the compiled policy, collect results.

Each policy is compiled once however many files name it. Nothing passes by
default: a case that cannot run, or whose workload no kind rule matches (the
policy would not check it at all), is an ERROR, never a PASS.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from quotalang import loader
from quotalang.compiler import compile_sources
from quotalang.decision import Decision
from quotalang.errors import InputError, PolicyError
from quotalang.evaluator import Snapshot, evaluate
from quotalang.policy import CompiledPolicy
from quotalang.policytest.chain import Chain
from quotalang.policytest.expect import Mismatch, compare, message_text, outcome
from quotalang.policytest.spec import Case, TestFile, load_test_file
from quotalang.policytest.yamlsrc import LocatedError

Status = Literal["PASS", "FAIL", "ERROR"]
SUFFIXES = (".test.yaml", ".test.yml")
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv"})
FILE_CASE = "(test file)"


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    line: int
    name: str
    status: Status
    mismatches: tuple[Mismatch, ...] = ()
    summary: str = ""  # ALLOWED/DENIED, the operation, the object, the group
    message: str = ""  # the denial message and warnings
    explanation: tuple[str, ...] = ()
    error: str | None = None
    decision: Mapping[str, Any] | None = None  # as_json() plus "outcome", for machine formats


@dataclass(slots=True)
class Coverage:
    """Which groups and kind rules of one policy the suite exercised."""

    policy: str
    groups: tuple[str, ...]
    kinds: tuple[str, ...]
    groups_hit: set[str] = field(default_factory=set)
    kinds_hit: set[str] = field(default_factory=set)

    @property
    def groups_missed(self) -> list[str]:
        return [g for g in self.groups if g not in self.groups_hit]

    @property
    def kinds_missed(self) -> list[str]:
        return [k for k in self.kinds if k not in self.kinds_hit]


@dataclass(slots=True)
class Report:
    results: list[CaseResult] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.status == "PASS" for r in self.results)


def shown_path(path: Path) -> str:
    """A path relative to the working directory (what CI annotations expect)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") and path.is_absolute() else rel


def discover(paths: Sequence[str]) -> list[Path]:
    """Test files: files given by name, and `*.test.yaml` / `*.test.yml` under directories."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
                for name in sorted(filenames):
                    if name.endswith(SUFFIXES):
                        found[Path(dirpath) / name] = None
        elif path.is_file():
            found[path] = None
        else:
            raise InputError(f"no such file or directory: {raw}")
    return list(found)


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name", "<unnamed>") if isinstance(meta, Mapping) else "<unnamed>"
    return f"{obj.get('kind', '?')} {name} ({obj.get('apiVersion', '?')})"


def _summary(decision: Decision, obj: Mapping[str, Any]) -> str:
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    where = f" in {decision.path} (mode {decision.mode})" if decision.path else ""
    return f"{verdict} {decision.operation} {_describe(obj)}{where}"


class Runner:
    """Runs test files; `policy` (from `--policy`) overrides what the files name."""

    def __init__(self, policy: Sequence[str] | None = None, pattern: re.Pattern[str] | None = None) -> None:
        self._override = tuple(policy) if policy else None
        self._pattern = pattern
        self._policies: dict[tuple[str, ...], CompiledPolicy | str] = {}
        self._coverage: dict[tuple[str, ...], Coverage] = {}

    def run(self, paths: Sequence[str]) -> Report:
        files = discover(paths)
        if not files:
            raise InputError(f"no test files (*.test.yaml) under {', '.join(paths)}")
        report = Report()
        for path in files:
            report.results.extend(self.run_file(path))
        report.coverage = list(self._coverage.values())
        return report

    def _selected(self, file: str, name: str) -> bool:
        return self._pattern is None or self._pattern.search(f"{file}::{name}") is not None

    def _policy(self, paths: tuple[str, ...]) -> CompiledPolicy | str:
        """The compiled policy, or the rendered reason it does not compile."""
        key = tuple(str(Path(p).resolve()) for p in paths)
        if key not in self._policies:
            try:
                policy = compile_sources(loader.load(list(paths)))
            except PolicyError as exc:
                self._policies[key] = f"policy {', '.join(paths)} does not compile:\n{exc.render()}"
            else:
                self._policies[key] = policy
                self._coverage[key] = Coverage(
                    policy=", ".join(shown_path(Path(p)) for p in paths),
                    groups=tuple(policy.groups),
                    kinds=tuple(f"{api} {kind}" for api, kind in sorted(policy.kinds)),
                )
        return self._policies[key]

    def run_file(self, path: Path) -> list[CaseResult]:
        shown = shown_path(path)
        try:
            test = load_test_file(path, shown)
        except LocatedError as exc:
            return [CaseResult(shown, exc.line, FILE_CASE, "ERROR", error=exc.message)]
        paths = self._override or test.policy
        if not paths:
            return [
                CaseResult(
                    shown,
                    1,
                    FILE_CASE,
                    "ERROR",
                    error="no policy: add `policy: DIR` (relative to this file) or pass --policy",
                )
            ]
        policy = self._policy(paths)
        if isinstance(policy, str):
            return [CaseResult(shown, test.policy_line, FILE_CASE, "ERROR", error=policy)]
        try:
            snapshot = Snapshot.parse(test.usage)
            _known_groups(policy, test.usage)
        except InputError as exc:
            return [CaseResult(shown, test.usage_line, FILE_CASE, "ERROR", error=f"usage: {exc}")]
        coverage = self._coverage[tuple(str(Path(p).resolve()) for p in paths)]
        chain = Chain(snapshot, policy.groups)
        results = []
        for case in test.cases:
            result = self._case(policy, chain, test, case, coverage)
            if self._selected(shown, case.name):
                results.append(result)
        return results

    def _case(self, policy: CompiledPolicy, chain: Chain, test: TestFile, case: Case, coverage: Coverage) -> CaseResult:
        def error(message: str) -> CaseResult:
            return CaseResult(test.shown, case.line, case.name, "ERROR", error=message)

        if case.error is not None or case.obj is None or case.expect is None:
            return error(case.error or "case cannot run")
        for group, _ in case.expect.used:
            if group not in policy.groups:
                return error(f"expect.used names unknown group {group!r}{_near(policy, group)}")
        obj, old, parent = case.obj, case.old, case.parent
        if case.scale is not None:
            parent = parent or chain.stored(obj) or obj
            meta = parent.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            obj = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
                "spec": {"replicas": case.scale},
            }
        elif obj.get("kind") == "HorizontalPodAutoscaler" and parent is None:
            parent = chain.stored(_hpa_target(obj))
        elif case.operation == "CREATE" and chain.stored(obj) is not None:
            return error(
                f"{_describe(obj)} was already admitted earlier in this file; the apiserver would "
                "refuse a second CREATE (AlreadyExists): say operation: UPDATE, or rename it in patch:"
            )
        elif case.operation == "UPDATE" and old is None:
            old = chain.stored(obj)
            if old is None:
                return error(f"UPDATE without old: and no earlier case in this file admitted {_describe(obj)}")
        try:
            ranges = test.limit_ranges
            classes = test.priority_classes
            decision = evaluate(policy, obj, case.operation, old=old, usage=chain, parent=parent,
                                dry_run=case.dry_run, limit_ranges=(lambda ns: ranges) if ranges else None,
                                priorities=classes.get if classes else None)
        except InputError as exc:
            return error(f"cannot evaluate the workload: {exc}")
        except Exception as exc:  # a bug in quotalang: an ERROR for this case, never a traceback
            return error(f"internal error: {type(exc).__name__}: {exc}")
        if decision.reason == "no-rule":
            target = parent if obj.get("kind") in ("Scale", "HorizontalPodAutoscaler") and parent else obj
            why = "; ".join(decision.notes) or "no kind rule matches"
            return error(f"{_describe(target)}: {why}; the policy would not check it, so this case tests nothing")
        if decision.reason == "hpa-target-missing":
            return error(f"{_describe(obj)}: its scaleTargetRef was not admitted earlier in this file and no parent: "
                         "is given, so maxReplicas would not be checked; this case tests nothing")
        target = parent if parent is not None and obj.get("kind") in ("Scale", "HorizontalPodAutoscaler") else obj
        rule = policy.rule_for(target)
        if rule is not None:
            coverage.kinds_hit.add(f"{rule.api_version} {rule.kind}")
        coverage.groups_hit.update(g for g in (decision.group, *decision.charges) if g)
        chain.book(decision)
        used = {group: chain.used(group) for group, _ in case.expect.used}
        mismatches = compare(case.expect, decision, used)
        return CaseResult(
            test.shown,
            case.line,
            case.name,
            "FAIL" if mismatches else "PASS",
            mismatches=tuple(mismatches),
            summary=_summary(decision, obj if obj.get("kind") != "Scale" or parent is None else parent),
            message=message_text(decision),
            explanation=tuple(decision.explanation()),
            decision={"outcome": outcome(decision), **decision.as_json()},
        )


def _near(policy: CompiledPolicy, name: str) -> str:
    near = policy.near_groups(name)
    return f"; did you mean {', '.join(near)}?" if near else ""


def _known_groups(policy: CompiledPolicy, usage: Mapping[str, Any]) -> None:
    for group in usage:
        if group not in policy.groups:
            raise InputError(f"unknown group {group!r}{_near(policy, str(group))}")


def _hpa_target(hpa: Mapping[str, Any]) -> dict[str, Any]:
    spec = hpa.get("spec")
    ref = spec.get("scaleTargetRef") if isinstance(spec, Mapping) else None
    ref = ref if isinstance(ref, Mapping) else {}
    meta = hpa.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return {"kind": ref.get("kind"), "metadata": {"name": ref.get("name"), "namespace": namespace}}


def close_names(names: Iterable[str], word: str) -> list[str]:
    return difflib.get_close_matches(word, list(names), n=3)
