"""Tests for quotalang.fmt: exact layouts, then properties over random policies.

The tables pin the canonical form a reviewer sees; the properties check what
must hold for every policy: formatting is idempotent, keeps the meaning (the
span-free syntax trees are equal) and keeps every comment.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotalang import nodes, parser
from quotalang.errors import PolicyError
from quotalang.fmt import format_source, unified_diff


def plain(value: Any) -> Any:
    """A node as nested tuples without positions, so trees compare by meaning.

    `*_span` fields are dropped; `*_spans` (repeated `scale` / `surge`) become
    their count, so a repeat that vanished would still show.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: list[Any] = [type(value).__name__]
        for f in dataclasses.fields(value):
            if f.name.endswith("spans"):
                out.append((f.name, len(getattr(value, f.name))))
            elif not f.name.endswith("span"):
                out.append((f.name, plain(getattr(value, f.name))))
        return tuple(out)
    if isinstance(value, (tuple, list)):
        return tuple(plain(v) for v in value)
    return value


def meaning(text: str) -> Any:
    return plain(parser.parse(text).items)


def comment_texts(text: str) -> list[str]:
    # The formatter drops trailing whitespace inside comments, nothing else.
    return [c.text.rstrip() for c in parser.parse(text).comments]


def check(source: str, expected: str) -> None:
    assert format_source(source) == expected
    assert format_source(expected) == expected
    assert meaning(source) == meaning(expected)


# ------------------------------------------------------------------ tables
LAYOUTS: dict[str, tuple[str, str]] = {
    "group alignment": (
        "group root {\n"
        "limits.cpu    2000\n"
        "    limits.cpu.A4 400\n"
        "\tlimits.memory\t8Ti\n"
        "  requests.nvidia.com/gpu.A100 32\n"
        "  cash   requests.nvidia.com/gpu   20000h   per   week\n"
        "  cash cpu 5.5h\n"
        "  mode    warn\n"
        "}\n",
        "group root {\n"
        "  limits.cpu                    2000\n"
        "  limits.cpu.A4                 400\n"
        "  limits.memory                 8Ti\n"
        "  requests.nvidia.com/gpu.A100  32\n"
        "  cash requests.nvidia.com/gpu  20000h per week\n"
        "  cash cpu                      5.5h\n"
        "  mode warn\n"
        "}\n",
    ),
    "quantities as written": (
        "group a in root {\n  cpu +1e3\n  memory 0.50Gi\n  limits.cpu .5\n  requests.cpu 1500m\n}\n",
        "group a in root {\n  cpu           +1e3\n  memory        0.50Gi\n"
        "  limits.cpu    .5\n  requests.cpu  1500m\n}\n",
    ),
    "settings alignment": (
        "settings {\n"
        ' group label "biz.group.resource.quota"\n'
        ' model label cpu "biz/cpu-type"\n'
        ' model   label   memory   "biz/memory-type"\n'
        ' gpu resource "nvidia.com/gpu"\n'
        " unlabelled group   default\n"
        " warn at 90%\n"
        "}\n",
        "settings {\n"
        '  group label   "biz.group.resource.quota"\n'
        '  model label   cpu    "biz/cpu-type"\n'
        '  model label   memory "biz/memory-type"\n'
        '  gpu resource  "nvidia.com/gpu"\n'
        "  unlabelled    group default\n"
        "  warn at       90%\n"
        "}\n",
    ),
    "leading and trailing comments": (
        "# the org\n"
        "group root {   # the root\n"
        "    # cpu first\n"
        "  limits.cpu 2000 # cores\n"
        "  requests.nvidia.com/gpu 64    # gpus\n"
        "  mode audit # for now\n"
        "}  # end of root\n",
        "# the org\n"
        "group root {  # the root\n"
        "  # cpu first\n"
        "  limits.cpu               2000  # cores\n"
        "  requests.nvidia.com/gpu  64    # gpus\n"
        "  mode audit                     # for now\n"
        "}  # end of root\n",
    ),
    "comments before } and at end of file": (
        "group a {\n  cpu 1\n      # spare: 1 more\n\n}\n\n\n# end one\n   # end two\n",
        "group a {\n  cpu  1\n  # spare: 1 more\n}\n\n# end one\n# end two\n",
    ),
    "comments inside kind rules": (
        "# rules\n"
        "kind apps/v1 Deployment {   # deployments\n"
        "# the pods\n"
        "pods {\n"
        "replicas spec.replicas default 1   # absent: 1\n"
        "  # which template\n"
        "template spec.template\n"
        "# nothing else\n"
        "}   # part done\n"
        "    # rollout\n"
        "scale spec.replicas # kubectl scale\n"
        "surge spec.strategy.rollingUpdate.maxSurge default 25%\n"
        "}\n",
        "# rules\n"
        "kind apps/v1 Deployment {  # deployments\n"
        "  # the pods\n"
        "  pods {\n"
        "    replicas spec.replicas default 1  # absent: 1\n"
        "    # which template\n"
        "    template spec.template\n"
        "    # nothing else\n"
        "  }  # part done\n"
        "  # rollout\n"
        "  scale spec.replicas  # kubectl scale\n"
        "  surge spec.strategy.rollingUpdate.maxSurge default 25%\n"
        "}\n",
    ),
    "comment-like text in strings and paths": (
        'import "a#b.quota"   # real\n'
        "kind v1 Pod {\n"
        '  pods "web # 1" each spec.x."#y".* {\n'
        "    template .\n"
        "  }\n"
        "}\n",
        'import "a#b.quota"  # real\n\n'
        "kind v1 Pod {\n"
        '  pods "web # 1" each spec.x."#y".* {\n'
        "    template .\n"
        "  }\n"
        "}\n",
    ),
    "blank lines collapse": (
        "\n\n# head\n\n\n\ngroup a {\n\n\n  cpu 1\n\n\n\n  memory 2Gi\n  pods.x 3\n\n\n}\n\n\n\n"
        "group b {\n  cpu 1\n}\n\n\n",
        "# head\n\ngroup a {\n  cpu     1\n\n  memory  2Gi\n  pods.x  3\n}\n\ngroup b {\n  cpu  1\n}\n",
    ),
    "one blank line between blocks": (
        'import "x"\ngroup a {}\ngroup b {\n}\n# about c\ngroup c {} group d {}\nkind v1 Pod {\npods {}\n}\n',
        'import "x"\n\ngroup a {}\n\ngroup b {}\n\n# about c\ngroup c {}\n\ngroup d {}\n\n'
        "kind v1 Pod {\n  pods {}\n}\n",
    ),
    "imports stay together": (
        'import   "quotalang:policies"\nimport "a.quota" import "b"\n# why c\nimport "c"\n\n\n\nimport "d"\n',
        'import "quotalang:policies"\nimport "a.quota"\nimport "b"\n# why c\nimport "c"\n\nimport "d"\n',
    ),
    "trailing comments align per import run": (
        'import "a" # x\nimport "bbbbbbbbbb" # y\ngroup a {}\nimport "c" # z\n',
        'import "a"           # x\nimport "bbbbbbbbbb"  # y\n\ngroup a {}\n\nimport "c"  # z\n',
    ),
    "empty blocks": (
        "settings {\n\n}\ngroup a in b {    }\nkind v1 Pod {\n}\n",
        "settings {}\n\ngroup a in b {}\n\nkind v1 Pod {}\n",
    ),
    "empty block with comments": (
        "group a { # one\n}\ngroup b {\n} # two\ngroup c { # three\n} # four\ngroup d {\n# five\n}\n",
        "group a {}  # one\n\ngroup b {}  # two\n\ngroup c {  # three\n}  # four\n\ngroup d {\n  # five\n}\n",
    ),
    "statements on the header line": (
        "group a { cpu 1 # first\n  memory 1Gi\n}\nkind v1 Pod { pods { replicas 2 # two\ntemplate .\n}\n}\n",
        "group a {\n  cpu     1  # first\n  memory  1Gi\n}\n\n"
        "kind v1 Pod {\n  pods {\n    replicas 2  # two\n    template .\n  }\n}\n",
    ),
    "expressions": (
        "kind leaderworkerset.x-k8s.io/v1 LeaderWorkerSet {\n"
        "  pods each spec.groups.* {\n"
        "    replicas spec.replicas default 1*(spec.leaderWorkerTemplate.size default 1 - 1)\n"
        "    template .t\n"
        "  }\n"
        "  pods {\n"
        "    replicas ((a + b)) * (c - (d - e)) + (f * g) - h * (2 + 3)\n"
        "    template .t\n"
        "  }\n"
        "  pods {\n"
        "    replicas (a + (b + c)) - (1 - 2) * 3 + (4 * (5 * 6))\n"
        "    template .t\n"
        "  }\n"
        "}\n",
        "kind leaderworkerset.x-k8s.io/v1 LeaderWorkerSet {\n"
        "  pods each spec.groups.* {\n"
        "    replicas spec.replicas default 1 * (spec.leaderWorkerTemplate.size default 1 - 1)\n"
        "    template .t\n"
        "  }\n"
        "  pods {\n"
        "    replicas (a + b) * (c - (d - e)) + f * g - h * (2 + 3)\n"
        "    template .t\n"
        "  }\n"
        "  pods {\n"
        "    replicas a + (b + c) - (1 - 2) * 3 + 4 * (5 * 6)\n"
        "    template .t\n"
        "  }\n"
        "}\n",
    ),
    "templates, names, paths as written": (
        'kind kubeflow.org/v1 TFJob {\n  pods   "chief"   each   spec.tfReplicaSpecs.*   {\n'
        '    template   .template   or   metadata.labels."app.kubernetes.io/name"\n'
        "    template .other\n    replicas .replicas default 01\n  }\n}\n",
        'kind kubeflow.org/v1 TFJob {\n  pods "chief" each spec.tfReplicaSpecs.* {\n'
        '    template .template or metadata.labels."app.kubernetes.io/name"\n'
        "    template .other\n    replicas .replicas default 1\n  }\n}\n",
    ),
    "repeats the tree folds away are kept": (
        "kind v1 Pod {\n  pods {\n    replicas 1\n    replicas   2*3 # again\n    template .\n  }\n"
        "  scale spec.a\n  surge spec.b default 1\n  scale   spec.c\n  surge   spec.d   default   5%\n}\n",
        "kind v1 Pod {\n  pods {\n    replicas 1\n    replicas 2 * 3  # again\n    template .\n  }\n"
        "  scale spec.a\n  surge spec.b default 1\n  scale spec.c\n  surge spec.d default 5%\n}\n",
    ),
    "crlf and tabs": (
        "group a {\r\n\tcpu\t1\t# tab \r\n}\r\n",
        "group a {\n  cpu  1  # tab\n}\n",
    ),
    "empty and comment-only files": ("\n\n  \n", ""),
    "comment-only file": ("  # one\n\n\n\n# two\n# three", "# one\n\n# two\n# three\n"),
}


@pytest.mark.parametrize("source, expected", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_layout(source: str, expected: str) -> None:
    check(source, expected)


def test_sketch_from_the_docs() -> None:
    source = (
        "# examples/policies/org.quota\n"
        'import "quotalang:policies"        # the shipped kind rules\n'
        "\n"
        "settings {\n"
        '  group label  "biz.group.resource.quota"\n'
        '  model label  cpu    "biz.group.resource.quota/cpu-type"\n'
        '  gpu resource "nvidia.com/gpu"      # extended resources the gpu model applies to\n'
        "  unlabelled   allow                 # allow | deny | group NAME\n"
        "  warn at      90%\n"
        "}\n"
        "\n"
        "group ai-lab in root {\n"
        "  mode warn                          # enforce (default) | warn | audit\n"
        "  limits.cpu                      800\n"
        "}\n"
    )
    expected = (
        "# examples/policies/org.quota\n"
        'import "quotalang:policies"  # the shipped kind rules\n'
        "\n"
        "settings {\n"
        '  group label   "biz.group.resource.quota"\n'
        '  model label   cpu "biz.group.resource.quota/cpu-type"\n'
        '  gpu resource  "nvidia.com/gpu"  # extended resources the gpu model applies to\n'
        "  unlabelled    allow             # allow | deny | group NAME\n"
        "  warn at       90%\n"
        "}\n"
        "\n"
        "group ai-lab in root {\n"
        "  mode warn  # enforce (default) | warn | audit\n"
        "  limits.cpu  800\n"
        "}\n"
    )
    check(source, expected)


def test_comment_with_line_separator_characters_is_kept_whole() -> None:
    # lark numbers lines by "\n" only; a \f or \u2028 inside a comment must not
    # split it (the parser's own comment list does split it there).
    source = "# a\x0cb\u2028c\ngroup a {\n  cpu 1  # d\x0be\n}\n"
    assert format_source(source) == "# a\x0cb\u2028c\ngroup a {\n  cpu  1  # d\x0be\n}\n"


def test_pods_key() -> None:
    # `pods` is a ResourceQuota key (docs/language.md); once this passes, add it to KEYS.
    assert format_source("group a {\npods 10\n}\n") == "group a {\n  pods  10\n}\n"


def test_deep_expression_is_a_policy_error_or_formats() -> None:
    source = "kind v1 P {\n  pods {\n    replicas " + " + ".join(["1"] * 2000) + "\n    template .\n  }\n}\n"
    with contextlib.suppress(PolicyError):
        format_source(source)


def test_syntax_error_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as info:
        format_source("group a {\n  cpu 1 2\n}\n", "bad.quota")
    assert info.value.diagnostics[0].code == "E001"
    assert info.value.diagnostics[0].span is not None
    assert info.value.diagnostics[0].span.file == "bad.quota"


def test_unified_diff() -> None:
    old = "group a {\n cpu 1\n}"
    new = format_source(old, "a.quota")
    assert unified_diff(old, new, "a.quota") == (
        "--- a.quota (original)\n"
        "+++ a.quota (formatted)\n"
        "@@ -1,3 +1,3 @@\n"
        " group a {\n"
        "- cpu 1\n"
        "-}\n"
        "\\ No newline at end of file\n"
        "+  cpu  1\n"
        "+}\n"
    )
    assert unified_diff(new, new, "a.quota") == ""


# ------------------------------------------------------------------ random policies
GROUP_NAMES = ["root", "ai-lab", "nlp", "team-1", "a.b", "x_y", "ops9"]
KEYS = [
    "pods",
    "limits.cpu",
    "limits.cpu.A4",
    "requests.cpu",
    "cpu",
    "memory",
    "limits.memory",
    "requests.nvidia.com/gpu",
    "requests.nvidia.com/gpu.A100",
    "requests.ephemeral-storage",
    "hugepages-2Mi",
    "count/pods",
]
QUANTITIES = ["1", "500m", "8Ti", "1.5", "0", ".5", "+2", "1e3", "2Gi", "2000"]
PATHS = [
    "spec.replicas",
    ".replicas",
    ".",
    "spec.leaderWorkerTemplate.size",
    'metadata."a.b/c"',
    "x-y",
    "s._z",
]
EACH_PATHS = ["spec.tfReplicaSpecs.*", "spec.groups.*.x", ".", "spec.items"]
TEMPLATES = [".template", "spec.template", ".", 'spec."x y".template']

ws = st.sampled_from([" ", "  ", "\t", " \t "])
indent = st.sampled_from(["", " ", "  ", "    ", "\t"])
comment = st.builds(
    lambda body, tail: "#" + body + tail,
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.sampled_from(["", "", " ", "\t "]),
)


def quoted(s: str) -> str:
    return f'"{s}"'


Tokens = list[str]
# A body element: a statement (tokens) or a nested block (header tokens, body).
Elem = Any


def group_stmt() -> st.SearchStrategy[Tokens]:
    limit = st.tuples(st.sampled_from(KEYS), st.sampled_from(QUANTITIES)).map(list)
    cash = st.tuples(
        st.sampled_from(KEYS),
        st.sampled_from(["1000h", "1.5h", "0h"]),
        st.sampled_from([[], ["per", "day"], ["per", "week"], ["per", "month"]]),
    ).map(lambda t: ["cash", t[0], t[1], *t[2]])
    mode = st.sampled_from(["enforce", "warn", "audit"]).map(lambda m: ["mode", m])
    return st.one_of(limit, limit, cash, mode)


def setting() -> st.SearchStrategy[Tokens]:
    label = st.sampled_from(["biz/group", "x.io/cpu-type", "a b"]).map(quoted)
    return st.one_of(
        label.map(lambda s: ["group", "label", s]),
        st.tuples(st.sampled_from(["cpu", "gpu", "memory"]), label).map(lambda t: ["model", "label", *t]),
        label.map(lambda s: ["gpu", "resource", s]),
        st.sampled_from([["unlabelled", "allow"], ["unlabelled", "deny"], ["unlabelled", "group", "root"]]),
        st.sampled_from(["90%", "12.5%", "100%"]).map(lambda p: ["warn", "at", p]),
    )


@st.composite
def expr(draw: st.DrawFn, depth: int = 0) -> str:
    """Expression text with operators spaced randomly and extra parentheses."""
    if depth >= 3 or draw(st.booleans()):
        if draw(st.booleans()):
            text = str(draw(st.integers(0, 99)))
        else:
            text = draw(st.sampled_from(PATHS))
            if draw(st.booleans()):
                text += f"{draw(ws)}default{draw(ws)}{draw(st.integers(0, 9))}"
    else:
        op = draw(st.sampled_from(["+", "-", "*"]))
        left, right = draw(expr(depth + 1)), draw(expr(depth + 1))
        text = f"({left}){draw(ws)}{op}{draw(ws)}({right})"
    if draw(st.booleans()):
        text = f"({text})"
    return text


@st.composite
def part(draw: st.DrawFn) -> Elem:
    header = ["pods"]
    if draw(st.booleans()):
        header.append(quoted(draw(st.sampled_from(["Worker", "chief", "a # b"]))))
    if draw(st.booleans()):
        header += ["each", draw(st.sampled_from(EACH_PATHS))]
    body: list[Elem] = []
    for _ in range(draw(st.integers(0, 2))):
        body.append(["replicas", draw(expr())])
    for _ in range(draw(st.integers(0, 2))):
        first, *more = draw(st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=3))
        body.append(["template", first, *(word for path in more for word in ("or", path))])
    return (header, draw(st.permutations(body)))


@st.composite
def kind_stmt(draw: st.DrawFn) -> Elem:
    choice = draw(st.integers(0, 3))
    if choice < 2:
        return draw(part())
    if choice == 2:
        return ["scale", draw(st.sampled_from(PATHS))]
    default = draw(st.sampled_from([[], ["default", "1"], ["default", "25%"]]))
    return ["surge", draw(st.sampled_from(PATHS)), *default]


@st.composite
def item(draw: st.DrawFn) -> Elem:
    choice = draw(st.integers(0, 7))
    if choice == 0:
        return ["import", quoted(draw(st.sampled_from(["a.quota", "quotalang:policies", "d"])))]
    if choice == 1:
        return (["settings"], draw(st.lists(setting(), max_size=5)))
    if choice in (2, 3):
        return (
            ["kind", draw(st.sampled_from(["v1", "apps/v1", "kubeflow.org/v1"])), "Job"],
            draw(st.lists(kind_stmt(), max_size=4)),
        )
    header = ["group", draw(st.sampled_from(GROUP_NAMES))]
    if draw(st.booleans()):
        header += ["in", draw(st.sampled_from(GROUP_NAMES))]
    return (header, draw(st.lists(group_stmt(), max_size=6)))


class Writer:
    """Lays out elements as source text with random whitespace and comments."""

    def __init__(self, draw: st.DrawFn):
        self.draw = draw
        self.lines: list[str] = [""]

    def words(self, tokens: Tokens) -> None:
        for token in tokens:
            line = self.lines[-1]
            tight = token in "{}" or line.endswith("{")  # braces need no space around them
            sep = self.draw(st.sampled_from(["", " "]) if tight else ws) if line.strip() else ""
            self.lines[-1] = line + sep + token

    def end_line(self, comments: bool = True) -> None:
        """End the current line, maybe with a trailing comment, blank lines and notes."""
        if comments and self.draw(st.integers(0, 3)) == 0:
            self.lines[-1] += self.draw(st.sampled_from(["", " ", "  "])) + self.draw(comment)
        if self.draw(st.integers(0, 3)) == 0:
            self.lines[-1] += self.draw(st.sampled_from([" ", "\t"]))  # trailing whitespace
        for _ in range(self.draw(st.integers(0, 2)) if self.draw(st.integers(0, 2)) == 0 else 0):
            note = self.draw(st.one_of(st.just(""), comment))
            self.lines.append(self.draw(indent) + note)
        self.lines.append(self.draw(indent))

    def elem(self, element: Elem) -> None:
        if isinstance(element, list):
            self.words(element)
            return
        header, body = element
        self.words([*header, "{"])
        if not body and self.draw(st.booleans()):
            self.words(["}"])
            return
        for index, child in enumerate(body):
            if index or self.draw(st.integers(0, 3)):  # the first one may share the header line
                self.end_line()
            self.elem(child)
        self.end_line()
        self.words(["}"])

    def file(self, items: list[Elem]) -> str:
        for index, element in enumerate(items):
            if index and self.draw(st.integers(0, 4)):  # else: items share a line
                self.end_line()
            self.elem(element)
        self.end_line()
        return "\n".join(self.lines)


@st.composite
def policies(draw: st.DrawFn) -> str:
    items = draw(st.lists(item(), max_size=5))
    writer = Writer(draw)
    if draw(st.booleans()):
        writer.lines = [draw(comment), ""]
    return writer.file(items)


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(policies())
def test_random_policies(source: str) -> None:
    formatted = format_source(source)
    assert format_source(formatted) == formatted, "not idempotent"
    assert meaning(formatted) == meaning(source), "meaning changed"
    before, after = comment_texts(source), comment_texts(formatted)
    assert Counter(after) == Counter(before), "comments changed"
    assert after == before, "comments reordered"
    assert formatted == "" or (formatted.endswith("\n") and not formatted.endswith("\n\n"))
    assert all(line == line.rstrip() for line in formatted.split("\n"))
    assert "\n\n\n" not in formatted


TOKENS = [
    "group", "a", "in", "{", "}", "cpu", "1", "500m", "cash", "10h", "per", "week", "mode", "warn",
    "settings", "kind", "v1", "Pod", "pods", "each", "spec.x.*", "replicas", "template", ".", "or",
    "(", ")", "+", "-", "*", "default", "scale", "surge", "25%", "import", '"s"', "#c", " ", "\n", "\t",
]  # fmt: skip


@PROPERTY
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_token_soup_raises_only_policy_error(source: str) -> None:
    try:
        formatted = format_source(source)
    except PolicyError:
        return
    assert format_source(formatted) == formatted
    assert meaning(formatted) == meaning(source)
    assert Counter(comment_texts(formatted)) == Counter(comment_texts(source))


def test_plain_drops_positions_only() -> None:
    one = parser.parse("group a {\n cpu 1\n}\n")
    two = parser.parse("\n\ngroup   a {\n\n   cpu    1\n}\n")
    assert plain(one.items) == plain(two.items)
    assert plain(one.items) != plain(parser.parse("group a {\n cpu 2\n}\n").items)
    assert isinstance(one.items[0], nodes.Group)


def test_creates_and_functions_are_formatted_in_place() -> None:
    source = (
        "kind v1 K {\n    creates   v1 Pod ,batch/v1 Job\n  pods {\n"
        "    replicas clamp( .a default 0,.b,  max(.c, 2) ) * 2\n    template .t\n  }\n"
        "  creates apps/v1 StatefulSet   via v1 Pod  # the LWS hop\n}\n"
    )
    expected = (
        "kind v1 K {\n  creates v1 Pod, batch/v1 Job\n  pods {\n"
        "    replicas clamp(.a default 0, .b, max(.c, 2)) * 2\n    template .t\n  }\n"
        "  creates apps/v1 StatefulSet via v1 Pod  # the LWS hop\n}\n"
    )
    assert format_source(source) == expected
    assert format_source(expected) == expected
