"""The parser's line-by-line reading of `group` blocks agrees with lark's, node for node.

`parser.parse` reads plain group blocks itself (for compile speed) and hands
everything else to lark; whatever it reads must equal what lark alone builds,
spans included, and any file it cannot read must fail exactly as lark fails.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotalang import parser
from quotalang.errors import PolicyError

ROOT = Path(__file__).resolve().parents[2]


def _reference(text: str) -> object:
    try:
        return parser._lark_items(text, "f.quota")
    except PolicyError as exc:
        return [(d.code, d.message, str(d.span), d.hint) for d in exc.diagnostics]


def _ours(text: str) -> object:
    try:
        return list(parser.parse(text, "f.quota").items)
    except PolicyError as exc:
        return [(d.code, d.message, str(d.span), d.hint) for d in exc.diagnostics]


def _agree(text: str) -> None:
    assert _ours(text) == _reference(text)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in glob.glob(str(ROOT / "**" / "*.quota"), recursive=True) if "/.venv/" not in p),
)
def test_shipped_policies(path: str) -> None:
    _agree(Path(path).read_text(encoding="utf-8"))


PLAIN = """\
# a policy
settings {
  group label "g"
}

group root {   # the top
  limits.cpu 100
\trequests.nvidia.com/gpu.A100   8Ti# model
  pods 20

  # a comment line
  cash requests.nvidia.com/gpu 100h per week
  cash limits.cpu 12.5h
  mode warn
}
group team-a in root{
  limits.cpu 1e3
  mode audit
   }
kind apps/v1 Deployment {
  pods {
    template spec.template
  }
}
group last in team-a {
}
"""


def test_plain_policy_is_read_fast_and_exactly() -> None:
    assert parser._fast_items(PLAIN, "f.quota") is not None
    _agree(PLAIN)


@pytest.mark.parametrize(
    "text",
    [
        "group a {}\n",
        "group a { limits.cpu 1 }\n",
        "group a {\n  limits.cpu 1\n} group b {\n}\n",
        "group a {\n  limits.cpu 8x\n}\n",
        "group a {\n  limits.cpu 1E5i\n}\n",
        "group a {\n  cash 5\n}\n",
        "group a {\n  mode 5\n}\n",
        "group a {\n  mode enforcex\n}\n",
        "group a {\n  in 5\n}\n",
        "group a {\n  limits.cpu 1\n",
        "group a.b. {\n}\n",
        "group a in {\n}\n",
        "group a {\r\n  limits.cpu 1\r\n}\r\n",
        "settings {\ngroup label \"x\"\n}\n",
        "settings {\n  warn at 90%\n",
        "group a {\n  cash requests.cpu 5h per year\n}\n",
        "group a {\n  cash pods 5h\n  cash cash 1h per day\n}\n",
        "group a {\n  limits.cpu 1 2\n}\n",
        "group a {\n  limits.cpu\n}\n",
        "group a {\n  limits.cpu 1#c\n  }#d\n",
        "kind apps/v1 X {\n  pods {\n    template spec.t\n  }\n}\ngroup a {\n  limits.cpu 1\n}\n",
    ],
)
def test_edge_cases_agree(text: str) -> None:
    _agree(text)


@pytest.mark.parametrize("value", ["1.5.5", "1e1.5", "-3", "12Qi", "0x10", "1..2", "5+", ".5.", "1e+3x"])
def test_malformed_quantities_are_read_whole_on_both_paths(value: str) -> None:
    # The checker reports these as E109 (E110 for -3) at the value's column, so both
    # readings must hand it the whole run as the quantity, with the same spans.
    text = f"group a {{\n  limits.cpu {value}  # c\n}}\n"
    fast = parser._fast_items(text, "f.quota")
    assert fast is not None
    (limit,) = fast[0].body
    assert (limit.quantity, str(limit.quantity_span)) == (value, "f.quota:2:14")
    _agree(text)


def test_lend_and_borrow_lines_are_read_fast_and_exactly() -> None:
    # Issue 29: a limit's `lend` / `borrow`, in the grammar's order, with the spans lark gives them.
    text = ("group a {\n  limits.cpu 8 lend 2  # c\n\trequests.nvidia.com/gpu.A100 4\tborrow 1\n"
            "  pods 10 lend 1 borrow 3#c\n  count/pods 5 lend 1x\n}\n")
    fast = parser._fast_items(text, "f.quota")
    assert fast is not None
    cpu, gpu, pods, count = fast[0].body
    assert (cpu.lending.lend, str(cpu.lending.lend_span), cpu.lending.borrow) == ("2", "f.quota:2:21", None)
    assert (gpu.lending.borrow, str(gpu.lending.borrow_span)) == ("1", "f.quota:3:40")
    assert (pods.lending.lend, pods.lending.borrow, str(pods.span)) == ("1", "3", "f.quota:4:3")
    assert count.lending.lend == "1x"  # read whole: the checker says E109 at its column
    _agree(text)


@pytest.mark.parametrize(
    "line",
    ["limits.cpu 1 lend", "limits.cpu 1 borrow 1 lend 1", "limits.cpu 1 lend 1 lend 1", "limits.cpu 1 lend 2}",
     "lend 1 lend 1", "limits.cpu lend 1 borrow", "cash pods 1h lend 1", "cash pods 1h per day borrow 2"],
)
def test_lend_and_borrow_edge_cases_agree(line: str) -> None:
    _agree(f"group a {{\n  {line}\n}}\n")


def test_keywords_lark_reads_as_names_and_keys_stay_fast() -> None:
    text = "group default {\n  cpu 8\n  memory 1Gi\n  cash cpu 1h\n}\ngroup gpu in default {\n  cpu 1\n}\n"
    assert parser._fast_items(text, "f.quota") is not None
    _agree(text)


@pytest.mark.parametrize("word", sorted(parser._keywords()))
def test_every_keyword_agrees_everywhere(word: str) -> None:
    for text in (
        f"group a {{\n  {word} 1\n}}\n",
        f"group a {{\n  limits.cpu 1\n\n  {word} 1\n}}\n",
        f"group a {{\n  cash {word} 1h\n}}\n",
        f"group {word} {{\n}}\n",
        f"group a in {word} {{\n}}\n",
    ):
        _agree(text)


def test_many_slices_between_groups_agree() -> None:
    blocks = [f"group g{i} {{\n  limits.cpu 1\n}}\n  group h{i} {{\n  cpu 1\n}}\n" for i in range(300)]
    _agree("".join(blocks))


TOKENS = [
    "group", "in", "a", "b", "root", "{", "}", "mode", "warn", "enforce", "cash", "per", "week", "year",
    "pods", "limits.cpu", "requests.nvidia.com/gpu.A100", "Limits.cpu", "8", "500m", "8Ti", "1e3", "1E5i",
    ".5", "+1", "-1", "1e", "1.5.5", "0x10", "12Qi", "10h", "1.5h", "#c", "\t", "\r", "", '"x"', "settings",
    "kind", "a.b.", "lend", "borrow",
]

STATEMENTS = [
    "limits.cpu 8", "pods 20", "requests.nvidia.com/gpu.A100 4", "limits.memory 32Gi", "count/pods 1",
    "cpu 2", "memory 1Gi", "in 5", "gpu 1", "model 1", "default 1", "scale 1", "per 1",
    "mode warn", "mode enforce", "cash requests.nvidia.com/gpu 100h per week",
    "cash limits.cpu 12.5h", "cash pods 1h per day", "cash gpu 1h", "cash cash 2h per month",
    "limits.cpu -1", "limits.cpu 1e3 # c", "", "#c",
    "limits.cpu 8 lend 2", "pods 4 borrow 1", "requests.nvidia.com/gpu.A100 8 lend 4 borrow 2", "pods 1 lend -1",
]

KIND = "kind apps/v1 Deployment {\n  pods {\n    template spec.template\n  }\n}"


@st.composite
def _policies(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        parent = draw(st.sampled_from(["", " in root", " in b", " in default", " in in"]))
        name = draw(st.sampled_from(["a", "b", "root", "default", "gpu", "in", "group"]))
        lines.append(f"group {name}{parent} {{")
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                words = draw(st.sampled_from(STATEMENTS)).split(" ")
            else:
                words = draw(st.lists(st.sampled_from(TOKENS), min_size=0, max_size=5))
            gap = draw(st.sampled_from([" ", "  ", "\t", " \t"]))
            lines.append(draw(st.sampled_from(["", "  ", "\t"])) + gap.join(words))
        lines.append(draw(st.sampled_from(["}", "  }", "} # end", "}}", ""])))
        if draw(st.booleans()):
            between = ["", "# between", "settings {\n  warn at 80%\n}", KIND, "  group x {\n}"]
            lines.append(draw(st.sampled_from(between)))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policies())
def test_generated_group_blocks_agree(text: str) -> None:
    _agree(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*TOKENS, "\n", " "]), max_size=40).map(" ".join))
def test_token_soup_agrees(text: str) -> None:
    _agree(text)
