"""The fast reader: stage 1's shortcut through plain `group` blocks, for compile speed.

Most of a large policy is `group` blocks of one statement per line. Those are
read here line by line, and only when every line has the plain shape below;
any other top-level text goes to lark in slices (padded with new lines so
lines and columns stay exact). When anything does not fit, or lark rejects a
slice, `read` answers None and the whole file is parsed by lark (parser.py),
so results and syntax errors are lark's own.

The tokens are checked with the grammar's own terminals (`Grammar.of` takes
KEY, NAME, QUANTITY and HOURS, and the words `mode` and `per` take, from the
built lark parser), so a terminal changed in grammar.lark changes both
readings; tests/quotalang/test_reader.py holds them to agree over a table of
tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from quotalang import nodes

if TYPE_CHECKING:
    import lark

# Where the fast path reads a name or key, lark's contextual lexer reads some
# keywords as keywords (LALR merges the look-aheads of `_NL*`, so `group` cannot
# start a statement line) and others as names (`cpu 8`, `group default`). Which is
# which, lark itself answers, once per word and place: the word is taken only
# where every probe below reads it as the name or key it would be here.
_PROBES: dict[str, tuple[tuple[str, ...], Any]] = {
    "key": (
        (
            "group a {\n  W 1\n}\n",
            "group a {\n  # c\n  W 1\n}\n",
            "group a {\n  limits.cpu 1\n  W 1\n}\n",
            "group a {\n  limits.cpu 1\n  # c\n\n  W 1\n}\n",
        ),
        lambda group, word: isinstance(group.body[-1], nodes.Limit) and group.body[-1].key == word,
    ),
    "cash": (
        ("group a {\n  cash W 1h\n}\n", "group a {\n  limits.cpu 1\n  # c\n  cash W 1h per day\n}\n"),
        lambda group, word: isinstance(group.body[-1], nodes.Cash) and group.body[-1].key == word,
    ),
    "name": (("group W {\n}\n", "group W in a {\n}\n"), lambda group, word: group.name == word),
    "parent": (("group a in W {\n}\n",), lambda group, word: group.parent == word),
}


def rule_words(parser: lark.Lark, rule: str) -> tuple[str, ...]:
    """The words a rule of single keywords takes (`!period: "day" | "week" | "month"`), in the grammar's order."""
    return tuple(str(parser.get_terminal(symbol.name).pattern.value) for r in parser.rules
                 if r.origin.name == rule for symbol in r.expansion)


@dataclass(frozen=True, slots=True)
class Grammar:
    """What the reader takes from the lark stage: the grammar's terminals and keywords, and lark's reading."""

    key: re.Pattern[str]
    name: re.Pattern[str]
    quantity: re.Pattern[str]
    hours: re.Pattern[str]
    modes: frozenset[str]  # what `mode` takes (the grammar's mode_value)
    periods: frozenset[str]  # what `per` takes (period)
    keywords: frozenset[str]  # every word the grammar spells out
    lark_items: Callable[[str, str], list[Any] | None]  # (text, filename) → lark's items, None if it fails
    probed: dict[tuple[str, str], bool] = field(default_factory=dict)

    @classmethod
    def of(cls, parser: lark.Lark, keywords: frozenset[str],
           lark_items: Callable[[str, str], list[Any] | None]) -> Grammar:
        def terminal(name: str) -> re.Pattern[str]:
            return re.compile(parser.get_terminal(name).pattern.to_regexp())

        return cls(terminal("KEY"), terminal("NAME"), terminal("QUANTITY"), terminal("HOURS"),
                   frozenset(rule_words(parser, "mode_value")), frozenset(rule_words(parser, "period")), keywords,
                   lark_items)

    def reads_as(self, place: str, word: str) -> bool:
        """Whether lark reads the keyword `word` as a plain name/key at `place` (see _PROBES)."""
        known = self.probed.get((place, word))
        if known is None:
            known = self.probed[(place, word)] = self._probe(place, word)
        return known

    def _probe(self, place: str, word: str) -> bool:
        texts, check = _PROBES[place]
        for text in texts:
            items = self.lark_items(text.replace("W", word), "<probe>")
            if items is None or len(items) != 1 or not isinstance(items[0], nodes.Group) or not check(items[0], word):
                return False
        return True


_RUN = re.compile(r"[^ \t]+")
# `KEY QUANTITY`, the line most groups are made of.
_PAIR = re.compile(r"[ \t]*([^ \t#]+)[ \t]+([^ \t#]+)[ \t]*(?:#.*)?")
_BLANK = re.compile(r"[ \t]*(#[^\n]*)?")
# `[default] namespaces "a", "b-*"`; a line that starts so but does not fit goes to lark.
_NAMESPACES = re.compile(
    r'[ \t]*(default[ \t]+)?namespaces[ \t]+("[^"\n#]*"(?:[ \t]*,?[ \t]*"[^"\n#]*")*)[ \t]*(?:#.*)?'
)
_QUOTED = re.compile(r'"[^"\n#]*"')
_NOT_LIMITS = frozenset({"mode", "namespaces", "default"})


class _Seen:
    """The grammar, and tokens already found to be whole terminals, per file: keys and quantities repeat a lot."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self.keys: set[str] = set()  # limit keys: whole KEY (or POD_KEY) terminals
        self.quantities: set[str] = set()  # whole QUANTITY terminals
        self.other: dict[tuple[str, str], bool] = {}


def _whole(pattern: re.Pattern[str], token: str, seen: _Seen) -> bool:
    """Whether lark's lexer would read all of `token` as one `pattern` terminal."""
    known = seen.other.get((pattern.pattern, token))
    if known is None:
        match = pattern.match(token)
        known = seen.other[(pattern.pattern, token)] = match is not None and match.end() == len(token)
    return known


def _tokens(line: str) -> list[tuple[int, str]]:
    """(0-based column, text) of each run of non-blanks before a comment."""
    cut = line.find("#")
    return [(m.start(), m.group()) for m in _RUN.finditer(line, 0, len(line) if cut < 0 else cut)]


def read(text: str, filename: str, grammar: Grammar) -> list[Any] | None:
    """The file's items, read here with lark for what is not a plain group; None: give the whole file to lark."""
    lines = text.split("\n")
    items: list[Any] = []
    seen = _Seen(grammar)
    count = len(lines)
    # Slices are padded to their line; past this many padding lines (many slices
    # between plain groups), lark on the whole file is cheaper.
    padding_left = 4 * count + 1000

    def through_lark(start: int, stop: int) -> bool:
        nonlocal padding_left
        if all(_BLANK.fullmatch(lines[i]) for i in range(start, stop)):
            return True
        padding_left -= start
        sliced = _lark_slice(lines, start, stop, filename, grammar) if padding_left >= 0 else None
        if sliced is None:
            return False
        items.extend(sliced)
        return True

    pending_start = 0  # first line (0-based) not yet given to lark or read here
    index = 0
    while index < count:
        line = lines[index]
        if not (line.startswith("group") and line[5:6] in (" ", "\t")):
            index += 1
            continue
        if not through_lark(pending_start, index):
            return None
        read = _fast_group(lines, index, filename, seen)
        if read is None:
            return None
        group, index = read
        items.append(group)
        pending_start = index
    return items if through_lark(pending_start, count) else None


def _lark_slice(lines: list[str], start: int, stop: int, filename: str, grammar: Grammar) -> list[Any] | None:
    """Lines [start, stop) through lark, at their true line numbers; None on any failure."""
    return grammar.lark_items("\n" * start + "\n".join(lines[start:stop]), filename)


def _fast_group(
    lines: list[str], index: int, filename: str, seen: _Seen
) -> tuple[nodes.Group, int] | None:
    """Read `group NAME [in NAME] {` ... `}` from lines[index]; the group and the next line."""
    Span = nodes.Span
    header = _tokens(lines[index])
    if not header or not header[-1][1].endswith("{"):
        return None
    column, last = header[-1]
    if last == "{":
        header.pop()
    else:
        header[-1] = (column, last[:-1])
    number = index + 1
    if len(header) == 2:
        parent = None
    elif len(header) == 4 and header[2][1] == "in":
        parent = header[3]
    else:
        return None
    name = header[1]
    grammar = seen.grammar
    keywords, reads_as = grammar.keywords, grammar.reads_as
    for place, token in (("name", name), ("parent", parent)):
        if token is None:
            continue
        if not _whole(grammar.name, token[1], seen) or (token[1] in keywords and not reads_as(place, token[1])):
            return None
    if header[0][1] != "group":
        return None
    name_span = Span(filename, number, name[0] + 1, number, name[0] + 1 + len(name[1]))
    parent_span = (
        Span(filename, number, parent[0] + 1, number, parent[0] + 1 + len(parent[1])) if parent else None
    )
    body: list[nodes.GroupStmt] = []
    append = body.append
    pair = _PAIR.fullmatch
    keys, quantities = seen.keys, seen.quantities
    key_pattern, quantity_pattern = grammar.key, grammar.quantity
    count = len(lines)
    index += 1
    while index < count:
        number = index + 1
        line = lines[index]
        index += 1
        found = pair(line)
        if found is not None and (first := found.group(1)) not in _NOT_LIMITS:
            value = found.group(2)
            if first not in keys:
                if not _whole(key_pattern, first, seen) or (first in keywords and not reads_as("key", first)):
                    return None
                keys.add(first)
            if value not in quantities:
                if not _whole(quantity_pattern, value, seen):
                    return None
                quantities.add(value)
            first_col, value_col = found.start(1), found.start(2)
            value_end = value_col + 1 + len(value)
            append(
                nodes.Limit(
                    first,
                    value,
                    Span(filename, number, first_col + 1, number, value_end),
                    Span(filename, number, first_col + 1, number, first_col + 1 + len(first)),
                    Span(filename, number, value_col + 1, number, value_end),
                )
            )
            continue
        if line.strip(" \t") == "}":
            group_span = Span(filename, name_span.line, 1, number, line.index("}") + 2)
            parent_name = parent[1] if parent else None
            return nodes.Group(name[1], parent_name, tuple(body), group_span, name_span, parent_span), index
        tokens = _tokens(line)
        size = len(tokens)
        if size == 0:
            continue
        first_col, first = tokens[0]
        if first == "}" and size == 1:  # with a comment
            group_span = Span(filename, name_span.line, 1, number, first_col + 2)
            parent_name = parent[1] if parent else None
            return nodes.Group(name[1], parent_name, tuple(body), group_span, name_span, parent_span), index
        elif first in ("namespaces", "default"):
            bound = _NAMESPACES.fullmatch(line)
            if bound is None:
                return None
            strings = list(_QUOTED.finditer(line, bound.start(2), bound.end(2)))
            spans = tuple(Span(filename, number, m.start() + 1, number, m.end() + 1) for m in strings)
            span = Span(filename, number, first_col + 1, number, bound.end(2) + 1)
            append(nodes.Namespaces(tuple(m.group()[1:-1] for m in strings), bool(bound.group(1)), span, spans))
        elif first == "mode" and size == 2 and tokens[1][1] in grammar.modes:
            value_col, value = tokens[1]
            span = Span(filename, number, first_col + 1, number, value_col + 1 + len(value))
            append(nodes.ModeStmt(cast(Any, value), span))
        elif first == "cash" and size in (3, 5):
            (key_col, key_text), (hours_col, hours) = tokens[1], tokens[2]
            if not _whole(key_pattern, key_text, seen) or not _whole(grammar.hours, hours, seen):
                return None
            if key_text in keywords and not reads_as("cash", key_text):
                return None
            period: str | None = None
            end_col, end_text = hours_col, hours
            if size == 5:
                if tokens[3][1] != "per" or tokens[4][1] not in grammar.periods:
                    return None
                period = tokens[4][1]
                end_col, end_text = tokens[4]
            append(
                nodes.Cash(
                    key_text,
                    hours[:-1],
                    cast(Any, period),
                    Span(filename, number, first_col + 1, number, end_col + 1 + len(end_text)),
                    Span(filename, number, key_col + 1, number, key_col + 1 + len(key_text)),
                    Span(filename, number, hours_col + 1, number, hours_col + 1 + len(hours)),
                )
            )
        elif size in (4, 6) and first not in _NOT_LIMITS and first != "cash":
            limit = _fast_lending(tokens, filename, number, seen)
            if limit is None:
                return None
            append(limit)
        else:
            return None
    return None


def _fast_lending(tokens: list[tuple[int, str]], filename: str, number: int, seen: _Seen) -> nodes.Limit | None:
    """`KEY QUANTITY lend Q [borrow Q]` or `KEY QUANTITY borrow Q` (issue 29, the grammar's order), else None."""
    words = [word for _, word in tokens[2::2]]
    if words not in (["lend"], ["borrow"], ["lend", "borrow"]):
        return None
    (key_col, key), (qty_col, qty) = tokens[0], tokens[1]
    grammar = seen.grammar
    if not _whole(grammar.key, key, seen) or (key in grammar.keywords and not grammar.reads_as("key", key)):
        return None
    if not all(_whole(grammar.quantity, value, seen) for _, value in (tokens[1], *tokens[3::2])):
        return None

    def span(column: int, text: str) -> nodes.Span:
        return nodes.Span(filename, number, column + 1, number, column + 1 + len(text))

    terms = dict(zip(words, tokens[3::2], strict=True))
    lend, borrow = terms.get("lend"), terms.get("borrow")
    end_col, end = tokens[-1]
    return nodes.Limit(
        key, qty, nodes.Span(filename, number, key_col + 1, number, end_col + 1 + len(end)), span(key_col, key),
        span(qty_col, qty),
        nodes.Lending(lend[1] if lend else None, borrow[1] if borrow else None,
                      span(*lend) if lend else None, span(*borrow) if borrow else None),
    )
