"""The canonical formatter behind `quotalang fmt`: one layout per policy.

Like gofmt, there is exactly one canonical form, so that reviews show changes
of meaning rather than of taste. The formatter works from the syntax tree of
`parser.parse`, never from regular expressions over the text, so it cannot
turn a valid policy into a different one. What the tree does not hold is
recovered from the source by position: comments (scanned here), blank lines
(from line numbers) and a few statements the tree folds away (a repeated
`replicas`, `scale` or `surge`; `template` lines merged into one list), so
that `fmt` never deletes a line a reviewer wrote.

Layout rules:

- Top-level items in source order, one blank line between blocks; imports
  that follow each other stay together. Elsewhere a run of blank lines
  becomes one, and blank lines right after `{` or before `}` go.
- Two-space indentation. In `group` and `settings` blocks the values start in
  one column: the longest key (`cash KEY` for cash lines) or setting label
  plus two spaces. `model label` kinds are padded too, so the labels line up.
- Quantities, paths, strings and imports are printed as written; only
  whitespace changes. Expressions get spaces around operators and only the
  parentheses the tree needs.
- Every comment is kept. A comment on its own line stays above the statement
  that follows it, at that statement's indentation (or before `}` / at the end
  of the file, where it was). A trailing comment stays on its line; the
  trailing comments of one block's statements share a column, two spaces
  after the longest of their lines (lines without a comment do not push it,
  so adding a long statement does not re-indent every comment).
- An empty block prints as `group a {}` on one line.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from quotalang import nodes, parser

__all__ = ["format_source", "unified_diff"]

_INDENT = "  "
# Same scan as the parser's, but on "\n" only: lark numbers lines by "\n", and
# str.splitlines() would also split inside a comment on \f, \v, \x1c, \u2028...
_COMMENT_OR_STRING = re.compile(r'"[^"\n]*"|(#[^\n]*)')
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}


# ------------------------------------------------------------------ the layout tree
@dataclass
class _Stmt:
    """A statement printed on one line: `first` alone, or `first` + aligned `value`."""

    line: int
    column: int
    first: str
    value: str | None = None
    comment: str | None = None

    @property
    def end_line(self) -> int:
        return self.line


@dataclass
class _Note:
    """A comment alone on its line."""

    line: int
    text: str

    @property
    def end_line(self) -> int:
        return self.line


@dataclass
class _Block:
    """`header {` children `}`; the top level is a block without header."""

    header: str
    line: int
    column: int
    end_line: int
    end_column: int  # the column of `}`
    children: list[_Elem] = field(default_factory=list)
    head_comment: str | None = None
    tail_comment: str | None = None


_Elem = _Stmt | _Note | _Block


@dataclass
class _Out:
    """One printed line before trailing comments are put in their column."""

    depth: int
    code: str
    comment: str | None = None
    blank_before: bool = False
    column_group: int | None = None  # lines sharing a trailing-comment column


# ------------------------------------------------------------------ public API
def format_source(text: str, filename: str = "<policy>") -> str:
    """Return the canonical form of one policy file's text.

    Raises `PolicyError` (from the parser) when `text` is not valid syntax.
    """
    policy = parser.parse(text, filename)
    lines = text.split("\n")
    top = _Block("", 0, 0, len(lines) + 1, 0)
    top.children = [_item(item, lines) for item in policy.items]
    _attach_comments(top, lines)
    out: list[_Out] = []
    _render_top(top, out)
    return _join(out)


def unified_diff(old: str, new: str, filename: str) -> str:
    """A unified diff from `old` to `new` for `fmt --diff` ('' when equal)."""
    if old == new:
        return ""
    diff = difflib.unified_diff(
        _diff_lines(old),
        _diff_lines(new),
        fromfile=f"{filename} (original)",
        tofile=f"{filename} (formatted)",
    )
    return "".join(diff)


def _diff_lines(text: str) -> list[str]:
    """Lines with ends; a missing final newline is marked the way diff(1) does."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


# ------------------------------------------------------------------ nodes → layout
def _item(item: nodes.Import | nodes.Settings | nodes.Group | nodes.KindRule, lines: list[str]) -> _Elem:
    span = item.span
    if isinstance(item, nodes.Import):
        return _Stmt(span.line, span.column, f'import "{item.target}"')
    block = _Block("", span.line, span.column, span.end_line, span.end_column - 1)
    if isinstance(item, nodes.Settings):
        block.header = "settings"
        block.children = _settings(item)
    elif isinstance(item, nodes.Group):
        block.header = f"group {item.name}" + (f" in {item.parent}" if item.parent else "")
        block.children = [_group_stmt(stmt) for stmt in item.body]
    else:
        block.header = f"kind {item.api_version} {item.kind}"
        block.children = _kind_body(item, lines)
    return block


def _settings(settings: nodes.Settings) -> list[_Elem]:
    kinds = [
        e.model_kind for e in settings.entries if isinstance(e, (nodes.ModelLabel, nodes.ModelDecl, nodes.NodeLabel))
    ]
    kind_width = max(map(len, kinds), default=0) + 1
    out: list[_Elem] = []
    for entry in settings.entries:
        span = entry.span
        value: str | None
        if isinstance(entry, nodes.GroupLabel):
            label, value = f"group {entry.source}", f'"{entry.label}"'
        elif isinstance(entry, nodes.ModelLabel):
            label, value = f"model {entry.source}", f'{entry.model_kind.ljust(kind_width)}"{entry.label}"'
        elif isinstance(entry, nodes.ModelDecl):
            values = "".join(f' "{v}"' for v in entry.values)
            label, value = "model", f"{entry.model_kind.ljust(kind_width)}{entry.name}{values}"
        elif isinstance(entry, nodes.NodeLabel):
            label, value = "node label", f'{entry.model_kind.ljust(kind_width)}"{entry.label}"'
        elif isinstance(entry, nodes.GpuResource):
            label, value = "gpu resource", f'"{entry.resource}"'
        elif isinstance(entry, nodes.Unlabelled):
            label = "unlabelled"
            value = f"group {entry.group}" if entry.action == "group" else entry.action
        elif isinstance(entry, nodes.Unbound):
            label, value = "unbound namespaces", entry.action
        elif isinstance(entry, nodes.ReclaimDelete):
            label, value = "reclaim by", "delete"
        elif isinstance(entry, nodes.BorrowBelow):
            label, value = "borrow below priority", str(entry.priority)
        elif isinstance(entry, nodes.AuthorizeUsers):
            label, value = "authorize users", None
        else:
            label, value = "warn at", f"{entry.percent}%"
        out.append(_Stmt(span.line, span.column, label, value))
    return out


def _group_stmt(stmt: nodes.GroupStmt) -> _Stmt:
    span = stmt.span
    if isinstance(stmt, nodes.Limit):
        return _Stmt(span.line, span.column, stmt.key, stmt.quantity + _lending(stmt.lending))
    if isinstance(stmt, nodes.Cash):
        per = f" per {stmt.period}" if stmt.period else ""
        return _Stmt(span.line, span.column, f"cash {stmt.key}", f"{stmt.hours}h{per}{_lending(stmt.lending)}")
    if isinstance(stmt, nodes.Namespaces):  # not aligned with the limits: a list, not a value
        patterns = ", ".join(f'"{p}"' for p in stmt.patterns)
        return _Stmt(span.line, span.column, f"{'default ' if stmt.default else ''}namespaces {patterns}")
    return _Stmt(span.line, span.column, f"mode {stmt.mode}")


def _lending(terms: nodes.Lending) -> str:
    """` lend 8 borrow 4` as written, on the limit's line (empty when it has neither)."""
    lend = f" lend {terms.lend}" if terms.lend is not None else ""
    return lend + (f" borrow {terms.borrow}" if terms.borrow is not None else "")


def _kind_body(rule: nodes.KindRule, lines: list[str]) -> list[_Elem]:
    """Parts, `scale` and `surge` in source order, repeats included.

    The tree keeps only the first `scale` / `surge` as nodes, but the span of
    every one: the repeats are printed from their source text (the checker
    reports them; the formatter must not make them vanish).
    """
    body: list[_Elem] = [_part(part, lines) for part in rule.parts]
    for span in rule.scale_spans:  # each span is the path's, so the slice is the path as written
        body.append(_Stmt(span.line, span.column, f"scale {_slice(lines, span)}"))
    for span in rule.suspend_spans:  # each span is the path's, as for `scale`
        body.append(_Stmt(span.line, span.column, f"suspend {_slice(lines, span)}"))
    for index, span in enumerate(rule.surge_spans):
        surge = rule.surge if index == 0 and rule.surge else _reparse_surge(_slice(lines, span))
        default = f" default {surge.default}" if surge.default is not None else ""
        body.append(_Stmt(span.line, span.column, f"surge {surge.path.text}{default}"))
    by_line: dict[int, list[nodes.Creates]] = {}
    for created in rule.creates:
        by_line.setdefault(created.span.line, []).append(created)
    for line, entries in by_line.items():
        text = ", ".join(_created(c) for c in entries)
        # `creates` sits before the first entry: its column is the statement's.
        start = lines[line - 1][: entries[0].span.column - 1].rfind("creates") + 1
        body.append(_Stmt(line, start, f"creates {text}"))
    body.sort(key=lambda e: (e.line, _column(e)))
    return body


def _created(created: nodes.Creates) -> str:
    via = f" via {created.via_api_version} {created.via_kind}" if created.via_kind else ""
    return f"{created.api_version} {created.kind}{via}"


def _part(part: nodes.Part, lines: list[str]) -> _Block:
    span = part.span
    header = "pods"
    if part.name is not None:
        header += f' "{part.name}"'
    if part.each is not None:
        header += f" each {part.each.text}"
    block = _Block(header, span.line, span.column, span.end_line, span.end_column - 1)
    covered = {span.line, span.end_line}
    if part.replicas is not None:
        where = part.replicas.span
        block.children.append(_Stmt(where.line, where.column, f"replicas {_expr(part.replicas)}"))
        covered.add(where.line)
    # The tree merges `template` lines into one list: split it back by line.
    by_line: dict[int, list[nodes.Path]] = {}
    for path in part.templates:
        by_line.setdefault(path.span.line, []).append(path)
    for line, paths in by_line.items():
        text = " or ".join(p.text for p in paths)
        block.children.append(_Stmt(line, paths[0].span.column, f"template {text}"))
        covered.add(line)
    # A repeated `replicas` is dropped from the tree without a trace: any other
    # line of the part holding code is one. Keep it, formatted like the first.
    for line in range(span.line + 1, span.end_line):
        if line not in covered and _code(lines[line - 1]).strip():
            replicas = _reparse_replicas(_code(lines[line - 1]))
            column = len(lines[line - 1]) - len(lines[line - 1].lstrip()) + 1
            block.children.append(_Stmt(line, column, f"replicas {_expr(replicas)}"))
    block.children.sort(key=lambda e: (e.line, _column(e)))
    return block


def _reparse_surge(statement: str) -> nodes.Surge:
    surge = parser.parse(f"kind v1 K {{\n{statement}\n}}\n").kinds[0].surge
    assert surge is not None
    return surge


def _reparse_replicas(statement: str) -> nodes.Expr:
    part = parser.parse(f"kind v1 K {{\npods {{\n{statement}\n}}\n}}\n").kinds[0].parts[0]
    assert part.replicas is not None
    return part.replicas


def _slice(lines: list[str], span: nodes.Span) -> str:
    """The source text of a one-line span."""
    return lines[span.line - 1][span.column - 1 : span.end_column - 1]


def _code(line: str) -> str:
    """A source line without its comment."""
    for match in _COMMENT_OR_STRING.finditer(line):
        if match.group(1):
            return line[: match.start(1)]
    return line


def _column(elem: _Elem) -> int:
    return 0 if isinstance(elem, _Note) else elem.column


def _expr(expr: nodes.Expr) -> str:
    """Spaces around operators; parentheses only where the tree needs them.

    The grammar is left-associative, so a right operand of equal precedence
    keeps its parentheses (`a - (b - c)`, and `a + (b + c)` too, so the
    reparsed tree is the same tree).
    """
    if isinstance(expr, nodes.IntLit):
        return str(expr.value)
    if isinstance(expr, nodes.PathRef):
        return expr.path.text + (f" default {expr.default}" if expr.default is not None else "")
    if isinstance(expr, nodes.Call):
        return f"{expr.func}({', '.join(_expr(arg) for arg in expr.args)})"
    left, right = _expr(expr.left), _expr(expr.right)
    precedence = _PRECEDENCE[expr.op]
    if isinstance(expr.left, nodes.BinOp) and _PRECEDENCE[expr.left.op] < precedence:
        left = f"({left})"
    if isinstance(expr.right, nodes.BinOp) and _PRECEDENCE[expr.right.op] <= precedence:
        right = f"({right})"
    return f"{left} {expr.op} {right}"


# ------------------------------------------------------------------ comments
def _attach_comments(top: _Block, lines: list[str]) -> None:
    """Put each comment where it will print.

    A comment alone on its line becomes a `_Note` in the innermost block that
    encloses its line. A trailing comment belongs to whatever is printed last
    on its source line: the statement, block header or `}` that starts
    furthest right before it (several items may share a line).
    """
    marks: dict[int, tuple[int, _Stmt | _Block, bool]] = {}  # line → (column, owner, is_close)

    def mark(line: int, column: int, owner: _Stmt | _Block, close: bool) -> None:
        if line not in marks or marks[line][0] < column:
            marks[line] = (column, owner, close)

    def collect(block: _Block) -> None:
        for child in block.children:
            if isinstance(child, _Stmt):
                mark(child.line, child.column, child, False)
            elif isinstance(child, _Block):
                mark(child.line, child.column, child, False)
                mark(child.end_line, child.end_column, child, True)
                collect(child)

    collect(top)
    for number, line in enumerate(lines, start=1):
        for match in _COMMENT_OR_STRING.finditer(line):
            if not match.group(1):
                continue
            text = match.group(1).rstrip()
            column = match.start(1) + 1
            found = marks.get(number) if line[: column - 1].strip() else None
            if found is None:
                _place_note(top, _Note(number, text))
                continue
            _, owner, close = found
            if isinstance(owner, _Stmt):
                owner.comment = text
            elif close:
                owner.tail_comment = text
            else:
                owner.head_comment = text


def _place_note(block: _Block, note: _Note) -> None:
    for child in block.children:
        if isinstance(child, _Block) and child.line < note.line < child.end_line:
            _place_note(child, note)
            return
    block.children.append(note)
    block.children.sort(key=lambda e: e.line)  # stable: notes never share a line with code


# ------------------------------------------------------------------ rendering
def _render_top(top: _Block, out: list[_Out]) -> None:
    """Top-level elements: one blank line between items unless both are imports.

    The blank line goes before the comments that lead an item, so they stay
    with the item they describe.
    """
    run: int | None = None  # consecutive imports share a trailing-comment column
    previous_item: _Elem | None = None
    previous: _Elem | None = None
    for index, child in enumerate(top.children):
        blank = previous is not None and child.line - previous.end_line > 1
        if previous is not None and previous is previous_item:
            following = next((c for c in top.children[index:] if not isinstance(c, _Note)), None)
            both_imports = _is_import(previous_item) and _is_import(following)
            if following is not None and not both_imports:
                blank = True
        start = len(out)
        if isinstance(child, _Note):
            out.append(_Out(0, child.text))
        elif isinstance(child, _Stmt):
            run = id(child) if run is None else run
            out.append(_Out(0, child.first, child.comment, column_group=run))
        else:
            run = None
            _render_block(child, 0, out)
        out[start].blank_before = blank
        previous = child
        if not isinstance(child, _Note):
            previous_item = child


def _is_import(elem: _Elem | None) -> bool:
    return isinstance(elem, _Stmt)  # the only top-level statement


def _render_block(block: _Block, depth: int, out: list[_Out]) -> None:
    trailing = [c for c in (block.head_comment, block.tail_comment) if c is not None]
    if not block.children and len(trailing) <= 1:
        out.append(_Out(depth, f"{block.header} {{}}", trailing[0] if trailing else None))
        return
    out.append(_Out(depth, f"{block.header} {{", block.head_comment))
    stmts = [c for c in block.children if isinstance(c, _Stmt) and c.value is not None]
    width = max((len(s.first) for s in stmts), default=0) + 2
    group = id(block)
    previous: _Elem | None = None
    for child in block.children:
        start = len(out)
        if isinstance(child, _Note):
            out.append(_Out(depth + 1, child.text))
        elif isinstance(child, _Stmt):
            code = child.first if child.value is None else child.first.ljust(width) + child.value
            out.append(_Out(depth + 1, code, child.comment, column_group=group))
        else:
            _render_block(child, depth + 1, out)
        out[start].blank_before = previous is not None and child.line - previous.end_line > 1
        previous = child
    out.append(_Out(depth, "}", block.tail_comment))


def _join(out: list[_Out]) -> str:
    """Print the lines, trailing comments of one group in one column."""
    widths: dict[int, int] = {}
    for line in out:
        if line.comment is not None and line.column_group is not None:
            length = len(_INDENT * line.depth + line.code)
            widths[line.column_group] = max(widths.get(line.column_group, 0), length)
    text: list[str] = []
    for line in out:
        if line.blank_before:
            text.append("")
        code = _INDENT * line.depth + line.code
        if line.comment is not None:
            width = widths.get(line.column_group, len(code)) if line.column_group is not None else len(code)
            code = code.ljust(width) + "  " + line.comment
        text.append(code)
    return "\n".join(text) + "\n" if text else ""
