"""Propose a change: edit one group's limits or cash, or add a child, and see what review would say.

Nothing is applied. The edit is made to the policy's *text*, by the spans the
parser recorded, so the unified diff offered for download touches only the
lines that changed and keeps every comment — it is what a pull request would
contain. The edited sources then go through the same two checks CI runs:
`checker.check` (what `quotalang lint` says: E105 over-allocation naming the
parent, the key and each child's share) and `policydiff.diff` against the live
ledger (what `quotalang diff --usage` says: groups whose current usage would
exceed the new limits).

The policy is read again from the directories its groups were declared in,
and compared with the policy being served (same checksum), so a proposal is
never made against files that differ from what admission enforces.

Form values are validated against the grammar's own token patterns before
they go near the text, so a value cannot smuggle policy syntax (a newline and
`}`) into the file.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quotalang import checker, loader, nodes, policydiff
from quotalang.compiler import compile_sources
from quotalang.controller import Ledger
from quotalang.errors import PolicyError, UserInputError
from quotalang.evaluator import Snapshot
from quotalang.parser import parse
from quotalang.policy import CompiledPolicy
from quotalang.quantity import QuantityError, parse_quantity

# The grammar's tokens (quotalang/grammar.lark): NAME, QUANTITY and HOURS without its `h`.
NAME = re.compile(r"[a-z0-9]([a-z0-9\-_.]*[a-z0-9])?")
QUANTITY = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?")
HOURS = re.compile(r"[0-9]+(\.[0-9]+)?")
MAX_VALUE = 40  # characters: no quantity or amount of hours is longer
MAX_NAME = 63  # a group name is a label value


class ProposalError(UserInputError):
    """A proposal that cannot be made: the message says which field and why."""


@dataclass(slots=True)
class Proposal:
    """What the form asks: new values (as written) for `group`, and maybe a new child of it."""

    group: str
    limits: dict[str, str] = field(default_factory=dict)
    cash: dict[str, str] = field(default_factory=dict)
    child: str | None = None
    child_limits: dict[str, str] = field(default_factory=dict)
    child_cash: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Review:
    """What lint and diff say about a proposal, and the diff to download."""

    patch: str
    errors: list[str]  # lint's errors, rendered with the source line and a caret
    warnings: list[str]  # warnings the change adds
    diff: policydiff.PolicyDiff
    diff_text: str


def _quantity(where: str, value: str) -> str:
    text = value.strip()
    if not text:
        raise ProposalError(f"{where}: empty; write a quantity such as 16, 500m or 512Gi (0 gives none)")
    if len(text) > MAX_VALUE or not QUANTITY.fullmatch(text):
        raise ProposalError(f"{where}: {_shown(text)} is not a quantity (16, 500m, 512Gi, 1.5)")
    try:
        parse_quantity(text)
    except (QuantityError, ValueError) as exc:
        raise ProposalError(f"{where}: {exc}") from None
    return text


def _hours(where: str, value: str) -> str:
    text = value.strip().removesuffix("h")
    if len(text) > MAX_VALUE or not HOURS.fullmatch(text):
        raise ProposalError(f"{where}: {_shown(value.strip())} is not an amount of hours (1000, 12.5)")
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_form(form: Mapping[str, str]) -> Proposal:
    """A `Proposal` from the form's fields; `ProposalError` names the bad one.

    Fields: `group`; `limit:<key>` and `cash:<key>` for the group's own values;
    `child` (a new group's name) with `child-limit:<key>` and `child-cash:<key>`.
    """
    group = form.get("group", "").strip()
    if not group:
        raise ProposalError("choose a group to change")
    proposal = Proposal(group)
    for name, value in form.items():
        prefix, _, key = name.partition(":")
        if prefix == "limit":
            proposal.limits[key] = _quantity(f"{group} {key}", value)
        elif prefix == "cash":
            proposal.cash[key] = _hours(f"{group} cash {key}", value)
    child = form.get("child", "").strip()
    if child:
        if len(child) > MAX_NAME or not NAME.fullmatch(child):
            raise ProposalError(
                f"new group name {_shown(child)}: lower-case letters, digits, '-', '_' and '.', "
                f"starting and ending with a letter or digit, at most {MAX_NAME} characters"
            )
        proposal.child = child
        for name, value in form.items():
            prefix, _, key = name.partition(":")
            if prefix == "child-limit":
                proposal.child_limits[key] = _quantity(f"{child} {key}", value or "0")
            elif prefix == "child-cash":
                proposal.child_cash[key] = _hours(f"{child} cash {key}", value or "0")
    return proposal


def policy_dirs(policy: CompiledPolicy) -> list[str]:
    """The directories the served policy's groups were declared in, in first-seen order."""
    dirs: dict[str, None] = {}
    for group in policy.groups.values():
        file = group.source.rsplit(":", 2)[0]
        dirs.setdefault(os.path.dirname(file) or ".", None)
    return list(dirs)


def current_sources(policy: CompiledPolicy) -> loader.Sources:
    """The served policy's sources, read again from disk; refused when they are not what is served."""
    try:
        sources = loader.load(policy_dirs(policy))
        on_disk = compile_sources(sources)
    except PolicyError as exc:
        raise ProposalError(
            "the policy files on disk do not load, so a change cannot be proposed against them "
            f"(the last good policy keeps serving):\n{exc.render()}"
        ) from None
    if on_disk.checksum != policy.checksum:
        raise ProposalError(
            "the policy files on disk differ from the policy being served (a reload is pending or was "
            "rejected); try again in a few seconds"
        )
    return sources


def _offset(text: str, line: int, column: int) -> int:
    """The index in `text` of a 1-based line and column."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return start + column - 1


def _find(sources: loader.Sources, name: str) -> nodes.Group:
    for file in sources.files:
        for group in file.groups:
            if group.name == name:
                return group
    raise ProposalError(f"no group {name!r} in the policy")


def edit(sources: loader.Sources, proposal: Proposal) -> dict[str, str]:
    """The new text of every file the proposal changes (file name -> text)."""
    group = _find(sources, proposal.group)
    file = group.span.file
    text = sources.texts[file]
    edits: list[tuple[int, int, str]] = []
    declared_limits = {s.key: s for s in group.body if isinstance(s, nodes.Limit)}
    declared_cash = {s.key: s for s in group.body if isinstance(s, nodes.Cash)}
    for key, value in proposal.limits.items():
        limit = declared_limits.get(key)
        if limit is None:
            raise ProposalError(f"group {group.name} does not declare {key}; it can change only what it declares")
        if value != limit.quantity:
            s = limit.quantity_span
            edits.append((_offset(text, s.line, s.column), _offset(text, s.end_line, s.end_column), value))
    for key, hours in proposal.cash.items():
        cash = declared_cash.get(key)
        if cash is None:
            raise ProposalError(f"group {group.name} has no cash budget for {key}")
        if hours != cash.hours:
            s = cash.amount_span
            edits.append((_offset(text, s.line, s.column), _offset(text, s.end_line, s.end_column), f"{hours}h"))
    new = text
    for start, end, value in sorted(edits, reverse=True):
        new = new[:start] + value + new[end:]
    if proposal.child is not None:
        new = _add_child(new, group, proposal, declared_limits, declared_cash)
    return {file: new} if new != text else {}


def _add_child(
    text: str,
    parent: nodes.Group,
    proposal: Proposal,
    limits: Mapping[str, nodes.Limit],
    cash: Mapping[str, nodes.Cash],
) -> str:
    """`text` with a new group block right after the parent's: every parent key, 0 unless given."""
    assert proposal.child is not None
    for key in [*proposal.child_limits, *proposal.child_cash]:
        if key not in limits and key not in cash:
            raise ProposalError(f"{parent.name} does not declare {key}: a new child declares its parent's keys")
    width = max((len(k) for k in limits), default=0) + 2
    lines = [f"group {proposal.child} in {parent.name} {{"]
    lines += [f"  {key:<{width}}{proposal.child_limits.get(key, '0')}" for key in limits]
    for key, budget in cash.items():
        period = f" per {budget.period}" if budget.period else ""
        lines.append(f"  cash {key}  {proposal.child_cash.get(key, '0')}h{period}")
    lines.append("}")
    end = _offset(text, parent.span.end_line, parent.span.end_column)
    return text[:end] + "\n\n" + "\n".join(lines) + text[end:]


def review(policy: CompiledPolicy, ledger: Ledger, proposal: Proposal) -> Review:
    """Edit the served policy's text as proposed; lint it and diff it against the live usage."""
    if proposal.group not in policy.groups:
        near = policy.near_groups(proposal.group)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ProposalError(f"no group {proposal.group!r} in the policy{hint}")
    if proposal.child is not None and proposal.child in policy.groups:
        raise ProposalError(f"a group named {proposal.child!r} exists already (group names are cluster-wide)")
    old = current_sources(policy)
    changed = edit(old, proposal)
    files = []
    texts = dict(old.texts)
    for parsed in old.files:
        if parsed.path in changed:
            try:
                parsed = parse(changed[parsed.path], parsed.path)
            except PolicyError as exc:  # guarded by the token checks; said plainly if it ever happens
                raise ProposalError(f"the edited file does not parse:\n{exc.render()}") from None
            texts[parsed.path] = changed[parsed.path]
        files.append(parsed)
    new = loader.Sources(tuple(files), texts)
    before = {(d.code, d.message) for d in checker.check(old)}
    findings = [d for d in checker.check(new) if d.severity == "error" or (d.code, d.message) not in before]
    snapshot = Snapshot(
        {g: dict(ledger.used(g)) for g in policy.groups},
        {g: dict(ledger.cash_used(g)) for g in policy.groups},
    )
    result = policydiff.diff(old, new, usage=snapshot)
    patch = "".join(
        "".join(difflib.unified_diff(
            old.texts[name].splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        ))
        for name, text in sorted(changed.items())
    )
    return Review(
        patch=patch,
        errors=[d.render(new.texts) for d in findings if d.severity == "error"],
        warnings=[d.render(new.texts) for d in findings if d.severity == "warning"],
        diff=result,
        diff_text=policydiff.render_text(result, "served", "proposed", with_usage=True),
    )


def form_values(policy: CompiledPolicy, name: str) -> dict[str, Any]:
    """The group's values as written in its file, to pre-fill the form (so untouched fields change nothing)."""
    group = _find(current_sources(policy), name)
    return {
        "limits": [(s.key, s.quantity) for s in group.body if isinstance(s, nodes.Limit)],
        "cash": [(s.key, s.hours, s.period or "lifetime") for s in group.body if isinstance(s, nodes.Cash)],
    }
