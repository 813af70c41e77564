"""Parse one policy file's text into `nodes.PolicyFile` (stage 1 of 4).

Lark's errors never escape: they become `PolicyError`s with `file:line:col`,
a stable code and a hint naming what was expected.
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

from quotalang import nodes
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


@lru_cache(maxsize=256)
def _reads_as(place: str, word: str) -> bool:
    """Whether lark reads the keyword `word` as a plain name/key at `place` (see _PROBES)."""
    texts, check = _PROBES[place]
    for text in texts:
        try:
            items = _lark_items(text.replace("W", word), "<probe>")
        except PolicyError:
            return False
        if len(items) != 1 or not isinstance(items[0], nodes.Group) or not check(items[0], word):
            return False
    return True


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


# The words a keyword takes after it, for `mode warning`-like errors.
_CHOICES = {
    "mode": ("enforce", "warn", "audit"),
    "per": ("day", "week", "month"),
    "unlabelled": ("allow", "deny", "group"),
    "label": ("cpu", "gpu", "memory"),
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
    if here > 0 and words[here - 1][1] in _CHOICES:
        keyword, choices = words[here - 1][1], _CHOICES[words[here - 1][1]]
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


# ------------------------------------------------------------------ the fast path
# Most of a large policy is `group` blocks of one statement per line. Those are
# read here line by line, with the grammar's own terminal patterns, and only
# when every line has the plain shape below; any other top-level text goes to
# lark in slices (padded with new lines so lines and columns stay exact). When
# anything does not fit, or lark rejects a slice, the whole file is parsed by
# lark as before, so results and syntax errors are lark's own.
_NAME = re.compile(r"[a-z0-9]([a-z0-9\-_.]*[a-z0-9])?")
_KEY = re.compile(r"[a-z][A-Za-z0-9_.\-\/]*")
_QUANTITY = re.compile(r"[+-]?\.?[0-9][A-Za-z0-9.+\-]*")  # grammar.lark's QUANTITY
_HOURS = re.compile(r"[0-9]+(\.[0-9]+)?h")
_RUN = re.compile(r"[^ \t]+")
# `KEY QUANTITY`, the line most groups are made of.
_PAIR = re.compile(r"[ \t]*([^ \t#]+)[ \t]+([^ \t#]+)[ \t]*(?:#.*)?")
_BLANK = re.compile(r"[ \t]*(#[^\n]*)?")
# `[default] namespaces "a", "b-*"`; a line that starts so but does not fit goes to lark.
_NAMESPACES = re.compile(
    r'[ \t]*(default[ \t]+)?namespaces[ \t]+("[^"\n#]*"(?:[ \t]*,?[ \t]*"[^"\n#]*")*)[ \t]*(?:#.*)?'
)
_QUOTED = re.compile(r'"[^"\n#]*"')
_MODES = frozenset({"enforce", "warn", "audit"})
_NOT_LIMITS = frozenset({"mode", "namespaces", "default"})
_PERIODS = frozenset({"day", "week", "month"})


class _Seen:
    """Tokens already found to be whole terminals, per file: keys and quantities repeat a lot."""

    def __init__(self) -> None:
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


def _fast_items(text: str, filename: str) -> list[Any] | None:
    lines = text.split("\n")
    items: list[Any] = []
    seen = _Seen()
    count = len(lines)
    # Slices are padded to their line; past this many padding lines (many slices
    # between plain groups), lark on the whole file is cheaper.
    padding_left = 4 * count + 1000

    def through_lark(start: int, stop: int) -> bool:
        nonlocal padding_left
        if all(_BLANK.fullmatch(lines[i]) for i in range(start, stop)):
            return True
        padding_left -= start
        sliced = _lark_slice(lines, start, stop, filename) if padding_left >= 0 else None
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


def _lark_slice(lines: list[str], start: int, stop: int, filename: str) -> list[Any] | None:
    """Lines [start, stop) through lark, at their true line numbers; None on any failure."""
    text = "\n" * start + "\n".join(lines[start:stop])
    try:
        return cast(list[Any], _Build(filename).transform(_lark().parse(text)))
    except (UnexpectedInput, RecursionError):
        return None


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
    keywords = _keywords()
    for place, token in (("name", name), ("parent", parent)):
        if token is None:
            continue
        if not _whole(_NAME, token[1], seen) or (token[1] in keywords and not _reads_as(place, token[1])):
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
                if not _whole(_KEY, first, seen) or (first in keywords and not _reads_as("key", first)):
                    return None
                keys.add(first)
            if value not in quantities:
                if not _whole(_QUANTITY, value, seen):
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
        elif first == "mode" and size == 2 and tokens[1][1] in _MODES:
            value_col, value = tokens[1]
            span = Span(filename, number, first_col + 1, number, value_col + 1 + len(value))
            append(nodes.ModeStmt(cast(Any, value), span))
        elif first == "cash" and size in (3, 5):
            (key_col, key_text), (hours_col, hours) = tokens[1], tokens[2]
            if not _whole(_KEY, key_text, seen) or not _whole(_HOURS, hours, seen):
                return None
            if key_text in keywords and not _reads_as("cash", key_text):
                return None
            period: str | None = None
            end_col, end_text = hours_col, hours
            if size == 5:
                if tokens[3][1] != "per" or tokens[4][1] not in _PERIODS:
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
    if not _whole(_KEY, key, seen) or (key in _keywords() and not _reads_as("key", key)):
        return None
    if not all(_whole(_QUANTITY, value, seen) for _, value in (tokens[1], *tokens[3::2])):
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
