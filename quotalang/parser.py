"""Parse one policy file's text into `nodes.PolicyFile` (stage 1 of 4).

Lark's errors never escape: they become `PolicyError`s with `file:line:col`,
a stable code and a hint naming what was expected.
"""

from __future__ import annotations

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
    "$END": "end of file",
}


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = resources.files("quotalang").joinpath("grammar.lark").read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, filename: str = "<policy>") -> nodes.PolicyFile:
    """Parse `text`; raise `PolicyError` (code E00x) on a syntax error."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise PolicyError([_diagnose(exc, text, filename)], {filename: text}) from None
    try:
        items = cast(list[Any], _Build(filename).transform(tree))
    except RecursionError:
        span = nodes.Span(filename, 1, 1, 1, 2)
        problem = Diagnostic("E001", "expression nested too deeply", span, "split it into simpler parts")
        raise PolicyError([problem], {filename: text}) from None
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
        position = exc.pos_in_stream or 0
        char = text[position] if position < len(text) else ""
        span = nodes.Span(filename, line, column, line, column + 1)
        allowed = _expected(set(exc.allowed)) if exc.allowed else "something else"
        return Diagnostic("E002", f"unexpected character {char!r}", span, f"expected {allowed}")
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    shown = "a new line" if token.type == "_NL" else repr(str(token))
    end = column + max(1, len(str(token).split("\n")[0]))
    span = nodes.Span(filename, line, column, line, end)
    hint = f"expected {_expected(exc.expected)}"
    if "_NL" in exc.expected and token.type != "_NL":
        hint += " (one statement per line)"
    return Diagnostic("E001", f"unexpected {shown}", span, hint)


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
    def group_label(self, meta: Any, children: list[Token]) -> nodes.GroupLabel:
        return nodes.GroupLabel(_unquote(children[0]), self._span(meta))

    @v_args(meta=True)
    def model_label(self, meta: Any, children: list[Any]) -> nodes.ModelLabel:
        kind, label = children
        return nodes.ModelLabel(kind, _unquote(label), self._span(meta))

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

    @v_args(inline=True)
    def model_kind(self, tok: Token) -> str:
        return str(tok)

    unlabelled_action = mode_value = period = model_kind

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
    def limit(self, meta: Any, children: list[Token]) -> nodes.Limit:
        key, qty = children
        return nodes.Limit(str(key), str(qty), self._span(meta), self._tspan(key), self._tspan(qty))

    @v_args(meta=True)
    def cash(self, meta: Any, children: list[Any]) -> nodes.Cash:
        key, hours = children[0], children[1]
        period = children[2] if len(children) > 2 else None
        return nodes.Cash(
            str(key), str(hours)[:-1], period, self._span(meta), self._tspan(key), self._tspan(hours)
        )

    @v_args(meta=True)
    def mode(self, meta: Any, children: list[Any]) -> nodes.ModeStmt:
        return nodes.ModeStmt(children[0], self._span(meta))

    # kind rules
    @v_args(meta=True)
    def kind_rule(self, meta: Any, children: list[Any]) -> nodes.KindRule:
        api_version, kind, *body = children
        parts = tuple(c for c in body if isinstance(c, nodes.Part))
        scales = [c for c in body if isinstance(c, tuple) and c[0] == "scale"]
        surges = [c for c in body if isinstance(c, nodes.Surge)]
        return nodes.KindRule(
            api_version=str(api_version),
            kind=str(kind),
            parts=parts,
            scale=scales[0][1] if scales else None,
            surge=surges[0] if surges else None,
            span=self._span(meta),
            scale_spans=tuple(s[1].span for s in scales),
            surge_spans=tuple(s.span for s in surges),
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
