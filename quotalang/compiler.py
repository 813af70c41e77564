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

from quotalang import checker, kinds, lending_checks, loader, nodes
from quotalang.bindings import Bindings, declared
from quotalang.errors import PolicyError
from quotalang.kinds import CompiledKind
from quotalang.policy import (
    DEFAULT_BORROW_BELOW,
    DEFAULT_GROUP_LABEL,
    CashBudget,
    CompiledGroup,
    CompiledPolicy,
    Period,
    Settings,
)
from quotalang.quantity import parse_quantity
from quotalang.resources import DEFAULT_GPU_RESOURCES, model_kind, split_key
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
    settings = _settings(sources.files)
    groups = _groups(sources.files, settings.gpu_resources)
    return CompiledPolicy(
        settings=settings,
        groups=groups,
        kinds=_kinds(sources.files),
        warnings=warnings,
        checksum=digest.hexdigest()[:16],
        bindings=_bindings(sources.files, groups),
        lending=lending_checks.lending_of(sources.files),
    )


def _settings(files: tuple[nodes.PolicyFile, ...]) -> Settings:
    group_label = DEFAULT_GROUP_LABEL
    model_labels: dict[str, str] = {}
    gpus: list[str] = []
    unlabelled, unlabelled_group = "allow", None
    warn_at = Fraction(9, 10)
    group_source: nodes.Source = "label"
    model_sources: dict[str, nodes.Source] = {}
    node_labels: dict[str, str] = {}
    models: dict[str, set[str]] = {}
    node_values: dict[str, dict[str, str]] = {}
    unbound = "allow"
    borrow_below = DEFAULT_BORROW_BELOW
    authorize_users = False
    reclaim_delete = False
    for file in files:
        for block in file.settings:
            for entry in block.entries:
                if isinstance(entry, nodes.GroupLabel):
                    group_label, group_source = entry.label, entry.source
                elif isinstance(entry, nodes.ModelLabel):
                    model_labels[entry.model_kind] = entry.label
                    model_sources[entry.model_kind] = entry.source
                elif isinstance(entry, nodes.ModelDecl):
                    models.setdefault(entry.model_kind, set()).add(entry.name)
                    for value in entry.values or (entry.name,):
                        node_values.setdefault(entry.model_kind, {}).setdefault(value, entry.name)
                elif isinstance(entry, nodes.NodeLabel):
                    node_labels[entry.model_kind] = entry.label
                elif isinstance(entry, nodes.GpuResource):
                    gpus.append(entry.resource)
                elif isinstance(entry, nodes.Unlabelled):
                    unlabelled, unlabelled_group = entry.action, entry.group
                elif isinstance(entry, nodes.Unbound):
                    unbound = entry.action
                elif isinstance(entry, nodes.BorrowBelow):
                    borrow_below = entry.priority
                elif isinstance(entry, nodes.AuthorizeUsers):
                    authorize_users = True
                elif isinstance(entry, nodes.ReclaimDelete):
                    reclaim_delete = True
                else:
                    warn_at = Fraction(entry.percent) / 100
    return Settings(
        group_label=group_label,
        model_labels=MappingProxyType(model_labels),
        gpu_resources=frozenset(gpus or DEFAULT_GPU_RESOURCES),
        unlabelled=unlabelled,
        unlabelled_group=unlabelled_group,
        warn_at=warn_at,
        group_source=group_source,
        model_sources=MappingProxyType(model_sources),
        node_labels=MappingProxyType(node_labels),
        models=MappingProxyType({kind: frozenset(names) for kind, names in models.items()}),
        node_values=MappingProxyType({kind: MappingProxyType(v) for kind, v in node_values.items()}),
        unbound=unbound,
        borrow_below=borrow_below,
        authorize_users=authorize_users,
        reclaim_delete=reclaim_delete,
    )


def _groups(files: tuple[nodes.PolicyFile, ...], gpus: frozenset[str]) -> dict[str, CompiledGroup]:
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
            elif isinstance(stmt, nodes.ModeStmt):
                own_mode[g.name] = stmt.mode

    def path_of(name: str) -> list[str]:
        chain = [name]
        while (parent := by_name[chain[-1]].parent) is not None:
            chain.append(parent)
        return chain[::-1]

    modes: dict[str, nodes.Mode] = {}
    for g in declared:
        mode: nodes.Mode = "enforce"
        for ancestor in path_of(g.name):
            mode = own_mode[ancestor] or mode
        modes[g.name] = mode
    enforced: dict[str, bool] = {}

    def subtree_enforced(name: str) -> bool:
        found = enforced.get(name)
        if found is None:
            stack, found = list(children[name]), True
            while stack and found:
                child = stack.pop()
                found = modes[child] == "enforce"
                stack.extend(children[child])
            enforced[name] = found
        return found

    out: dict[str, CompiledGroup] = {}
    for g in declared:
        chain = path_of(g.name)
        mode = modes[g.name]
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
            model_kinds=_model_kinds(hard[g.name], gpus),
            subtree_enforced=subtree_enforced(g.name),
        )
    return out


def _model_kinds(hard: dict[str, int], gpus: frozenset[str]) -> frozenset[str]:
    """The model kinds of the model keys in `hard` (`limits.cpu.A4` → cpu)."""
    found = set()
    for key in hard:
        split = split_key(key, gpus)
        kind = model_kind(split.base, gpus) if split.model is not None else None
        if kind is not None:
            found.add(kind)
    return frozenset(found)


def _bindings(files: tuple[nodes.PolicyFile, ...], groups: dict[str, CompiledGroup]) -> Bindings | None:
    """The namespace bindings, or None when no group binds any (the policy of before: a lint warning)."""
    own, defaults = declared(files)
    if not own:
        return None
    chains = {name: group.path.split("/") for name, group in groups.items()}
    return Bindings.build(own, defaults, chains)


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
