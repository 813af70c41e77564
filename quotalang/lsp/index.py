"""Where things are in a parsed policy: groups, their parents and children, keys, imports, kind-rule paths.

Built once per analysis from the syntax trees; `at` finds what sits under a
position by a scan of that file's items (a 1,000-group file is ~10,000 spans:
well under a millisecond per request).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from typing import Literal

from quotalang import loader, nodes
from quotalang.resources import DEFAULT_GPU_RESOURCES, model_kind, split_key

TargetKind = Literal["group", "parent", "key", "cash", "import", "path", "rule", "created"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a position points at: a group's name (declared or as a parent), a key, an import, a path."""

    kind: TargetKind
    name: str  # the group name, the key, the import target, the path text
    span: nodes.Span
    group: nodes.Group | None = None  # the group declared / holding the key
    rule: nodes.KindRule | None = None  # the kind rule holding the path
    path: nodes.Path | None = None
    each: nodes.Path | None = None  # the `each` a relative path is read from


def header(rule: nodes.KindRule) -> nodes.Span:
    """The `kind API_VERSION KIND` words of a rule (its span is the whole block)."""
    start = rule.span
    width = len(f"kind {rule.api_version} {rule.kind}")
    return nodes.Span(start.file, start.line, start.column, start.line, start.column + width)


def contains(span: nodes.Span, line: int, column: int) -> bool:
    """Whether the 1-based (line, column) is inside `span`, its end included (a cursor after a word)."""
    if not span.line <= line <= span.end_line:
        return False
    if line == span.line and column < span.column:
        return False
    return not (line == span.end_line and column > span.end_column)


def _expr_paths(expr: object) -> Iterator[nodes.Path]:
    """Paths under an expression, whatever its node types (operators, calls): read off its fields."""
    if isinstance(expr, nodes.PathRef):
        yield expr.path
    elif is_dataclass(expr) and not isinstance(expr, type):
        for item in fields(expr):
            value = getattr(expr, item.name)
            for child in value if isinstance(value, tuple) else (value,):
                if is_dataclass(child) and not isinstance(child, nodes.Span):
                    yield from _expr_paths(child)


def rule_paths(rule: nodes.KindRule) -> Iterator[tuple[nodes.Path, nodes.Path | None]]:
    """Every path a kind rule reads, with the `each` path a relative one is read from."""
    for part in rule.parts:
        if part.each is not None:
            yield part.each, None
        for path in (*_expr_paths(part.replicas), *part.templates):
            yield path, part.each
    if rule.scale is not None:
        yield rule.scale, None
    if rule.surge is not None:
        yield rule.surge.path, None
    if rule.suspend is not None:
        yield rule.suspend, None


@dataclass(frozen=True, slots=True)
class Index:
    files: dict[str, nodes.PolicyFile]  # display name -> syntax tree
    groups: dict[str, nodes.Group]  # the first declaration of each name
    children: dict[str, tuple[nodes.Group, ...]]
    rules: tuple[nodes.KindRule, ...]

    @classmethod
    def build(cls, sources: loader.Sources) -> Index:
        groups: dict[str, nodes.Group] = {}
        kids: dict[str, list[nodes.Group]] = {}
        for file in sources.files:
            for group in file.groups:
                if group.name in groups:
                    continue
                groups[group.name] = group
                if group.parent is not None:
                    kids.setdefault(group.parent, []).append(group)
        return cls(
            files={f.path: f for f in sources.files},
            groups=groups,
            children={k: tuple(v) for k, v in kids.items()},
            rules=tuple(r for f in sources.files for r in f.kinds),
        )

    def references(self, name: str) -> list[nodes.Span]:
        """The group's declaration name first, then every `in NAME`, in file order."""
        spans = [self.groups[name].name_span] if name in self.groups else []
        for file in self.files.values():
            spans += [g.parent_span for g in file.groups if g.parent == name and g.parent_span is not None]
        return spans

    def rule(self, name: str) -> nodes.KindRule | None:
        """The first kind rule for `API_VERSION KIND`."""
        return next((r for r in self.rules if f"{r.api_version} {r.kind}" == name), None)

    def creators(self, name: str) -> list[nodes.Creates]:
        """Every `creates` entry naming `API_VERSION KIND`, in file order."""
        return [c for r in self.rules for c in r.creates if f"{c.api_version} {c.kind}" == name]

    def group_at(self, file: str, line: int, column: int) -> nodes.Group | None:
        tree = self.files.get(file)
        if tree is None:
            return None
        return next((g for g in tree.groups if contains(g.span, line, column)), None)

    def at(self, file: str, line: int, column: int) -> Target | None:
        """The most specific thing under the cursor, or None."""
        tree = self.files.get(file)
        if tree is None:
            return None
        for imp in tree.imports:
            if contains(imp.span, line, column):
                return Target("import", imp.target, imp.span)
        group = self.group_at(file, line, column)
        if group is not None:
            return _in_group(group, line, column)
        for rule in tree.kinds:
            if contains(rule.span, line, column):
                for made in rule.creates:
                    if contains(made.span, line, column):
                        return Target("created", f"{made.api_version} {made.kind}", made.span, rule=rule)
                for path, each in rule_paths(rule):
                    if contains(path.span, line, column):
                        return Target("path", path.text, path.span, rule=rule, path=path, each=each)
                return Target("rule", f"{rule.api_version} {rule.kind}", rule.span, rule=rule)
        return None

    def models(self) -> dict[str, set[str]]:
        """Per base key, its model suffixes: those the policy's keys use, and the declared models of its kind."""
        found: dict[str, set[str]] = {}
        bases: set[str] = set()
        for group in self.groups.values():
            for stmt in group.body:
                if isinstance(stmt, nodes.Limit | nodes.Cash):
                    key = split_key(stmt.key)
                    bases.add(key.base)
                    if key.model is not None:
                        found.setdefault(key.base, set()).add(key.model)
        declared: dict[str, set[str]] = {}
        gpus = frozenset(DEFAULT_GPU_RESOURCES)
        for tree in self.files.values():
            for block in tree.settings:
                for entry in block.entries:
                    if isinstance(entry, nodes.ModelDecl):
                        declared.setdefault(entry.model_kind, set()).add(entry.name)
                    elif isinstance(entry, nodes.GpuResource):
                        gpus |= {entry.resource}
        for base in bases | {"requests.cpu", "limits.cpu", "requests.memory", "limits.memory",
                             "requests.nvidia.com/gpu"}:
            kind = model_kind(base, gpus)
            if kind is not None and kind in declared:
                found.setdefault(base, set()).update(declared[kind])
        return found


def _in_group(group: nodes.Group, line: int, column: int) -> Target:
    if contains(group.name_span, line, column):
        return Target("group", group.name, group.name_span, group)
    if group.parent is not None and group.parent_span is not None and contains(group.parent_span, line, column):
        return Target("parent", group.parent, group.parent_span, group)
    for stmt in group.body:
        if isinstance(stmt, nodes.Limit) and contains(stmt.span, line, column):
            return Target("key", stmt.key, stmt.key_span, group)
        if isinstance(stmt, nodes.Cash) and contains(stmt.span, line, column):
            return Target("cash", stmt.key, stmt.key_span, group)
    return Target("group", group.name, group.name_span, group)
