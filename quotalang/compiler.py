"""Compile a checked policy into an immutable `CompiledPolicy` (stage 3 of 4).

Load, check, compile — and the result is evaluated many times. Every limit is
pre-parsed to integer nano units; every kind rule to closures; the tree to
parent/child tuples with the carved share (Σ children hard) per key, so a
decision does no parsing at all. The types it produces live in
`quotalang.policy`, which the evaluator reads without importing this stage.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterator
from fractions import Fraction
from types import MappingProxyType

from quotalang import checker, kinds, loader, nodes
from quotalang.errors import PolicyError
from quotalang.kinds import CompiledKind
from quotalang.policy import (
    DEFAULT_GROUP_LABEL,
    CashBudget,
    CompiledGroup,
    CompiledPolicy,
    Period,
    Settings,
)
from quotalang.quantity import parse_quantity
from quotalang.resources import DEFAULT_GPU_RESOURCES
from quotalang.units import hours_to_nanos


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
                    stmt.key, hours_to_nanos(stmt.hours), stmt.period, stmt.hours
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
        cash_carved: dict[str, int] = {}
        for child in children[g.name]:
            for key, value in hard[child].items():
                if key in hard[g.name]:
                    carved[key] = carved.get(key, 0) + value
            for key, budget in cash[child].items():
                if key in cash[g.name]:
                    cash_carved[key] = cash_carved.get(key, 0) + budget.budget
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
            cash_carved=cash_carved,
        )
    return out


def _kinds(files: tuple[nodes.PolicyFile, ...]) -> dict[tuple[str, str], CompiledKind]:
    return {(r.api_version, r.kind): kinds.compile_kind(r) for f in files for r in f.kinds}


# The compiled policy's types are imported from here too (`from quotalang.compiler import CompiledPolicy`).
__all__ = [
    "CashBudget",
    "CompiledGroup",
    "CompiledPolicy",
    "Period",
    "Settings",
    "compile_policy",
    "compile_sources",
]
