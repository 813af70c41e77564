"""Parse one policy file's text into `nodes.PolicyFile` (stage 1 of 4): the lark stage.

`parse` first tries the fast reader (`quotalang/reader.py`, plain group
blocks line by line, with this grammar's terminals); whatever it does not
read, lark reads here. Lark's errors never escape: they become `PolicyError`s
with `file:line:col`, a stable code and a hint naming what was expected.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib import resources
from typing import Any, cast

import lark
from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from quotalang import nodes, reader
from quotalang.errors import Diagnostic, PolicyError

_COMMENT_OR_STRING = re.compile(r'"[^"\n]*"|(#[^\n]*)')

# Human names for the terminals lark reports as expected.
_TERMINAL_NAMES = {
    "KEY": "a resource key (limits.cpu)",
    "NAME": "a group name",
    "QUANTITY": "a quantity (2000, 500m, 8Ti)",
    "HOURS": "an amount of hours (1000h)",
    "PERCENT": "a percentage (90%)",
    "INT": "an integer",
    "STRING": 'a quoted string ("...")',
    "API_VERSION": "an apiVersion (apps/v1)",
    "KIND_NAME": "a kind (Deployment)",
    "ROOT_PATH": "a field path (spec.replicas)",
    "REL_PATH": "a field path (.replicas)",
    "DOT": "'.'",
    "_NL": "a new line",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "COMMA": "','",
    "$END": "end of file",
}


def _grammar() -> str:
    return resources.files("quotalang").joinpath("grammar.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    return lark.Lark(_grammar(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


@lru_cache(maxsize=1)
def _keywords() -> frozenset[str]:
    """Every word the grammar spells out."""
    return frozenset(re.findall(r'"([a-z]+)"', _grammar()))


@lru_cache(maxsize=1)
def _reader_grammar() -> reader.Grammar:
    return reader.Grammar.of(_lark(), _keywords(), _lark_reading)


def _lark_reading(text: str, filename: str) -> list[Any] | None:
    """Lark's items for `text`, None if lark rejects it (the reader's slices and probes: no recovery)."""
    try:
        return cast(list[Any], _Build(filename).transform(_lark().parse(text)))
    except (UnexpectedInput, RecursionError):
        return None


def _fast_items(text: str, filename: str) -> list[Any] | None:
    """The fast reader's items (None: it leaves the file to lark)."""
    return reader.read(text, filename, _reader_grammar())


def parse(text: str, filename: str = "<policy>") -> nodes.PolicyFile:
    """Parse `text`; raise `PolicyError` (code E00x) on a syntax error."""
    fast = _fast_items(text, filename)
    items = fast if fast is not None else _lark_items(text, filename)
    comments = tuple(_comments(text, filename))
    return nodes.PolicyFile(
        path=filename,
        imports=tuple(i for i in items if isinstance(i, nodes.Import)),
        settings=tuple(i for i in items if isinstance(i, nodes.Settings)),
        groups=tuple(i for i in items if isinstance(i, nodes.Group)),
        kinds=tuple(i for i in items if isinstance(i, nodes.KindRule)),
        comments=comments,
        items=tuple(items),
    )


MAX_SYNTAX_ERRORS = 50  # per file; past this the rest is noise
# Each error reads the file again: a large broken file stops early (≥ 1 error), so a reload never spends
# more than about this many characters of parsing on one file.
_RECOVERY_BUDGET = 4_000_000


def _lark_items(text: str, filename: str) -> list[Any]:
    """The whole file through lark: the reference reading, and its syntax errors.

    Every syntax error of the file is reported: after each, the statement it
    is in (a whole block when the line opens one) is blanked out, keeping
    every other line and column, and the file is read again. An error at the
    end of the file (a missing `}`) stops it: nothing after it could be read.
    """
    problems: list[Diagnostic] = []
    current = text
    while True:
        try:
            tree = _lark().parse(current)
            break
        except UnexpectedInput as exc:
            problems.append(_diagnose(exc, current, filename))
            line = problems[-1].span.line if problems[-1].span is not None else 0
            skipped = _skip_statement(current, line) if problems[-1].code != "E003" else None
            if skipped is None or len(problems) >= min(MAX_SYNTAX_ERRORS, _RECOVERY_BUDGET // max(len(text), 1)):
                break
            current = skipped
    if problems:
        raise PolicyError(problems, {filename: text})
    try:
        items = cast(list[Any], _Build(filename).transform(tree))
    except RecursionError:
        span = nodes.Span(filename, 1, 1, 1, 2)
        problem = Diagnostic("E001", "expression nested too deeply", span, "split it into simpler parts")
        raise PolicyError([problem], {filename: text}) from None
    return items


def _code_of(line: str) -> str:
    """A line without its comment, strings kept (a `{` in a string is no brace)."""
    return _COMMENT_OR_STRING.sub(lambda m: "" if m.group(1) else "\"\"", line)


def _skip_statement(text: str, line: int) -> str | None:
    """`text` with the statement on `line` blanked (its block too, if it opens one); None if nothing changes."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines) or not lines[line - 1].strip():
        return None
    last = line
    depth = _code_of(lines[line - 1]).count("{") - _code_of(lines[line - 1]).count("}")
    while depth > 0 and last < len(lines):
        last += 1
        code = _code_of(lines[last - 1])
        depth += code.count("{") - code.count("}")
    for number in range(line, last + 1):
        lines[number - 1] = " " * len(lines[number - 1])
    return "\n".join(lines)


def _comments(text: str, filename: str) -> list[nodes.Comment]:
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        if "#" not in line:
            continue
        for match in _COMMENT_OR_STRING.finditer(line):
            if match.group(1):
                col = match.start(1) + 1
                span = nodes.Span(filename, number, col, number, col + len(match.group(1)))
                found.append(nodes.Comment(match.group(1), span))
    return found


def _expected(names: set[str] | frozenset[str]) -> str:
    shown = sorted({_TERMINAL_NAMES.get(n, repr(n.strip('"').lower())) for n in names})
    if len(shown) > 6:
        shown = [*shown[:6], "…"]
    return ", ".join(shown)


def _diagnose(exc: UnexpectedInput, text: str, filename: str) -> Diagnostic:
    line = getattr(exc, "line", 1) or 1
    column = getattr(exc, "column", 1) or 1
    at_end = isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    )
    if at_end:
        expected = set(getattr(exc, "expected", ()) or ())
        lines = text.split("\n")
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()
        span = nodes.Span(filename, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        return Diagnostic(
            "E003",
            "the file ends in the middle of a block",
            span,
            f"expected {_expected(expected)}; is a closing '}}' missing?",
        )
    if isinstance(exc, UnexpectedCharacters):
        better = _misspelt(text, filename, line, column)
        if better is not None:
            return better
        position = exc.pos_in_stream or 0
        char = text[position] if position < len(text) else ""
        span = nodes.Span(filename, line, column, line, column + 1)
        allowed = _expected(set(exc.allowed)) if exc.allowed else "something else"
        return Diagnostic("E002", f"unexpected character {char!r}", span, f"expected {allowed}")
    assert isinstance(exc, UnexpectedToken)
    better = _misspelt(text, filename, line, column)
    if better is not None:
        return better
    token = exc.token
    shown = "a new line" if token.type == "_NL" else repr(str(token))
    end = column + max(1, len(str(token).split("\n")[0]))
    span = nodes.Span(filename, line, column, line, end)
    hint = f"expected {_expected(exc.expected)}"
    if "_NL" in exc.expected and token.type != "_NL":
        hint += " (one statement per line)"
    return Diagnostic("E001", f"unexpected {shown}", span, hint)


@lru_cache(maxsize=1)
def _choices() -> dict[str, tuple[str, ...]]:
    """The words a keyword takes after it, from the grammar, for `mode warning`-like errors."""
    parser = _lark()
    return {
        "mode": reader.rule_words(parser, "mode_value"),
        "per": reader.rule_words(parser, "period"),
        "unlabelled": (*reader.rule_words(parser, "unlabelled_action"), "group"),
        "label": reader.rule_words(parser, "model_kind"),
    }


_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def _misspelt(text: str, filename: str, line: int, column: int) -> Diagnostic | None:
    """E001 for a misspelt keyword or value on the error's line, with a did-you-mean; None if none fits.

    `mode warning` (lark reads `warn`, then fails at `ing`) names the word and
    the values the keyword takes; `mdoe warn` (read as a limit key, then a
    quantity is missing) names the statement and the keyword it is near.
    """
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    code = _code_of(lines[line - 1])
    words = [(m.start() + 1, m.group()) for m in _WORD.finditer(code)]
    here = next((i for i, (start, word) in enumerate(words) if start <= column < start + len(word)), None)
    if here is None:
        return None

    def span(index: int) -> nodes.Span:
        start, word = words[index]
        return nodes.Span(filename, line, start, line, start + len(word))

    word = words[here][1]
    known = _choices()
    if here > 0 and words[here - 1][1] in known:
        keyword, choices = words[here - 1][1], known[words[here - 1][1]]
        if word not in choices:
            near = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
            hint = f"did you mean `{keyword} {near[0]}`?" if near else f"write one of: {', '.join(choices)}"
            return Diagnostic("E001", f"`{keyword} {word}`: {keyword} takes {', '.join(choices)}", span(here), hint)
    first = words[0][1]
    keywords = _keywords()
    if first not in keywords:
        near = difflib.get_close_matches(first, sorted(keywords), n=1, cutoff=0.75)
        if near:
            return Diagnostic("E001", f"unknown statement `{first}`", span(0), f"did you mean `{near[0]}`?")
    return None


def _unquote(token: Token) -> str:
    return str(token)[1:-1]


class _Build(Transformer[Token, Any]):
    """Lark tree → nodes, attaching spans."""

    def __init__(self, filename: str):
        super().__init__()
        self.file = filename

    def _span(self, meta: Any) -> nodes.Span:
        return nodes.Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> nodes.Span:
        line = tok.line or 1
        column = tok.column or 1
        end_line = tok.end_line or line
        end_column = tok.end_column or column + len(str(tok))
        return nodes.Span(self.file, line, column, end_line, end_column)

    @v_args(inline=True)
    def start(self, *items: Any) -> list[Any]:
        return list(items)

    @v_args(meta=True)
    def import_stmt(self, meta: Any, children: list[Token]) -> nodes.Import:
        return nodes.Import(_unquote(children[0]), self._span(meta))

    # settings
    @v_args(meta=True)
    def settings(self, meta: Any, children: list[Any]) -> nodes.Settings:
        return nodes.Settings(tuple(children), self._span(meta))

    @v_args(meta=True)
    def group_label(self, meta: Any, children: list[Any]) -> nodes.GroupLabel:
        source, label = children
        return nodes.GroupLabel(_unquote(label), self._span(meta), source)

    @v_args(meta=True)
    def model_label(self, meta: Any, children: list[Any]) -> nodes.ModelLabel:
        source, kind, label = children
        return nodes.ModelLabel(kind, _unquote(label), self._span(meta), source)

    @v_args(meta=True)
    def model_decl(self, meta: Any, children: list[Any]) -> nodes.ModelDecl:
        kind, name, *values = children
        return nodes.ModelDecl(
            kind,
            str(name),
            tuple(_unquote(v) for v in values),
            self._span(meta),
            self._tspan(name),
            tuple(self._tspan(v) for v in values),
        )

    @v_args(meta=True)
    def node_label(self, meta: Any, children: list[Any]) -> nodes.NodeLabel:
        kind, label = children
        return nodes.NodeLabel(kind, _unquote(label), self._span(meta))

    @v_args(meta=True)
    def unbound(self, meta: Any, children: list[Any]) -> nodes.Unbound:
        return nodes.Unbound(children[0], self._span(meta))

    @v_args(meta=True)
    def authorize(self, meta: Any, children: list[Any]) -> nodes.AuthorizeUsers:
        return nodes.AuthorizeUsers(self._span(meta))

    @v_args(meta=True)
    def gpu_resource(self, meta: Any, children: list[Token]) -> nodes.GpuResource:
        return nodes.GpuResource(_unquote(children[0]), self._span(meta))

    @v_args(meta=True)
    def unlabelled(self, meta: Any, children: list[str]) -> nodes.Unlabelled:
        return nodes.Unlabelled(cast(Any, children[0]), None, self._span(meta))

    @v_args(meta=True)
    def unlabelled_group(self, meta: Any, children: list[Token]) -> nodes.Unlabelled:
        return nodes.Unlabelled("group", str(children[0]), self._span(meta))

    @v_args(meta=True)
    def warn_at(self, meta: Any, children: list[Token]) -> nodes.WarnAt:
        return nodes.WarnAt(str(children[0])[:-1], self._span(meta))

    @v_args(meta=True)
    def borrow_below(self, meta: Any, children: list[Token]) -> nodes.BorrowBelow:
        return nodes.BorrowBelow(int(children[0]), self._span(meta))

    @v_args(meta=True)
    def reclaim_delete(self, meta: Any, children: list[Token]) -> nodes.ReclaimDelete:
        return nodes.ReclaimDelete(self._span(meta))

    @v_args(inline=True)
    def model_kind(self, tok: Token) -> str:
        return str(tok)

    unlabelled_action = mode_value = period = func = source = model_kind

    # groups
    @v_args(meta=True)
    def group(self, meta: Any, children: list[Any]) -> nodes.Group:
        name = children[0]
        parent = None
        rest = children[1:]
        if rest and isinstance(rest[0], Token):
            parent = rest[0]
            rest = rest[1:]
        return nodes.Group(
            name=str(name),
            parent=str(parent) if parent is not None else None,
            body=tuple(rest),
            span=self._span(meta),
            name_span=self._tspan(name),
            parent_span=self._tspan(parent) if parent is not None else None,
        )

    @v_args(meta=True)
    def limit(self, meta: Any, children: list[Any]) -> nodes.Limit:
        key, qty = children[0], children[1]
        return nodes.Limit(str(key), str(qty), self._span(meta), self._tspan(key), self._tspan(qty),
                           self._lending(children[2:]))

    @v_args(meta=True)
    def cash(self, meta: Any, children: list[Any]) -> nodes.Cash:
        key, hours = children[0], children[1]
        rest = [c for c in children[2:] if not isinstance(c, tuple)]
        period = rest[0] if rest else None
        return nodes.Cash(
            str(key), str(hours)[:-1], period, self._span(meta), self._tspan(key), self._tspan(hours),
            self._lending([c for c in children[2:] if isinstance(c, tuple)]),
        )

    def lend(self, children: list[Token]) -> tuple[str, Token]:
        return ("lend", children[0])

    def borrow(self, children: list[Token]) -> tuple[str, Token]:
        return ("borrow", children[0])

    def _lending(self, terms: list[tuple[str, Token]]) -> nodes.Lending:
        """`lend Q` / `borrow Q` (each at most once: the grammar's order) as a node."""
        found = dict(terms)
        lend, borrow = found.get("lend"), found.get("borrow")
        if lend is None and borrow is None:
            return nodes.NO_LENDING
        return nodes.Lending(
            str(lend) if lend is not None else None,
            str(borrow) if borrow is not None else None,
            self._tspan(lend) if lend is not None else None,
            self._tspan(borrow) if borrow is not None else None,
        )

    @v_args(meta=True)
    def mode(self, meta: Any, children: list[Any]) -> nodes.ModeStmt:
        return nodes.ModeStmt(children[0], self._span(meta))

    def _namespaces(self, meta: Any, children: list[Token], default: bool) -> nodes.Namespaces:
        patterns = tuple(_unquote(c) for c in children)
        return nodes.Namespaces(patterns, default, self._span(meta), tuple(self._tspan(c) for c in children))

    @v_args(meta=True)
    def namespaces(self, meta: Any, children: list[Token]) -> nodes.Namespaces:
        return self._namespaces(meta, children, False)

    @v_args(meta=True)
    def default_namespaces(self, meta: Any, children: list[Token]) -> nodes.Namespaces:
        return self._namespaces(meta, children, True)

    # kind rules
    @v_args(meta=True)
    def kind_rule(self, meta: Any, children: list[Any]) -> nodes.KindRule:
        api_version, kind, *body = children
        parts = tuple(c for c in body if isinstance(c, nodes.Part))
        scales = [c for c in body if isinstance(c, tuple) and c[0] == "scale"]
        surges = [c for c in body if isinstance(c, nodes.Surge)]
        suspends = [c[1] for c in body if isinstance(c, tuple) and c[0] == "suspend"]
        creates = tuple(c for group in body if isinstance(group, list) for c in group)
        return nodes.KindRule(
            api_version=str(api_version),
            kind=str(kind),
            parts=parts,
            scale=scales[0][1] if scales else None,
            surge=surges[0] if surges else None,
            span=self._span(meta),
            scale_spans=tuple(s[1].span for s in scales),
            surge_spans=tuple(s.span for s in surges),
            creates=creates,
            suspend=suspends[0] if suspends else None,
            suspend_spans=tuple(s.span for s in suspends),
        )

    def creates(self, children: list[nodes.Creates]) -> list[nodes.Creates]:
        return children

    @v_args(meta=True)
    def created(self, meta: Any, children: list[Token]) -> nodes.Creates:
        via = children[2:]
        return nodes.Creates(
            str(children[0]),
            str(children[1]),
            str(via[0]) if via else None,
            str(via[1]) if via else None,
            self._span(meta),
        )

    @v_args(meta=True)
    def part(self, meta: Any, children: list[Any]) -> nodes.Part:
        name: str | None = None
        each: nodes.Path | None = None
        replicas: list[nodes.Expr] = []
        templates: list[nodes.Path] = []
        for child in children:
            if isinstance(child, Token):
                name = _unquote(child)
            elif isinstance(child, nodes.Path):
                each = child
            elif isinstance(child, tuple) and child[0] == "replicas":
                replicas.append(child[1])
            elif isinstance(child, tuple) and child[0] == "template":
                templates.extend(child[1])
        return nodes.Part(
            name,
            each,
            replicas[0] if replicas else None,
            tuple(templates),
            self._span(meta),
            tuple(r.span for r in replicas[1:]),
        )

    @v_args(inline=True)
    def replicas(self, expr: nodes.Expr) -> tuple[str, nodes.Expr]:
        return ("replicas", expr)

    def template(self, children: list[nodes.Path]) -> tuple[str, list[nodes.Path]]:
        return ("template", children)

    @v_args(inline=True)
    def scale(self, path: nodes.Path) -> tuple[str, nodes.Path]:
        return ("scale", path)

    @v_args(inline=True)
    def suspend(self, path: nodes.Path) -> tuple[str, nodes.Path]:
        return ("suspend", path)

    @v_args(meta=True)
    def surge(self, meta: Any, children: list[Any]) -> nodes.Surge:
        default = str(children[1]) if len(children) > 1 else None
        return nodes.Surge(children[0], default, self._span(meta))

    @v_args(meta=True)
    def add(self, meta: Any, children: list[Any]) -> nodes.BinOp:
        return nodes.BinOp("+", children[0], children[1], self._span(meta))

    @v_args(meta=True)
    def sub(self, meta: Any, children: list[Any]) -> nodes.BinOp:
        return nodes.BinOp("-", children[0], children[1], self._span(meta))

    @v_args(meta=True)
    def mul(self, meta: Any, children: list[Any]) -> nodes.BinOp:
        return nodes.BinOp("*", children[0], children[1], self._span(meta))

    @v_args(meta=True)
    def call(self, meta: Any, children: list[Any]) -> nodes.Call:
        return nodes.Call(children[0], tuple(children[1:]), self._span(meta))

    @v_args(meta=True)
    def int_lit(self, meta: Any, children: list[Token]) -> nodes.IntLit:
        return nodes.IntLit(int(children[0]), self._span(meta))

    @v_args(meta=True)
    def path_ref(self, meta: Any, children: list[Any]) -> nodes.PathRef:
        default = int(children[1]) if len(children) > 1 else None
        return nodes.PathRef(children[0], default, self._span(meta))

    @v_args(inline=True)
    def path(self, tok: Token) -> nodes.Path:
        text = str(tok)
        relative = text.startswith(".")
        body = text[1:] if relative else text
        segments = tuple(_split_path(body)) if body else ()
        return nodes.Path(text, segments, relative, self._tspan(tok))


def _split_path(body: str) -> list[str]:
    """Split on dots outside double quotes; unquote quoted segments."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
        elif char == "." and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out
