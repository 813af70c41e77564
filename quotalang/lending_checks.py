"""Checks of `lend` / `borrow` (E116–E118, W105), part of stage 2, and their compiled form.

Their own module, as the binding checks are: `checker.check` calls `check`,
the compiler calls `lending_of`. Each rule guards what the balance rule
(`quotalang.borrowing`) relies on:

- (E109, E110, W103 for the values themselves are the checker's: it reads
  them as it reads the limit's value.)
- E116: a group lends more than its hard limit (`hard − lend`, its guarantee,
  would be negative).
- E117: a group may borrow a key but nothing could ever be lent to it: with
  every other group idle and its own balance at 0, not even the smallest
  unit more fits (its ancestors' own room is all carved out and nobody under
  them lends the key; or it is a root, which borrows nothing).
- E118: a cash budget never lends or borrows (GPU-hours are spent, not lent).
- W105: a root lends to no one.

The first value of a key in a group counts, as everywhere (repeats are E107).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from quotalang import borrowing, nodes
from quotalang.errors import Diagnostic, QuantityError
from quotalang.quantity import parse_quantity


@dataclass(slots=True)
class _Shape:
    """A group's numbers as the balance rule reads them (`borrowing.Shape`), from the parsed files."""

    parent: str | None
    children: tuple[str, ...] = ()
    hard: dict[str, int] = field(default_factory=dict)
    carved: dict[str, int] = field(default_factory=dict)


def check(files: tuple[nodes.PolicyFile, ...]) -> list[Diagnostic]:
    groups = _first_declarations(files)
    found: list[Diagnostic] = []
    lend: dict[str, dict[str, int]] = {}
    borrow: dict[str, dict[str, int]] = {}
    hard: dict[str, dict[str, int]] = {}
    spans: dict[tuple[str, str], nodes.Span] = {}
    for group in groups.values():
        for stmt in group.body:
            if isinstance(stmt, nodes.Cash):
                found += _on_cash(stmt)
            if not isinstance(stmt, nodes.Limit) or stmt.key in hard.get(group.name, {}):
                continue
            limit = _value(stmt.quantity)
            hard.setdefault(group.name, {})[stmt.key] = limit if limit is not None else 0
            terms = stmt.lending
            for word, text, span, into in (("lend", terms.lend, terms.lend_span, lend),
                                           ("borrow", terms.borrow, terms.borrow_span, borrow)):
                if text is None or span is None:
                    continue
                value = _value(text)
                if value is None or value < 0:  # E109 / E110 (the checker reads it as it reads the limit)
                    continue
                if value:
                    into.setdefault(group.name, {})[stmt.key] = value
                    spans[(group.name, f"{word} {stmt.key}")] = span
            given = lend.get(group.name, {}).get(stmt.key)
            if given is not None and limit is not None and given > limit and terms.lend_span is not None:
                found.append(Diagnostic(
                    "E116", f"group {group.name} lends {terms.lend} of {stmt.key}, more than its hard limit "
                    f"{stmt.quantity}", terms.lend_span, f"lend at most {stmt.quantity}: what it does not lend "
                    "is its guarantee"))
    lending = borrowing.Lending(lend, borrow)
    shapes = _shapes(groups, hard)
    for name, keys in borrow.items():
        for key in keys:
            if not _reachable(shapes, lending, name, key):
                root = groups[name].parent is None
                why = "a root has no one to borrow from" if root else (
                    "nothing above it can be lent: its ancestors' own room is carved out and no group under "
                    "them lends it")
                found.append(Diagnostic("E117", f"group {name} may borrow {key}, but {why}",
                                        spans[(name, f"borrow {key}")],
                                        "remove the borrow, or let an ancestor keep room or a sibling lend"))
    for name, keys in lend.items():
        if groups[name].parent is None:
            for key in keys:
                found.append(Diagnostic("W105", f"root group {name} lends {key} to no one: a root has no parent",
                                        spans[(name, f"lend {key}")], "remove the lend"))
    return found


def lending_of(files: tuple[nodes.PolicyFile, ...]) -> borrowing.Lending:
    """The policy's lend and borrow amounts in nanos (a checked policy: every value parses)."""
    lend: dict[str, dict[str, int]] = {}
    borrow: dict[str, dict[str, int]] = {}
    for group in _first_declarations(files).values():
        seen: set[str] = set()
        for stmt in group.body:
            if not isinstance(stmt, nodes.Limit) or stmt.key in seen:
                continue
            seen.add(stmt.key)
            for text, into in ((stmt.lending.lend, lend), (stmt.lending.borrow, borrow)):
                if text is not None and (value := parse_quantity(text).nanos):
                    into.setdefault(group.name, {})[stmt.key] = value
    if not lend and not borrow:
        return borrowing.NO_LENDING
    return borrowing.Lending(lend, borrow)


def _first_declarations(files: tuple[nodes.PolicyFile, ...]) -> dict[str, nodes.Group]:
    out: dict[str, nodes.Group] = {}
    for file in files:
        for group in file.groups:
            out.setdefault(group.name, group)
    return out


def _value(text: str) -> int | None:
    try:
        return parse_quantity(text).nanos
    except QuantityError:
        return None


def _on_cash(stmt: nodes.Cash) -> Iterator[Diagnostic]:
    terms = stmt.lending
    for word, text, span in (("lend", terms.lend, terms.lend_span), ("borrow", terms.borrow, terms.borrow_span)):
        if text is not None and span is not None:
            yield Diagnostic("E118", f"cash {stmt.key} cannot {word}: cash budgets are never lent or borrowed",
                             span, f"remove `{word} {text}`; lend or borrow the limit of {stmt.key} instead")


def _shapes(groups: Mapping[str, nodes.Group], hard: Mapping[str, Mapping[str, int]]) -> dict[str, _Shape]:
    """The tree as the balance rule reads it; groups under an unknown parent or in a cycle are left out."""
    shapes = {name: _Shape(g.parent, hard=dict(hard.get(name, {}))) for name, g in groups.items()}
    for name, shape in list(shapes.items()):
        seen = {name}
        node = shape.parent
        while node is not None and node in shapes and node not in seen:
            seen.add(node)
            node = shapes[node].parent
        if node is not None:  # an unknown parent or a cycle: E102 / E103 say so
            del shapes[name]
    for name, shape in shapes.items():
        if shape.parent is not None and shape.parent in shapes:
            parent = shapes[shape.parent]
            parent.children += (name,)
            for key, value in shape.hard.items():
                parent.carved[key] = parent.carved.get(key, 0) + value
    return shapes


def _reachable(shapes: Mapping[str, _Shape], lending: borrowing.Lending, name: str, key: str) -> bool:
    """Whether, all else idle and `name`'s own balance at 0, one nano more of `key` fits."""
    if name not in shapes or key not in shapes[name].hard:
        return True  # nothing to say about a group outside the tree, or a key it does not limit
    resting = borrowing.balance(shapes, lending, lambda g: {}, name, key)
    used = {name: {key: resting}}
    return borrowing.check(shapes, lending, lambda g: used.get(g, {}), name, {key: 1}).fits


__all__ = ["check", "lending_of"]
