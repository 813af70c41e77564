"""Compile a checked policy into an immutable `CompiledPolicy` (stage 3 of 4).

Like OPA, compilation is a list of named stages — load, check, compile — and
its result is evaluated many times. Every limit is pre-parsed to integer nano
units; every kind rule to closures; the tree to parent/child tuples with the
carved share (Σ children hard) per key, so a decision does no parsing at all.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from quotalang import checker, kinds, loader, nodes
from quotalang.errors import Diagnostic, PolicyError
from quotalang.kinds import CompiledKind
from quotalang.quantity import parse_quantity
from quotalang.resources import DEFAULT_GPU_RESOURCES, extended_name, resource_class, split_key

if TYPE_CHECKING:
    from quotalang.decision import Decision
    from quotalang.evaluator import UsageSource

STAGES = ("load", "check", "compile")

DEFAULT_GROUP_LABEL = "quotalang.dev/group"
SECONDS_PER_HOUR = 3600
NANO = 10**9

Period = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class CashBudget:
    """`amount` unit-hours per period, kept as nano-unit-seconds (exact ints)."""

    key: str
    budget: int
    period: Period | None
    hours: str  # as written, for messages


@dataclass(frozen=True, slots=True)
class CompiledGroup:
    name: str
    parent: str | None
    path: str  # root/ai-lab/nlp
    mode: nodes.Mode  # after inheritance
    # Plain dicts, never mutated after compile: dict.get is the hot path.
    hard: Mapping[str, int]  # key -> nanos
    carved: Mapping[str, int]  # key -> Σ children hard, nanos
    cash: Mapping[str, CashBudget]
    children: tuple[str, ...]
    source: str


@dataclass(frozen=True, slots=True)
class Settings:
    group_label: str
    model_labels: Mapping[str, str]  # model kind -> label key
    gpu_resources: frozenset[str]
    unlabelled: str  # allow | deny | group
    unlabelled_group: str | None
    warn_at: Fraction  # 0.9 for 90%


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    settings: Settings
    groups: Mapping[str, CompiledGroup]
    kinds: Mapping[tuple[str, str], CompiledKind]
    warnings: tuple[Diagnostic, ...]
    checksum: str
    # Per-policy caches of derived, content-keyed data (not part of identity).
    _cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def group_path(self, name: str) -> str:
        return self.groups[name].path

    def near_groups(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, list(self.groups), n=3, cutoff=0.5)

    def rule_for(self, obj: Mapping[str, Any]) -> CompiledKind | None:
        return self.kinds.get((obj.get("apiVersion"), obj.get("kind")))  # type: ignore[arg-type]

    def evaluate(
        self,
        obj: Mapping[str, Any],
        operation: str = "CREATE",
        old: Mapping[str, Any] | None = None,
        usage: UsageSource | Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide one admission request; see `evaluator.evaluate`."""
        from quotalang.evaluator import evaluate

        return evaluate(self, obj, operation, old=old, usage=usage, parent=parent)

    def workload_usage(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Every key `obj` charges (model keys included), as Quantities."""
        from quotalang.usage import workload_usage

        return workload_usage(self, obj).quantities()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cycle collector while a policy is built.

    Compiling allocates hundreds of thousands of small acyclic objects (nodes,
    spans), freed by reference counting alone; the collector would walk them
    all again and again as they pile up (a third of a 10,000-group compile).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compile_policy(paths: str | list[str]) -> CompiledPolicy:
    """Load, check and compile; raise `PolicyError` when any stage finds errors."""
    with _collector_paused():
        sources = loader.load(paths)
        return compile_sources(sources)


def compile_sources(sources: loader.Sources) -> CompiledPolicy:
    with _collector_paused():
        return _compile_sources(sources)


def _compile_sources(sources: loader.Sources) -> CompiledPolicy:
    findings = checker.check(sources)
    errors = [d for d in findings if d.severity == "error"]
    if errors:
        raise PolicyError(errors, sources.texts)
    warnings = tuple(d for d in findings if d.severity == "warning")
    digest = hashlib.sha256()
    for name in sorted(sources.texts):
        digest.update(name.encode() + b"\0" + sources.texts[name].encode() + b"\0")
    return CompiledPolicy(
        settings=_settings(sources.files),
        groups=_groups(sources.files),
        kinds=_kinds(sources.files),
        warnings=warnings,
        checksum=digest.hexdigest()[:16],
    )


def _settings(files: tuple[nodes.PolicyFile, ...]) -> Settings:
    group_label = DEFAULT_GROUP_LABEL
    model_labels: dict[str, str] = {}
    gpus: list[str] = []
    unlabelled, unlabelled_group = "allow", None
    warn_at = Fraction(9, 10)
    for file in files:
        for block in file.settings:
            for entry in block.entries:
                if isinstance(entry, nodes.GroupLabel):
                    group_label = entry.label
                elif isinstance(entry, nodes.ModelLabel):
                    model_labels[entry.model_kind] = entry.label
                elif isinstance(entry, nodes.GpuResource):
                    gpus.append(entry.resource)
                elif isinstance(entry, nodes.Unlabelled):
                    unlabelled, unlabelled_group = entry.action, entry.group
                else:
                    warn_at = Fraction(entry.percent) / 100
    return Settings(
        group_label=group_label,
        model_labels=MappingProxyType(model_labels),
        gpu_resources=frozenset(gpus or DEFAULT_GPU_RESOURCES),
        unlabelled=unlabelled,
        unlabelled_group=unlabelled_group,
        warn_at=warn_at,
    )


@lru_cache(maxsize=4096)
def cash_budget_nanos(hours: str) -> int:
    """`12.5` hours → nano-unit-seconds, exactly."""
    value = Fraction(hours) * SECONDS_PER_HOUR * NANO
    return value.numerator // value.denominator


def _groups(files: tuple[nodes.PolicyFile, ...]) -> dict[str, CompiledGroup]:
    declared = [g for f in files for g in f.groups]
    by_name = {g.name: g for g in declared}
    children: dict[str, list[str]] = {g.name: [] for g in declared}
    for g in declared:
        if g.parent is not None:
            children[g.parent].append(g.name)
    hard: dict[str, dict[str, int]] = {}
    cash: dict[str, dict[str, CashBudget]] = {}
    own_mode: dict[str, nodes.Mode | None] = {}
    for g in declared:
        hard[g.name] = {}
        cash[g.name] = {}
        own_mode[g.name] = None
        for stmt in g.body:
            if isinstance(stmt, nodes.Limit):
                hard[g.name][stmt.key] = parse_quantity(stmt.quantity).nanos
            elif isinstance(stmt, nodes.Cash):
                cash[g.name][stmt.key] = CashBudget(
                    stmt.key, cash_budget_nanos(stmt.hours), stmt.period, stmt.hours
                )
            else:
                own_mode[g.name] = stmt.mode

    def path_of(name: str) -> list[str]:
        chain = [name]
        while (parent := by_name[chain[-1]].parent) is not None:
            chain.append(parent)
        return chain[::-1]

    out: dict[str, CompiledGroup] = {}
    for g in declared:
        chain = path_of(g.name)
        mode: nodes.Mode = "enforce"
        for ancestor in chain:
            mode = own_mode[ancestor] or mode
        carved: dict[str, int] = {}
        for child in children[g.name]:
            for key, value in hard[child].items():
                if key in hard[g.name]:
                    carved[key] = carved.get(key, 0) + value
        out[g.name] = CompiledGroup(
            name=g.name,
            parent=g.parent,
            path="/".join(chain),
            mode=mode,
            hard=hard[g.name],
            carved=carved,
            cash=cash[g.name],
            children=tuple(children[g.name]),
            source=str(g.name_span),
        )
    return out


def _kinds(files: tuple[nodes.PolicyFile, ...]) -> dict[tuple[str, str], CompiledKind]:
    return {(r.api_version, r.kind): kinds.compile_kind(r) for f in files for r in f.kinds}


def model_kind_of(key_base: str, gpu_resources: frozenset[str]) -> str | None:
    """Which model label applies to a base key: cpu, memory, gpu, or none."""
    rc = resource_class(key_base)
    if rc == "cpu":
        return "cpu"
    if rc == "memory":
        return "memory"
    if rc == "extended":
        name = extended_name(key_base)
        if name in gpu_resources:
            return "gpu"
    return None


__all__ = ["STAGES", "CompiledGroup", "CompiledPolicy", "compile_policy", "compile_sources", "split_key"]
