"""Review a policy change: what moved, what shrank, and whose usage it strands.

Works on parsed sources, not compiled policies, so a change that no longer
checks (a removed group whose children still name it) can still be compared
and reported; the new policy's check errors are listed as problems. A change
is a problem (exit 1) when it removes a group that still has children or
still has usage, when a group's current usage would exceed its new limits
(`used + Σ children hard > hard + borrow`, or cash spent past the new
budget), when the current usage would leave some balance below its floor
under the new lend / borrow / hard (see `_borrowing`), when a current
workload's namespace would no longer be bound to its group and the new
policy denies it there (see `_rebound`), or when the new policy does not
check.
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

from quotalang import checker, lending_checks, loader, nodes
from quotalang.bindings import Bindings, Declared, declared
from quotalang.borrowing import NO_LENDING, Lending
from quotalang.errors import InputError
from quotalang.evaluator import Snapshot
from quotalang.lent import Lent, figures
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


@dataclass(frozen=True, slots=True)
class Borrowing:
    """What a change does to current borrowing at one group and key (`over`: a balance would break)."""

    group: str
    key: str
    what: str  # lend | borrow | guarantee | balance
    text: str  # the sentence, after the group's name
    amount: str
    over: bool


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
    borrowing: list[Borrowing] = field(default_factory=list)  # what the change does to current borrowing
    bindings: list[Binding] = field(default_factory=list)  # namespace patterns added / removed, defaults moved
    rebound: list[Rebound] = field(default_factory=list)  # current workloads their namespace no longer binds

    @property
    def problems(self) -> list[str]:
        out = [f"removed group {g} still has children: {', '.join(c)}" for g, c in self.orphans.items()]
        out += [
            f"removed group {g} still has usage: " + ", ".join(f"{k} {v}" for k, v in u.items())
            for g, u in self.stranded.items()
        ]
        out += [f"{o.group} would be over its new limit of {o.key}" for o in self.over]
        out += [f"{b.group} {b.text}" for b in self.borrowing if b.over]
        out += [f"{r.describe()} would be denied: {r.why}" for r in self.rebound if r.now == "denied"]
        if self.errors:
            out.append(f"the new policy has {len(self.errors)} error(s) (quotalang lint shows them)")
        return out

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.reparented or self.changes or self.bindings
                    or self.rebound or self.problems)


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


def _over(name: str, group: Group, before: Group | None, snapshot: Snapshot, lending: Lending = NO_LENDING
          ) -> list[Over]:
    out = []
    used = snapshot.used(name)
    for key, hard in group.hard.items():
        own, carved = used.get(key, 0), group.carved.get(key, 0)
        if own and own + carved > hard + lending.terms(name, key)[1]:  # what it may borrow is not over
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
    old_lending, new_lending = _lending(old), _lending(new)
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
            result.changes.extend(_lending_changes(name, old_lending, new_lending))
        if usage is not None:
            result.over.extend(_over(name, group, previous, usage, new_lending))
    if usage is not None:
        shown = {(o.group, o.key) for o in result.over}
        result.borrowing = [b for b in _borrowing(before, after, old_lending, new_lending, usage)
                            if not (b.what == "balance" and (b.group, b.key) in shown)]
    result.bindings, result.rebound = _binding_changes(old, new, before, after, usage)
    findings = checker.check(new)
    result.errors = [d.render(new.texts) for d in findings if d.severity == "error"]
    return result


# ------------------------------------------------------------------ lending (issue 29)
def _lending(sources: loader.Sources) -> Lending:
    """The policy's lend / borrow; none when a value does not parse (the checker reports it)."""
    try:
        return lending_checks.lending_of(sources.files)
    except (QuantityError, ValueError):
        return NO_LENDING


def _lending_changes(name: str, old: Lending, new: Lending) -> list[Change]:
    """`lend KEY` / `borrow KEY` of a group in both policies: raised, lowered, added (from 0), removed (to 0)."""
    out = []
    for word, a_terms, b_terms in (("lend", old.lend, new.lend), ("borrow", old.borrow, new.borrow)):
        a, b = a_terms.get(name, {}), b_terms.get(name, {})
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                shown_a = str(to_quantity(key, a[key])) if key in a else None
                shown_b = str(to_quantity(key, b[key])) if key in b else None
                out.append(Change(name, f"{word} {key}", shown_a, shown_b, _compare(a.get(key), b.get(key))))
    return out


def _borrowing(before: Mapping[str, Group], after: Mapping[str, Group], old: Lending, new: Lending,
               snapshot: Snapshot) -> list[Borrowing]:
    """What the change does to the borrowing the snapshot holds now (`quotalang.lent` on both policies):

    * a lend lowered below what others hold of the lender's lendable part now (naming who borrows);
    * a borrow lowered below what the group borrows now;
    * a hard lowered into the guarantee: the guarantee (`hard − lend`) below what the group holds now
      (its own use plus what it carves), so part of it is no longer guaranteed;
    * a balance that would fall below its floor (`T < −borrow`, a root's 0) that did not before:
      the current usage would be over. Only these are problems (exit 1).
    """
    if not old and not new:
        return []
    now = figures(before, old, snapshot.used) if old else {}
    then = figures(after, new, snapshot.used) if new else {}
    q = to_quantity
    out: list[Borrowing] = []
    for name, group in after.items():
        was = before.get(name)
        for key in sorted(group.hard):
            cur: Lent | None = now.get(name, {}).get(key)
            nxt: Lent | None = then.get(name, {}).get(key)
            lend, borrow = new.terms(name, key)
            if cur is not None and lend < cur.lend and cur.lent_out > lend:
                takers = _borrowers(before, now, name, key)
                out.append(Borrowing(name, key, "lend", f"lends {key} {q(key, lend)} (was {q(key, cur.lend)}), "
                                     f"below the {q(key, cur.lent_out)} others hold of it now"
                                     + (f" (borrowing: {', '.join(takers)})" if takers else ""),
                                     str(q(key, cur.lent_out - lend)), False))
            if cur is not None and borrow < cur.borrowed:
                out.append(Borrowing(name, key, "borrow", f"may borrow {key} {q(key, borrow)} (was "
                                     f"{q(key, cur.borrow)}), below the {q(key, cur.borrowed)} it borrows now",
                                     str(q(key, cur.borrowed - borrow)), False))
            held = snapshot.used(name).get(key, 0) + group.carved.get(key, 0)
            guarantee = group.hard[key] - lend
            old_hard = was.hard.get(key) if was is not None else None
            if old_hard is not None and group.hard[key] < old_hard and held > guarantee:
                out.append(Borrowing(name, key, "guarantee", f"guarantee of {key} lowered to {q(key, guarantee)} "
                                     f"(hard {q(key, group.hard[key])} − lend {q(key, lend)}), below the "
                                     f"{q(key, held)} it holds now", str(q(key, held - guarantee)), False))
            if nxt is not None and nxt.over > (cur.over if cur is not None else 0):
                floor = "0" if group.parent is None else str(q(key, -borrow))
                out.append(Borrowing(name, key, "balance", f"balance of {key} would be {q(key, nxt.balance)}, "
                                     f"below its floor {floor}", str(q(key, nxt.over)), True))
    return out


def _borrowers(groups: Mapping[str, Group], now: Mapping[str, Mapping[str, Lent]], lender: str, key: str
               ) -> list[str]:
    """Who borrows `key` now from the pools `lender`'s lend feeds (its ancestors), with the amounts."""
    pools: set[str] = set()
    node = groups[lender].parent
    while node is not None and node in groups and node not in pools:  # a cycle (an error the checker names) ends
        pools.add(node)
        node = groups[node].parent
    out = []
    for name, keys in now.items():
        row = keys.get(key)
        if row is not None and name != lender:
            drawn = sum(amount for pool, amount in row.draws if pool in pools)
            if drawn:
                out.append(f"{name} {to_quantity(key, drawn)}")
    return out


# ------------------------------------------------------------------ git
# ------------------------------------------------------------------ namespace bindings (issue 26)
@dataclass(frozen=True, slots=True)
class Binding:
    """One pattern of one group added or removed (`default`: of `default namespaces`), or a default moved."""

    group: str  # the group that gains or loses it (moved: the new default group)
    pattern: str
    change: str  # added | removed | moved
    default: bool = False
    was: str | None = None  # moved: the old default group

    def describe(self, old: Mapping[str, Group], new: Mapping[str, Group]) -> str:
        what = f'{"default namespaces" if self.default else "namespaces"} "{self.pattern}"'
        if self.change == "moved":
            assert self.was is not None
            return f"{what}: default moved from {_shown(self.was, old)} to {_shown(self.group, new)}"
        return f"{_shown(self.group, new if self.change == 'added' else old)}: {self.change} {what}"


@dataclass(frozen=True, slots=True)
class Rebound:
    """A current workload (usage snapshot) whose namespace the new policy does not bind to its group."""

    group: str
    namespace: str
    cluster: str
    kind: str
    name: str
    now: str  # what its next CREATE or UPDATE gets: denied | warned | audited | outside quota
    why: str

    def describe(self) -> str:
        where = f"{self.cluster}/{self.namespace}" if self.cluster else self.namespace
        return f"{self.kind or 'workload'} {where}/{self.name or '?'} in group {self.group}"


def _shown(name: str, groups: Mapping[str, Group]) -> str:
    return groups[name].path if name in groups else name


def _binding_changes(old: loader.Sources, new: loader.Sources, before: Mapping[str, Group],
                     after: Mapping[str, Group], usage: Snapshot | None) -> tuple[list[Binding], list[Rebound]]:
    """Patterns added and removed per group, default namespaces moved between groups, and with a snapshot
    the workloads whose namespace the new bindings no longer allow to charge their group."""
    (old_own, old_defaults), (new_own, new_defaults) = declared(old.files), declared(new.files)
    changes: list[Binding] = []
    for name in [*after, *(g for g in before if g not in after)]:
        for default, a_side, b_side in ((False, old_own, new_own), (True, old_defaults, new_defaults)):
            a = [p.text for p in a_side.get(name, ())]
            b = [p.text for p in b_side.get(name, ())]
            changes += [Binding(name, t, "added", default) for t in b if t not in a]
            changes += [Binding(name, t, "removed", default) for t in a if t not in b]
    old_owner = {p.text: g for g, patterns in old_defaults.items() for p in patterns}
    new_owner = {p.text: g for g, patterns in new_defaults.items() for p in patterns}
    moved = {t for t in old_owner.keys() & new_owner.keys() if old_owner[t] != new_owner[t]}
    changes = [c for c in changes if not (c.default and c.pattern in moved)]
    changes += [Binding(new_owner[t], t, "moved", True, old_owner[t]) for t in sorted(moved)]
    return changes, _rebound(new, after, new_own, new_defaults, usage) if usage is not None else []


def _rebound(new: loader.Sources, after: Mapping[str, Group], own: Declared, defaults: Declared,
             usage: Snapshot) -> list[Rebound]:
    """The snapshot's workloads of each group that the new bindings would refuse, as the evaluator decides
    (`evaluator._resolve`): a namespace bound to another group is refused per the group's mode; one no group
    binds is outside quota, or denied under `unbound namespaces deny`."""
    if not own:
        return []  # no bindings: any namespace may charge any group
    bindings = Bindings.build(own, defaults, {name: g.path.split("/") for name, g in after.items()})
    deny_unbound = any(isinstance(s, nodes.Unbound) and s.action == "deny"
                       for f in new.files for block in f.settings for s in block.entries)
    out = []
    for name, group in after.items():
        for row in usage.workloads(name):
            if bindings.allows(name, row.namespace, row.cluster):
                continue
            other = bindings.bound_group(row.namespace, row.cluster)
            if other is None:
                now = "denied" if deny_unbound else "outside quota"
                why = f"namespace {row.namespace} is bound to no group"
            else:
                now = {"warn": "warned", "audit": "audited"}.get(group.mode, "denied")
                why = f"namespace {row.namespace} is bound to {_shown(other, after)}, not {group.path}"
            out.append(Rebound(name, row.namespace, row.cluster, row.kind, row.name, now, why))
    return out


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
    if d.bindings:
        lines.append("namespaces:")
        lines += [f"  {b.describe(d.old, d.new)}" for b in d.bindings]
    if with_usage and d.rebound:
        lines.append("workloads their namespace would no longer bind to their group:")
        lines += [f"  {r.describe()}: {r.now} ({r.why})" for r in d.rebound]
    if with_usage and d.borrowing:
        lines.append("current borrowing under the new policy:")
        lines += [f"  {d.new[b.group].path}: {b.text}" for b in d.borrowing]
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
        "borrowing": [{"group": b.group, "key": b.key, "what": b.what, "amount": b.amount, "over": b.over,
                       "message": f"{b.group} {b.text}"} for b in d.borrowing],
        "bindings": [{"group": b.group, "pattern": b.pattern, "change": b.change, "default": b.default,
                      "was": b.was} for b in d.bindings],
        "rebound": [{"group": r.group, "namespace": r.namespace, "cluster": r.cluster, "kind": r.kind,
                     "name": r.name, "now": r.now, "why": r.why} for r in d.rebound],
        "errors": d.errors,
        "problems": d.problems,
    }
