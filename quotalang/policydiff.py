"""Review a policy change: what moved, what shrank, and whose usage it strands.

Works on parsed sources, not compiled policies, so a change that no longer
checks (a removed group whose children still name it) can still be compared
and reported; the new policy's check errors are listed as problems. A change
is a problem (exit 1) when it removes a group that still has children or
still has usage, when a group's current usage would exceed its new limits
(`used + Σ children hard > hard`, or cash spent past the new budget), or when
the new policy does not check.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quotalang import checker, loader, nodes
from quotalang.errors import InputError
from quotalang.evaluator import Snapshot
from quotalang.quantity import QuantityError, parse_quantity
from quotalang.units import format_hours, hours_to_nanos
from quotalang.usage import to_quantity


@dataclass(frozen=True, slots=True)
class Cash:
    budget: int  # nano-unit-seconds
    period: str  # day | week | month | lifetime
    text: str  # "1000h per week"


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    parent: str | None
    path: str
    mode: str  # after inheritance
    hard: Mapping[str, int]
    carved: Mapping[str, int]
    cash: Mapping[str, Cash]
    children: tuple[str, ...]


def _path(name: str, parents: Mapping[str, str | None]) -> str:
    chain, seen = [name], {name}
    while (parent := parents.get(chain[-1])) is not None:
        if parent in seen or parent not in parents:
            chain.append(parent if parent not in seen else "…")
            break
        chain.append(parent)
        seen.add(parent)
    return "/".join(reversed(chain))


def groups_of(sources: loader.Sources) -> dict[str, Group]:
    """Every group of a parsed policy, tolerant of the errors the checker reports."""
    declared = {g.name: g for f in sources.files for g in f.groups}
    parents = {name: g.parent for name, g in declared.items()}
    hard: dict[str, dict[str, int]] = {}
    cash: dict[str, dict[str, Cash]] = {}
    own_mode: dict[str, str | None] = {}
    for name, g in declared.items():
        hard[name], cash[name], own_mode[name] = {}, {}, None
        for stmt in g.body:
            try:
                if isinstance(stmt, nodes.Limit):
                    hard[name][stmt.key] = parse_quantity(stmt.quantity).nanos
                elif isinstance(stmt, nodes.Cash):
                    period = stmt.period or "lifetime"
                    text = f"{stmt.hours}h" + (f" per {stmt.period}" if stmt.period else "")
                    cash[name][stmt.key] = Cash(hours_to_nanos(stmt.hours), period, text)
                elif isinstance(stmt, nodes.ModeStmt):
                    own_mode[name] = stmt.mode
            except (QuantityError, ValueError, ZeroDivisionError):
                continue  # malformed: the checker reports it
    children: dict[str, list[str]] = {name: [] for name in declared}
    for name, parent in parents.items():
        if parent in children:
            children[parent].append(name)
    out = {}
    for name in declared:
        mode, seen, chain = "enforce", set(), []
        node: str | None = name
        while node is not None and node in declared and node not in seen:
            seen.add(node)
            chain.append(node)
            node = parents[node]
        for ancestor in reversed(chain):
            mode = own_mode[ancestor] or mode
        carved: dict[str, int] = {}
        for child in children[name]:
            for key, value in hard[child].items():
                if key in hard[name]:
                    carved[key] = carved.get(key, 0) + value
        out[name] = Group(
            name, parents[name], _path(name, parents), mode, hard[name], carved, cash[name], tuple(children[name])
        )
    return out


# ------------------------------------------------------------------ the diff
@dataclass(frozen=True, slots=True)
class Change:
    group: str
    key: str  # a resource key, "cash <key>" or "mode"
    old: str | None
    new: str | None
    change: str  # added | removed | raised | lowered | changed


@dataclass(frozen=True, slots=True)
class Over:
    group: str
    key: str
    used: str
    carved: str
    hard: str
    old_hard: str | None
    already: bool  # over the old limits too
    cash: bool = False


@dataclass(slots=True)
class PolicyDiff:
    old: dict[str, Group]
    new: dict[str, Group]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reparented: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    over: list[Over] = field(default_factory=list)
    stranded: dict[str, dict[str, str]] = field(default_factory=dict)  # removed group -> its usage
    orphans: dict[str, list[str]] = field(default_factory=dict)  # removed group -> children naming it
    errors: list[str] = field(default_factory=list)  # the new policy's check errors, rendered

    @property
    def problems(self) -> list[str]:
        out = [f"removed group {g} still has children: {', '.join(c)}" for g, c in self.orphans.items()]
        out += [
            f"removed group {g} still has usage: " + ", ".join(f"{k} {v}" for k, v in u.items())
            for g, u in self.stranded.items()
        ]
        out += [f"{o.group} would be over its new limit of {o.key}" for o in self.over]
        if self.errors:
            out.append(f"the new policy has {len(self.errors)} error(s) (quotalang lint shows them)")
        return out

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.reparented or self.changes or self.problems)


def _compare(old: int | None, new: int | None) -> str:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    return "raised" if new > old else "lowered"


def _limit_changes(name: str, old: Group, new: Group) -> list[Change]:
    out = []
    for key in sorted(old.hard.keys() | new.hard.keys()):
        a, b = old.hard.get(key), new.hard.get(key)
        if a != b:
            shown_a = str(to_quantity(key, a)) if a is not None else None
            shown_b = str(to_quantity(key, b)) if b is not None else None
            out.append(Change(name, key, shown_a, shown_b, _compare(a, b)))
    for key in sorted(old.cash.keys() | new.cash.keys()):
        ca, cb = old.cash.get(key), new.cash.get(key)
        if ca != cb:
            if ca is not None and cb is not None and ca.period != cb.period:
                change = "changed"
            else:
                change = _compare(ca.budget if ca else None, cb.budget if cb else None)
            out.append(Change(name, f"cash {key}", ca.text if ca else None, cb.text if cb else None, change))
    if old.mode != new.mode:
        out.append(Change(name, "mode", old.mode, new.mode, "changed"))
    return out


def _over(name: str, group: Group, before: Group | None, snapshot: Snapshot) -> list[Over]:
    out = []
    used = snapshot.used(name)
    for key, hard in group.hard.items():
        own, carved = used.get(key, 0), group.carved.get(key, 0)
        if own and own + carved > hard:
            old_hard = before.hard.get(key) if before else None
            already = before is not None and old_hard is not None and own + before.carved.get(key, 0) > old_hard
            q = to_quantity
            out.append(
                Over(
                    name,
                    key,
                    str(q(key, own)),
                    str(q(key, carved)),
                    str(q(key, hard)),
                    str(q(key, old_hard)) if old_hard is not None else None,
                    already,
                )
            )
    spent_of = snapshot.cash_used(name)
    for key, budget in group.cash.items():
        spent = spent_of.get(key, 0)
        if spent > budget.budget:
            old_cash = before.cash.get(key) if before else None
            out.append(
                Over(
                    name,
                    f"cash {key}",
                    format_hours(spent),
                    "0h",
                    budget.text,
                    old_cash.text if old_cash else None,
                    old_cash is not None and spent > old_cash.budget,
                    cash=True,
                )
            )
    return out


def diff(old: loader.Sources, new: loader.Sources, usage: Snapshot | None = None) -> PolicyDiff:
    before, after = groups_of(old), groups_of(new)
    result = PolicyDiff(before, after)
    result.added = [g for g in after if g not in before]
    result.removed = [g for g in before if g not in after]
    for name in result.removed:
        orphans = [g.name for g in after.values() if g.parent == name]
        if orphans:
            result.orphans[name] = orphans
        if usage is not None:
            held = {k: str(to_quantity(k, v)) for k, v in sorted(usage.used(name).items()) if v}
            if held:
                result.stranded[name] = held
    for name, group in after.items():
        previous = before.get(name)
        if previous is not None:
            if previous.parent != group.parent:
                result.reparented.append(name)
            result.changes.extend(_limit_changes(name, previous, group))
        if usage is not None:
            result.over.extend(_over(name, group, previous, usage))
    findings = checker.check(new)
    result.errors = [d.render(new.texts) for d in findings if d.severity == "error"]
    return result


# ------------------------------------------------------------------ git
def checkout(rev: str, directory: str, into: Path) -> Path | None:
    """Extract `directory` as it was at `rev` (via `git archive`) under `into`; return its copy.

    None when `rev` has no such directory (a policy's first pull request): the
    caller compares against an empty policy, as a reviewer would read it.
    """
    where = Path(directory).resolve()
    if not where.is_dir():
        raise InputError(f"--git compares a policy directory of the working tree; {directory} is not one")
    top = _git(["rev-parse", "--show-toplevel"], where).decode().strip()
    rel = os.path.relpath(where, top)
    _git(["rev-parse", "--verify", f"{rev}^{{commit}}"], Path(top), f"{directory} at {rev}")
    if not _git(["ls-tree", "-d", rev, "--", rel], Path(top), f"{directory} at {rev}").strip():
        return None
    archive = _git(["archive", "--format=tar", rev, "--", rel], Path(top), f"{directory} at {rev}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / rel


def _git(argv: list[str], cwd: Path, what: str | None = None) -> bytes:
    try:
        done = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise InputError("--git needs the git command, which is not installed") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"git {argv[0]} took longer than 60 s") from None
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
        raise InputError(f"cannot read {what or cwd} from git: {reason}")
    return done.stdout


def temporary_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="quotalang-diff-")


# ------------------------------------------------------------------ output
def render_text(d: PolicyDiff, old_name: str, new_name: str, with_usage: bool) -> str:
    lines = [f"policy diff: {old_name} -> {new_name}"]
    if d.empty:
        return lines[0] + "\nno changes\n"
    if d.added or d.removed or d.reparented:
        lines.append("groups:")
        lines += [f"  + {d.new[g].path}" for g in d.added]
        lines += [f"  - {d.old[g].path}" for g in d.removed]
        lines += [f"  ~ {g}: moved from {d.old[g].path} to {d.new[g].path}" for g in d.reparented]
    if d.changes:
        lines.append("limits:")
        current = None
        width = max(len(c.key) for c in d.changes)
        for c in d.changes:
            if c.group != current:
                lines.append(f"  {d.new[c.group].path}")
                current = c.group
            lines.append(f"    {c.key:<{width}}  {c.old or '(none)'} -> {c.new or '(none)'}  {c.change}")
    if with_usage and d.over:
        lines.append("over the new limits with the current usage:")
        for o in d.over:
            was = f" (was {o.old_hard}{', already over' if o.already else ''})" if o.old_hard else ""
            if o.cash:
                lines.append(f"  {d.new[o.group].path}: {o.key}: spent {o.used} > {o.hard}{was}")
            else:
                lines.append(f"  {d.new[o.group].path}: {o.key}: used {o.used} + carved {o.carved} > {o.hard}{was}")
    if d.errors:
        lines.append("the new policy does not check:")
        lines += ["  " + line for e in d.errors for line in e.splitlines()]
    problems = d.problems
    if problems:
        lines.append("problems:")
        lines += [f"  {p}" for p in problems]
    lines.append(f"{len(problems)} problem(s)" if problems else "no problems")
    return "\n".join(lines) + "\n"


def as_json(d: PolicyDiff) -> dict[str, Any]:
    return {
        "added": [{"name": g, "parent": d.new[g].parent, "path": d.new[g].path} for g in d.added],
        "removed": [
            {
                "name": g,
                "path": d.old[g].path,
                "children": list(d.old[g].children),
                "orphans": d.orphans.get(g, []),
                "usage": d.stranded.get(g, {}),
            }
            for g in d.removed
        ],
        "reparented": [
            {
                "name": g,
                "old_parent": d.old[g].parent,
                "new_parent": d.new[g].parent,
                "old_path": d.old[g].path,
                "new_path": d.new[g].path,
            }
            for g in d.reparented
        ],
        "changes": [
            {"group": c.group, "key": c.key, "old": c.old, "new": c.new, "change": c.change} for c in d.changes
        ],
        "over_quota": [
            {
                "group": o.group,
                "key": o.key,
                "used": o.used,
                "carved": o.carved,
                "hard": o.hard,
                "old_hard": o.old_hard,
                "already_over": o.already,
                "cash": o.cash,
            }
            for o in d.over
        ],
        "errors": d.errors,
        "problems": d.problems,
    }
