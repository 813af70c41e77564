"""Check a parsed policy as a whole (stage 2 of 4: parse → check → compile → evaluate).

The parser sees one file at a time; everything that needs the whole policy is
found here: the group tree (duplicates, unknown parents, cycles, carving),
resource names and units, settings given twice, and kind rules. `check` only
reports: it returns every finding, errors and warnings alike, sorted by
location, and does no I/O. The compiler refuses a policy with any error, so
each rule below guards an assumption the compiler and evaluator rely on (a
parent exists, the tree has no cycle, a limit parses, ...).

Decisions where docs/language.md is silent:

- "Declaration order" is the loader's file order, then source order. A group
  declared twice takes part in the tree by its first declaration only; the
  repeat is reported (E101) and otherwise ignored for tree checks.
- A key given twice in a group (E107) is read at its first value elsewhere.
- A cycle is one finding, placed at the member declared first; the message
  follows `in` links from there: `a → b → a` means a is in b, b is in a.
- Cash keys get the same name checks as limits (E113, E111, W104) and are
  compared to their generic key (W101) when both have the same period.
- Memory-class keys warn (W103) for any value that is not a whole number of
  bytes (which covers every value between 0 and 1), and for `m`/`u`/`n`.
- `requests.<domain>/<name>.<Model>` is a model key only when `<domain>/<name>`
  is a gpu resource (the settings' list, else nvidia.com/gpu and amd.com/gpu):
  extended names may contain dots, and only gpu resources have models.
- A model key on a resource no model applies to (`pods.A4`,
  `limits.ephemeral-storage.X`) is never charged: it warns W104 too.
- A parent key that is E111 (`limits.nvidia.com/gpu`) is not demanded of its
  children (E104): renaming the parent's key fixes both.
- E112 points at the child's whole cash statement: the period has no span of
  its own and the statement is the shortest span that contains it.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from quotalang import binding_checks, lending_checks, loader, nodes
from quotalang.errors import Diagnostic
from quotalang.quantity import Quantity, QuantityError, parse_quantity
from quotalang.resources import (
    DEFAULT_GPU_RESOURCES,
    is_limits_extended,
    model_kind,
    resource_class,
    split_key,
    suggest,
)
from quotalang.units import NANO, hours_text, parse_hours

_MODEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")
_BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_SMALL_SUFFIXES = ("m", "u", "n")
_BYTE_CLASSES = ("memory", "ephemeral-storage", "hugepages")
_WHOLE_CLASSES = ("count", "extended")


def check(sources: loader.Sources) -> list[Diagnostic]:
    """Every finding of the whole policy, sorted by (file, line, column, code)."""
    policy = _Policy.build(sources)
    found: list[Diagnostic] = []
    found += _check_settings(policy)
    found += _check_groups(policy)
    found += _check_tree(policy)
    found += _check_kinds(policy)
    found += binding_checks.check(sources.files)
    found += lending_checks.check(sources.files)
    return sorted(found, key=_order)


def _order(diag: Diagnostic) -> tuple[str, int, int, str]:
    span = diag.span
    if span is None:
        return ("", 0, 0, diag.code)
    return (span.file, span.line, span.column, diag.code)


# ------------------------------------------------------------------ the policy as a whole
@dataclass(frozen=True, slots=True)
class _Policy:
    """What the rules need, derived once: declarations in order, the tree, parsed values."""

    groups: tuple[nodes.Group, ...]  # every declaration, repeats included
    by_name: Mapping[str, nodes.Group]  # the first declaration of each name
    children: Mapping[str, tuple[nodes.Group, ...]]  # parent name -> children in order
    settings: tuple[nodes.Setting, ...]
    rules: tuple[nodes.KindRule, ...]
    gpu_resources: frozenset[str]
    labelled: frozenset[str]  # model kinds that have a `model label`
    declared: Mapping[str, tuple[str, ...]]  # model kind -> its declared models (`model gpu A100 ...`)
    quantities: Mapping[int, Quantity]  # id(limit) -> value, for the limits that parse
    # Memos, filled as the rules ask: each group's limits and cash by id, keys split once.
    _limits: dict[int, dict[str, nodes.Limit]] = field(default_factory=dict)
    _cash: dict[int, dict[str, nodes.Cash]] = field(default_factory=dict)
    _splits: dict[str, _Key] = field(default_factory=dict)

    @classmethod
    def build(cls, sources: loader.Sources) -> _Policy:
        groups = tuple(g for f in sources.files for g in f.groups)
        by_name: dict[str, nodes.Group] = {}
        for group in groups:
            by_name.setdefault(group.name, group)
        children: dict[str, list[nodes.Group]] = {}
        for group in by_name.values():
            if group.parent is not None:
                children.setdefault(group.parent, []).append(group)
        settings = tuple(e for f in sources.files for block in f.settings for e in block.entries)
        gpus = [s.resource for s in settings if isinstance(s, nodes.GpuResource)]
        return cls(
            groups=groups,
            by_name=by_name,
            children={name: tuple(kids) for name, kids in children.items()},
            settings=settings,
            rules=tuple(r for f in sources.files for r in f.kinds),
            gpu_resources=frozenset(gpus or DEFAULT_GPU_RESOURCES),
            labelled=frozenset(
                s.model_kind for s in settings if isinstance(s, (nodes.ModelLabel, nodes.NodeLabel))
            ),
            quantities=_parse_all(groups),
            declared=_declared_models(settings),
        )

    def limits(self, group: nodes.Group) -> dict[str, nodes.Limit]:
        """The group's limits by key, first value wins (repeats are E107). Do not mutate."""
        out = self._limits.get(id(group))
        if out is None:
            out = self._limits[id(group)] = {}
            for stmt in group.body:
                if isinstance(stmt, nodes.Limit):
                    out.setdefault(stmt.key, stmt)
        return out

    def cash(self, group: nodes.Group) -> dict[str, nodes.Cash]:
        """The group's cash budgets by key, first one wins (repeats are E107). Do not mutate."""
        out = self._cash.get(id(group))
        if out is None:
            out = self._cash[id(group)] = {}
            for stmt in group.body:
                if isinstance(stmt, nodes.Cash):
                    out.setdefault(stmt.key, stmt)
        return out

    def quantity(self, limit: nodes.Limit) -> Quantity | None:
        """The limit's value, None when it does not parse (E109); a lend / borrow value is parsed here."""
        if id(limit) in self.quantities:
            return self.quantities[id(limit)]
        try:
            return parse_quantity(limit.quantity)
        except QuantityError:
            return None

    def split(self, key: str) -> _Key:
        """`key` split with this policy's gpu resources (see `_split`)."""
        found = self._splits.get(key)
        if found is None:
            found = self._splits[key] = _split(key, self.gpu_resources)
        return found


def _declared_models(settings: Iterable[nodes.Setting]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for setting in settings:
        if isinstance(setting, nodes.ModelDecl):
            out.setdefault(setting.model_kind, []).append(setting.name)
    return {kind: tuple(names) for kind, names in out.items()}


def _parse_all(groups: Iterable[nodes.Group]) -> dict[int, Quantity]:
    """Parse every limit once, by id; malformed ones are left out (and reported as E109)."""
    out: dict[int, Quantity] = {}
    for group in groups:
        for stmt in group.body:
            if isinstance(stmt, nodes.Limit):
                with contextlib.suppress(QuantityError):
                    out[id(stmt)] = parse_quantity(stmt.quantity)
    return out


@dataclass(frozen=True, slots=True)
class _Key:
    """A key split into its ResourceQuota name and model, gpu resources considered."""

    base: str
    model: str | None
    known: bool


def _split(text: str, gpu_resources: frozenset[str]) -> _Key:
    """Split off a model suffix; extended names may hold dots, so only gpu resources split."""
    key = split_key(text, gpu_resources)
    return _Key(key.base, key.model, key.known)


def _per(period: nodes.Period | None) -> str:
    return f" per {period}" if period else ""


# ------------------------------------------------------------------ settings (E201–E203)
def _check_settings(policy: _Policy) -> list[Diagnostic]:
    return [
        *_settings_given_twice(policy.settings),
        *_unlabelled_unknown_group(policy),
        *_warn_at_out_of_range(policy.settings),
        *_invalid_label_keys(policy.settings),
    ]


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes qualified name (label and annotation keys), or None.

    `[prefix/]name`: name 1–63 characters, alphanumeric at both ends, `-_.`
    inside; the optional prefix a DNS subdomain of at most 253 characters.
    """
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' is empty"
    if "/" in prefix:
        return "it has more than one '/'"
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        return f"the prefix {prefix!r} is not a DNS subdomain (lowercase letters, digits, '-', '.')"
    if not name:
        return "the name is empty"
    if len(name) > 63:
        return f"the name is {len(name)} characters long, more than 63"
    if not _LABEL_NAME.match(name):
        return f"the name {name!r} must be letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    return None


def _invalid_label_keys(settings: Iterable[nodes.Setting]) -> Iterator[Diagnostic]:
    """E204: no object can carry a label that is not a qualified name, so nothing would ever be read."""
    for setting in settings:
        if isinstance(setting, nodes.GroupLabel | nodes.ModelLabel):
            problem = label_key_problem(setting.label)
            if problem is not None:
                yield Diagnostic(
                    "E204",
                    f'label key "{setting.label}" is not a valid Kubernetes label key: {problem}',
                    setting.span,
                    'write `[prefix/]name`, e.g. "example.com/team"',
                )


def _setting_name(setting: nodes.Setting) -> str:
    """What makes two settings the same one: `model label` per kind, `gpu resource` per name."""
    if isinstance(setting, nodes.GroupLabel):
        return "group label"
    if isinstance(setting, nodes.ModelLabel):
        return f"model label {setting.model_kind}"
    if isinstance(setting, nodes.GpuResource):
        return f'gpu resource "{setting.resource}"'
    if isinstance(setting, nodes.Unlabelled):
        return "unlabelled"
    if isinstance(setting, nodes.ModelDecl):
        return f"model {setting.model_kind} {setting.name}"
    if isinstance(setting, nodes.NodeLabel):
        return f"node label {setting.model_kind}"
    if isinstance(setting, nodes.Unbound):
        return "unbound namespaces"
    if isinstance(setting, nodes.BorrowBelow):
        return "borrow below priority"
    if isinstance(setting, nodes.AuthorizeUsers):
        return "authorize users"
    if isinstance(setting, nodes.ReclaimDelete):
        return "reclaim by delete"
    return "warn at"


def _settings_given_twice(settings: Iterable[nodes.Setting]) -> Iterator[Diagnostic]:
    """E201: settings apply to the whole policy, so two values would silently fight."""
    first: dict[str, nodes.Span] = {}
    for setting in settings:
        name = _setting_name(setting)
        if name not in first:
            first[name] = setting.span
            continue
        yield Diagnostic(
            "E201",
            f"`{name}` is set twice (first at {first[name]})",
            setting.span,
            "keep one: settings apply to the whole policy, across all its files",
        )


def _unlabelled_unknown_group(policy: _Policy) -> Iterator[Diagnostic]:
    """E202: unlabelled workloads would be sent to a group that does not exist."""
    for setting in policy.settings:
        if not isinstance(setting, nodes.Unlabelled) or setting.group is None:
            continue
        if setting.group in policy.by_name:
            continue
        near = difflib.get_close_matches(setting.group, list(policy.by_name), n=1, cutoff=0.6)
        hint = f"did you mean `{near[0]}`?" if near else f"declare `group {setting.group}` or name one"
        yield Diagnostic("E202", f"`unlabelled group {setting.group}` names no group", setting.span, hint)


def _warn_at_out_of_range(settings: Iterable[nodes.Setting]) -> Iterator[Diagnostic]:
    """E203: 0% warns on everything and over 100% never warns before denial."""
    for setting in settings:
        if isinstance(setting, nodes.WarnAt) and not 0 < Fraction(setting.percent) <= 100:
            yield Diagnostic(
                "E203",
                f"`warn at {setting.percent}%` is outside (0, 100]%",
                setting.span,
                "give a percentage above 0 and at most 100, e.g. `warn at 90%`",
            )


# ------------------------------------------------------------------ one group at a time
def _check_groups(policy: _Policy) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for group in policy.groups:
        found += _repeated_keys(group)
        found += _repeated_modes(group)
        for stmt in group.body:
            if isinstance(stmt, nodes.Limit):
                found += _key_name(stmt.key, stmt.key_span, policy)
                found += _limit_quantity(stmt, policy)
                found += _lending_quantities(stmt, policy)
            elif isinstance(stmt, nodes.Cash):
                found += _key_name(stmt.key, stmt.key_span, policy)
        found += _model_over_generic(group, policy)
    return found


def _repeated_keys(group: nodes.Group) -> Iterator[Diagnostic]:
    """E107: with two values for one key, which one holds would depend on reading order."""
    seen: dict[str, nodes.Span] = {}
    for stmt in group.body:
        if isinstance(stmt, nodes.Limit):
            what = stmt.key
        elif isinstance(stmt, nodes.Cash):
            what = f"cash {stmt.key}"
        else:
            continue
        if what in seen:
            yield Diagnostic(
                "E107",
                f"{what} is given twice in group {group.name} (first at {seen[what]})",
                stmt.span,
                "keep one line per key",
            )
        else:
            seen[what] = stmt.span


def _repeated_modes(group: nodes.Group) -> Iterator[Diagnostic]:
    """E108: one group has one mode."""
    first: nodes.Span | None = None
    for stmt in group.body:
        if not isinstance(stmt, nodes.ModeStmt):
            continue
        if first is None:
            first = stmt.span
            continue
        yield Diagnostic(
            "E108",
            f"mode is given twice in group {group.name} (first at {first})",
            stmt.span,
            "keep one `mode` line",
        )


def _key_name(key: str, span: nodes.Span, policy: _Policy) -> list[Diagnostic]:
    """E111, E113, E114, W104: whether the key is a name ResourceQuota knows and can be charged."""
    split = policy.split(key)
    if is_limits_extended(split.base):
        return [_limits_extended(key, split.base, span)]
    if not split.known:
        return [_unknown_name(key, span)]
    if split.base.startswith("count/") and split.base != "count/pods":
        return [_uncounted(key, split.base, span)]
    if split.model is not None:
        return [*_unlabelled_model(key, split.base, span, policy), *_undeclared_model(key, split, span, policy)]
    return []


def _limits_extended(key: str, base: str, span: nodes.Span) -> Diagnostic:
    """E111: ResourceQuota has no `limits.` form for extended resources; nothing would charge it."""
    fixed = "requests." + key[len("limits.") :]
    return Diagnostic(
        "E111",
        f"{base}: extended resources have no limits. form",
        span,
        f"use `{fixed}`: extended resources are charged by their requests",
    )


def _unknown_name(key: str, span: nodes.Span) -> Diagnostic:
    """E113: a name no pod ever charges is most likely a typo, and a limit that never binds fails open.

    A deliberate extended resource is written as Kubernetes names one,
    domain-qualified (`requests.example.com/fpga`): those are always accepted.
    """
    near = suggest(key)
    hint = (
        f"did you mean `{near}`?"
        if near
        else "ResourceQuota names: requests.cpu, limits.memory, pods, count/pods, requests.DOMAIN/NAME, ..."
    )
    if key.startswith("requests.") and "/" not in key:
        hint += " (an extended resource is named with its domain: `requests.example.com/NAME`)"
    return Diagnostic("E113", f"unknown resource name {key}", span, hint)


def _uncounted(key: str, base: str, span: nodes.Span) -> Diagnostic:
    """E114: only pods are counted; an object count no kind rule produces would never bind."""
    return Diagnostic(
        "E114",
        f"{key}: nothing charges {base}: quotalang counts pods (count/pods), not other objects",
        span,
        "limit `count/pods` or `pods`, or keep object counts in a native ResourceQuota",
    )


def _unlabelled_model(key: str, base: str, span: nodes.Span, policy: _Policy) -> Iterator[Diagnostic]:
    """W104: a model key nothing can ever charge, for want of a model label."""
    kind = model_kind(base, policy.gpu_resources)
    if kind is None:
        yield Diagnostic(
            "W104",
            f"{key} is a model key, but models apply only to cpu, memory and gpu keys: it is never charged",
            span,
            f"drop the model suffix or limit `{base}` itself",
        )
    elif kind not in policy.labelled:
        yield Diagnostic(
            "W104",
            f"{key} is a {kind} model key, but settings declare no `model label {kind}`: it is never charged",
            span,
            f'add `model label {kind} "example.com/{kind}-type"` to settings',
        )


def _undeclared_model(key: str, split: _Key, span: nodes.Span, policy: _Policy) -> Iterator[Diagnostic]:
    """E115: once models of a kind are declared, a key naming another model is never charged
    (the evaluator refuses undeclared models): `gpu.T04`, `gpu.a100` (matching is exact)."""
    kind = model_kind(split.base, policy.gpu_resources)
    declared = policy.declared.get(kind or "")
    if not declared or split.model in declared:
        return
    near = difflib.get_close_matches(split.model or "", declared, n=1, cutoff=0.8)
    near += [name for name in declared if name.lower() == (split.model or "").lower() and name not in near]
    hint = f"did you mean `{split.base}.{near[0]}`?" if near else f"declare `model {kind} {split.model} ...`"
    yield Diagnostic(
        "E115",
        f"{key} names model {split.model}, which is not a declared {kind} model ({', '.join(declared)})",
        span,
        hint,
    )


def _limit_quantity(limit: nodes.Limit, policy: _Policy) -> list[Diagnostic]:
    """E109, E110, W103: the value parses, fits the resource, and has a plausible unit."""
    quantity = policy.quantity(limit)
    if quantity is None:
        return [_malformed(limit)]
    if quantity.nanos < 0:
        return [_negative(limit)]
    split = policy.split(limit.key)
    if not split.known:
        return []  # E113 already; its unit cannot be judged
    klass = resource_class(split.base)
    if klass in _WHOLE_CLASSES and quantity.nanos % NANO:
        return [_not_whole(limit, klass)]
    if klass == "cpu" and limit.quantity.endswith(_BINARY_SUFFIXES):
        return [_cpu_in_bytes(limit)]
    if klass in _BYTE_CLASSES and (limit.quantity.endswith(_SMALL_SUFFIXES) or quantity.nanos % NANO):
        return [_bytes_in_fractions(limit)]
    return []


def _lending_quantities(limit: nodes.Limit, policy: _Policy) -> list[Diagnostic]:
    """E109, E110, W103 for a limit's `lend` / `borrow` (issue 29): read and judged as its value is."""
    out: list[Diagnostic] = []
    terms = limit.lending
    for text, span in ((terms.lend, terms.lend_span), (terms.borrow, terms.borrow_span)):
        if text is not None and span is not None:
            out += _limit_quantity(nodes.Limit(limit.key, text, span, limit.key_span, span), policy)
    return out


def _malformed(limit: nodes.Limit) -> Diagnostic:
    """E109: the compiler cannot turn this text into a number.

    The grammar reads a whole number-like run as the quantity (`1.5.5`,
    `12Qi`), so this is where a typo in a value is reported: at the value's
    column, saying what part of it is wrong, rather than as a syntax error at
    whatever followed its well-formed prefix.
    """
    return Diagnostic(
        "E109",
        f"malformed quantity {limit.quantity} for {limit.key}: {_malformed_reason(limit.quantity)}",
        limit.quantity_span,
        "write a number with an optional suffix (m, k, M, G, T, Ki, Mi, Gi, Ti or an exponent e3): "
        "2000, 500m, 1.5, 8Ti, 1e3",
    )


_NUMBER_PREFIX = re.compile(r"[+-]?[0-9.]*")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+")


def _malformed_reason(text: str) -> str:
    """What is wrong with a quantity `parse_quantity` rejects, in words (not its regular expression)."""
    number = _NUMBER_PREFIX.match(text)
    digits = number.group() if number else ""
    rest = text[len(digits) :]
    if digits.count(".") > 1:
        return f"{digits} has more than one decimal point"
    if _EXPONENT.fullmatch(rest):
        return f"the exponent {rest[1:]} is out of range"
    if rest:
        return f"{rest!r} is not a unit suffix or exponent"
    try:
        parse_quantity(text)
    except QuantityError as exc:
        return str(exc)
    return "cannot be read"  # pragma: no cover - only called for quantities that failed to parse


def _negative(limit: nodes.Limit) -> Diagnostic:
    """E110: a negative hard limit would make every request over quota."""
    return Diagnostic(
        "E110",
        f"{limit.key} {limit.quantity} is negative",
        limit.quantity_span,
        "a limit is 0 or more; 0 gives the group none",
    )


def _not_whole(limit: nodes.Limit, klass: str) -> Diagnostic:
    """E110: pods, object counts and extended resources come in whole units only."""
    what = "extended resources" if klass == "extended" else "pods and object counts"
    return Diagnostic(
        "E110",
        f"{limit.key} {limit.quantity} is not a whole number: {what} come in whole units",
        limit.quantity_span,
        "write a whole number, e.g. `8`",
    )


def _cpu_in_bytes(limit: nodes.Limit) -> Diagnostic:
    """W103: `Gi` on a cpu key is almost certainly a memory value pasted on the wrong line."""
    return Diagnostic(
        "W103",
        f"{limit.key} {limit.quantity} has a binary (byte) suffix, but cpu is counted in cores",
        limit.quantity_span,
        "write cores (`16`) or millicores (`500m`)",
    )


def _bytes_in_fractions(limit: nodes.Limit) -> Diagnostic:
    """W103: `500m` of memory is half a byte; the author meant `500M` or `500Mi`."""
    return Diagnostic(
        "W103",
        f"{limit.key} {limit.quantity} is a fraction of a byte",
        limit.quantity_span,
        "`m` is milli: write megabytes as `M` or `Mi` (`512Mi`, `8Gi`)",
    )


def _model_over_generic(group: nodes.Group, policy: _Policy) -> Iterator[Diagnostic]:
    """W101: a model limit above its generic limit can never be reached (prefix rule)."""
    limits = policy.limits(group)
    for key, limit in limits.items():
        split = policy.split(key)
        generic = limits.get(split.base) if split.model is not None else None
        if generic is None:
            continue
        mine, theirs = policy.quantity(limit), policy.quantity(generic)
        if mine is not None and theirs is not None and theirs < mine:
            yield _pointless_model(group, key, str(mine), split.base, str(theirs), limit.key_span)
    cash = policy.cash(group)
    for key, budget in cash.items():
        split = policy.split(key)
        other = cash.get(split.base) if split.model is not None else None
        if other is None or other.period != budget.period:
            continue
        if parse_hours(other.hours) < parse_hours(budget.hours):
            yield _pointless_model(
                group, f"cash {key}", f"{budget.hours}h", split.base, f"{other.hours}h", budget.key_span
            )


def _pointless_model(
    group: nodes.Group, key: str, value: str, base: str, generic: str, span: nodes.Span
) -> Diagnostic:
    return Diagnostic(
        "W101",
        f"{key} {value} is larger than {base} {generic} in group {group.name}: "
        f"every {key.rsplit('.', 1)[-1]} use also counts toward {base}, which binds first",
        span,
        f"lower it to at most {generic}, or drop it",
    )


# ------------------------------------------------------------------ the tree (E101–E106, E112)
def _check_tree(policy: _Policy) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    found += _duplicate_groups(policy)
    found += _unknown_parents(policy)
    cycles = _find_cycles(policy)
    found += _cycles(policy, cycles)
    # A cycle is reported alone: carving within it has no root and would only repeat it (E104–E106, E112).
    in_cycle = {name for cycle in cycles for name in cycle}
    for parent in policy.by_name.values():
        if parent.name in in_cycle:
            continue
        kids = policy.children.get(parent.name, ())
        for child in kids:
            found += _undeclared_keys(parent, child, policy)
            found += _cash_period_mismatch(parent, child, policy)
        found += _over_allocated_limits(parent, kids, policy)
        found += _over_allocated_cash(parent, kids, policy)
    return found


def _duplicate_groups(policy: _Policy) -> Iterator[Diagnostic]:
    """E101: group names are cluster-wide, so a workload's label must name one group."""
    for group in policy.groups:
        first = policy.by_name[group.name]
        if first is not group:
            yield Diagnostic(
                "E101",
                f"group {group.name} is declared twice (first at {first.name_span})",
                group.name_span,
                "group names are unique across the whole policy: rename or merge one",
            )


def _unknown_parents(policy: _Policy) -> Iterator[Diagnostic]:
    """E102: a child's quota is carved out of its parent, which must exist."""
    for group in policy.groups:
        if group.parent is None or group.parent in policy.by_name or group.parent_span is None:
            continue
        near = difflib.get_close_matches(group.parent, list(policy.by_name), n=1, cutoff=0.6)
        hint = f"did you mean `{near[0]}`?" if near else "declare the parent, or drop `in` to make a root"
        yield Diagnostic(
            "E102", f"group {group.name} is in unknown group {group.parent}", group.parent_span, hint
        )


def _find_cycles(policy: _Policy) -> list[list[str]]:
    """Every cycle, each from its member declared first. Each group has one parent, so walks are chains."""
    done: set[str] = set()
    order = {name: index for index, name in enumerate(policy.by_name)}
    cycles = []
    for start in policy.by_name.values():
        walk: list[str] = []
        name: str | None = start.name
        while name is not None and name in policy.by_name and name not in done:
            done.add(name)
            walk.append(name)
            name = policy.by_name[name].parent
        if name is None or name not in walk:
            continue
        cycle = walk[walk.index(name) :]
        first = min(range(len(cycle)), key=lambda i: order[cycle[i]])
        cycles.append(cycle[first:] + cycle[:first])
    return cycles


def _cycles(policy: _Policy, cycles: list[list[str]]) -> Iterator[Diagnostic]:
    """E103: a cycle has no root to carve from."""
    for cycle in cycles:
        yield Diagnostic(
            "E103",
            "cycle in the group tree: " + " → ".join([*cycle, cycle[0]]),
            policy.by_name[cycle[0]].name_span,
            "each group here is `in` the next one; make one of them a root or move it out of the cycle",
        )


def _undeclared_keys(parent: nodes.Group, child: nodes.Group, policy: _Policy) -> Iterator[Diagnostic]:
    """E104: without its own line, a child's share of the parent's resource is undefined."""
    mine = policy.limits(child)
    for key in policy.limits(parent):
        if key not in mine and not is_limits_extended(key):  # E111 already; renaming it fixes both
            yield Diagnostic(
                "E104",
                f"group {child.name} does not declare {key}, which its parent {parent.name} limits",
                child.name_span,
                f"declare `{key} 0` to give it none",
            )
    my_cash = policy.cash(child)
    for key, budget in policy.cash(parent).items():
        if key not in my_cash and not is_limits_extended(key):
            yield Diagnostic(
                "E104",
                f"group {child.name} does not declare cash {key}, which its parent {parent.name} budgets",
                child.name_span,
                f"declare `cash {key} 0h{_per(budget.period)}` to give it none",
            )


def _over_allocated_limits(
    parent: nodes.Group, kids: tuple[nodes.Group, ...], policy: _Policy
) -> Iterator[Diagnostic]:
    """E105: children's hard limits are carved out of the parent's and cannot exceed it."""
    for key, limit in policy.limits(parent).items():
        hard = policy.quantity(limit)
        shares: list[tuple[str, Quantity | None]] = []
        for child in kids:
            own = policy.limits(child).get(key)
            if own is not None:
                shares.append((child.name, policy.quantity(own)))
        known = [(name, q) for name, q in shares if q is not None]
        if hard is None or not known or len(known) < len(shares):
            continue  # nothing carved, or a malformed value (E109) makes the sum unknown
        total = known[0][1]
        for _, quantity in known[1:]:
            total = total + quantity
        if hard < total:
            listed = ", ".join(f"{name} {q}" for name, q in known)
            yield Diagnostic(
                "E105",
                f"children of {parent.name} over-allocate {key}: {total} > {hard} ({listed})",
                limit.key_span,
                f"lower the children's {key} or raise {parent.name}'s: "
                "the parent keeps hard − Σ children for its own workloads",
            )


def _over_allocated_cash(
    parent: nodes.Group, kids: tuple[nodes.Group, ...], policy: _Policy
) -> Iterator[Diagnostic]:
    """E106: cash budgets carve like limits, per key and (equal) period."""
    for key, budget in policy.cash(parent).items():
        shares = [
            (child.name, parse_hours(own.hours))
            for child in kids
            if (own := policy.cash(child).get(key)) is not None and own.period == budget.period
        ]
        total = sum((hours for _, hours in shares), Fraction(0))
        limit = parse_hours(budget.hours)
        if shares and total > limit:
            listed = ", ".join(f"{name} {hours_text(hours)}h" for name, hours in shares)
            yield Diagnostic(
                "E106",
                f"children of {parent.name} over-allocate cash {key}{_per(budget.period)}: "
                f"{hours_text(total)}h > {hours_text(limit)}h ({listed})",
                budget.key_span,
                f"lower the children's budgets or raise {parent.name}'s",
            )


def _cash_period_mismatch(parent: nodes.Group, child: nodes.Group, policy: _Policy) -> Iterator[Diagnostic]:
    """E112: budgets of different periods cannot be carved from one another."""
    mine = policy.cash(child)
    for key, budget in policy.cash(parent).items():
        own = mine.get(key)
        if own is None or own.period == budget.period:
            continue
        theirs = f"per {budget.period}" if budget.period else "lifetime"
        ours = f"per {own.period}" if own.period else "lifetime"
        fix = f"write `per {budget.period}`" if budget.period else "drop the period"
        yield Diagnostic(
            "E112",
            f"cash {key} of group {child.name} is {ours}, but its parent {parent.name}'s is {theirs}",
            own.span,
            f"{fix}, as {parent.name} does: budgets carve only within one period",
        )


# ------------------------------------------------------------------ kind rules (E301–E308)
def _no_kind_rules(policy: _Policy) -> Iterator[Diagnostic]:
    """W301: without kind rules no workload is charged: every decision is `no kind rule matches`."""
    if policy.rules or not policy.groups:
        return
    yield Diagnostic(
        "W301",
        "the policy has no kind rules: no workload is charged",
        policy.groups[0].name_span,
        'add `import "quotalang:policies"` (the shipped kind rules) to one of its files',
    )


def _check_kinds(policy: _Policy) -> list[Diagnostic]:
    found: list[Diagnostic] = [*_duplicate_kinds(policy.rules), *_no_kind_rules(policy)]
    for rule in policy.rules:
        found += _without_parts(rule)
        found += _parts_without_template(rule)
        found += _scale_not_replicas(rule)
        found += _wildcards_outside_each(rule)
        found += _repeated_statements(rule)
        found += _creates_itself(rule)
        found += _creates_nothing(rule)
        found += _call_arity(rule)
        found += _suspend_path_problems(rule)
    return found


def _rule_name(rule: nodes.KindRule) -> str:
    return f"{rule.api_version} {rule.kind}"


def _duplicate_kinds(rules: Iterable[nodes.KindRule]) -> Iterator[Diagnostic]:
    """E301: one workload must be read one way; two rules would charge it twice or guess."""
    first: dict[tuple[str, str], nodes.Span] = {}
    for rule in rules:
        ident = (rule.api_version, rule.kind)
        if ident not in first:
            first[ident] = rule.span
            continue
        yield Diagnostic(
            "E301",
            f"kind rule {_rule_name(rule)} is declared twice (first at {first[ident]})",
            rule.span,
            "keep one rule per apiVersion and kind (an imported library may already have it)",
        )


def _without_parts(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E306: a rule with no parts would admit the kind for free."""
    if not rule.parts:
        yield Diagnostic(
            "E306",
            f"kind rule {_rule_name(rule)} has no parts",
            rule.span,
            "add a part: `pods { template spec.template }`",
        )


def _parts_without_template(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E302: replicas of nothing: the pods cannot be priced."""
    for part in rule.parts:
        if not part.templates:
            name = f'part "{part.name}"' if part.name else "a part"
            yield Diagnostic(
                "E302",
                f"{name} of kind rule {_rule_name(rule)} has no template",
                part.span,
                "add `template PATH`, e.g. `template spec.template`",
            )


def _replicas_paths(expr: nodes.Expr | None) -> Iterator[nodes.Path]:
    """Every path a replicas expression reads."""
    if isinstance(expr, nodes.PathRef):
        yield expr.path
    elif isinstance(expr, nodes.BinOp):
        yield from _replicas_paths(expr.left)
        yield from _replicas_paths(expr.right)
    elif isinstance(expr, nodes.Call):
        for arg in expr.args:
            yield from _replicas_paths(arg)


def _suspend_path_problems(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E309: reclaim sets the suspend path to true, so it must name one field from the root that no
    part reads; W303: a name without `suspend` is likely not the operator's boolean switch (every
    shipped rule's is `suspend`)."""
    path = rule.suspend
    if path is None:
        return
    name = f"{rule.api_version} {rule.kind}"
    counted = {p.text for part in rule.parts for p in _replicas_paths(part.replicas)}
    counted |= {p.text for part in rule.parts for p in part.templates}
    if path.relative or "*" in path.segments or path.text in counted:
        why = ("is relative: write it from the object's root" if path.relative
               else "has a `*`: name one field" if "*" in path.segments
               else "is read by a part as a count or template")
        yield Diagnostic("E309", f"suspend path {path.text} of kind rule {name} {why}", path.span,
                         "name the boolean field its operator pauses on, e.g. `suspend spec.suspend`")
        return
    last = path.segments[-1].strip('"').lower()
    if "suspend" not in last:
        yield Diagnostic("W303", f"suspend path {path.text} of kind rule {name} does not look like a boolean switch",
                         path.span, "reclaim sets it to true: name the operator's suspend field, e.g. spec.suspend")


def _scale_not_replicas(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E303: a /scale UPDATE can only be charged if it sets a field some part counts."""
    if rule.scale is None:
        return
    used = [p.text for part in rule.parts for p in _replicas_paths(part.replicas)]
    if rule.scale.text in used:
        return
    hint = (
        "name one of the replicas paths: " + ", ".join(dict.fromkeys(used))
        if used
        else "read it in a part: `replicas " + rule.scale.text + "`"
    )
    yield Diagnostic(
        "E303",
        f"scale path {rule.scale.text} is not a replicas path of any part of {_rule_name(rule)}",
        rule.scale.span,
        hint,
    )


def _paths_outside_each(rule: nodes.KindRule) -> Iterator[nodes.Path]:
    """Every path of the rule except the parts' `each`."""
    for part in rule.parts:
        yield from _replicas_paths(part.replicas)
        yield from part.templates
    if rule.scale is not None:
        yield rule.scale
    if rule.surge is not None:
        yield rule.surge.path


def _wildcards_outside_each(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E304: `*` yields many values; only `each` turns many values into many parts."""
    for path in _paths_outside_each(rule):
        if "*" in path.segments:
            yield Diagnostic(
                "E304",
                f"`*` in {path.text}: only a part's `each` path may iterate",
                path.span,
                "iterate with `pods each PATH.*` and read `.field` paths inside the part",
            )


def _repeated_statements(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E305: one /scale field and one surge per rule, one replicas per part; repeats would be ignored."""
    for what, spans in (("scale", rule.scale_spans), ("surge", rule.surge_spans), ("suspend", rule.suspend_spans)):
        for span in spans[1:]:
            yield Diagnostic(
                "E305",
                f"`{what}` is given twice in kind rule {_rule_name(rule)} (first at {spans[0]})",
                span,
                f"keep one `{what}` line",
            )
    for part in rule.parts:
        for span in part.repeated_spans:
            first = part.replicas.span if part.replicas is not None else part.span
            yield Diagnostic(
                "E305",
                f"`replicas` is given twice in a part of kind rule {_rule_name(rule)} (first at {first})",
                span,
                "keep one `replicas` line per part; combine them with + - * if you meant a sum",
            )


def _creates_itself(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E307: a kind that creates its own kind (or creates through itself) would make any object of
    it free once some charged object of it is named as its controller."""
    mine = (rule.group, rule.kind)
    for created in rule.creates:
        through = (created.via_api_version or "").rpartition("/")[0], created.via_kind
        if (created.api_version.rpartition("/")[0], created.kind) == mine or through == mine:
            yield Diagnostic(
                "E307",
                f"kind rule {_rule_name(rule)} creates {created.kind}, its own kind",
                created.span,
                "name only what the kind's controller creates from it (e.g. `creates v1 Pod`)",
            )


def _creates_nothing(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """W302: a workload rule without `creates` exempts nothing it controls, so the Pods (or Jobs,
    ReplicaSets) its controller makes are charged again as themselves. A Pod creates nothing."""
    if rule.creates or (rule.group, rule.kind) == ("", "Pod"):
        return
    yield Diagnostic(
        "W302",
        f"kind rule {_rule_name(rule)} says nothing about what its controller creates: "
        "the objects it makes are charged again",
        rule.span,
        "add `creates v1 Pod` (or what the operator makes, e.g. `creates batch/v1 Job`) to the rule",
    )


_ARITY = {"min": "at least 2", "max": "at least 2", "clamp": "3 (value, lower bound, upper bound)"}


def _calls(expr: nodes.Expr | None) -> Iterator[nodes.Call]:
    if isinstance(expr, nodes.Call):
        yield expr
        for arg in expr.args:
            yield from _calls(arg)
    elif isinstance(expr, nodes.BinOp):
        yield from _calls(expr.left)
        yield from _calls(expr.right)


def _call_arity(rule: nodes.KindRule) -> Iterator[Diagnostic]:
    """E308: `clamp` takes exactly three arguments, `min` and `max` two or more."""
    for part in rule.parts:
        for call in _calls(part.replicas):
            count = len(call.args)
            if (call.func == "clamp" and count == 3) or (call.func != "clamp" and count >= 2):
                continue
            yield Diagnostic(
                "E308",
                f"{call.func}() takes {_ARITY[call.func]} arguments, given {count}",
                call.span,
                "clamp(.replicas default 0, .minReplicas default 0, .maxReplicas default 10)"
                if call.func == "clamp"
                else f"{call.func}(.replicas default 1, 2)",
            )


__all__ = ["DEFAULT_GPU_RESOURCES", "check"]
